"""Frames -> model input: resize the short side, center crop, scale to [0, 1], normalise.

Deliberate difference from the original toolkit: it called torchvision's ``Resize((172, 128))``
(ResNets) or ``Resize((344, 256))`` (I3D, TSM). torchvision reads that tuple as (height, width), so
4:3 landscape frames were squeezed into portrait before the 112/224 center crop. vjx keeps the
aspect ratio: the SHORT side becomes ``resize`` (128 or 256) and the long side follows
(torchvision's ``Resize(int)`` rule, ``int(resize * long / short)``), then the center crop.

Resizing uses Pillow's bilinear filter on uint8 frames: it is what the original (torchvision on
PIL images) used, it antialiases when downscaling (a plain bilinear gather would alias), and it
is fast on a CPU, where preprocessing runs once per video outside any compiled function.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from vjx.errors import VjxError


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise VjxError(f"frames must be uint8 (0..255), got {frames.dtype}; pass Video.frames as read.")
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise VjxError(f"frames must be T x H x W x 3 with T, H, W > 0, got shape {frames.shape}.")
    return frames


def _channel_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    mean_a, std_a = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean_a.shape != (3,) or std_a.shape != (3,) or np.any(std_a <= 0):
        raise VjxError(f"mean and std must be 3 per-channel values with std > 0, got {mean} and {std}.")
    return mean_a, std_a


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(height, width)`` after scaling the short side to ``short_side``, aspect kept."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def resize_short_side(frames: np.ndarray, short_side: int) -> np.ndarray:
    """uint8 ``T x H x W x 3`` -> uint8 ``T x H' x W' x 3`` with ``min(H', W') = short_side``."""
    frames = _check_frames(frames)
    if short_side < 1:
        raise VjxError(f"resize={short_side} must be a positive number of pixels.")
    height, width = frames.shape[1:3]
    new_h, new_w = resized_size(height, width, short_side)
    if (new_h, new_w) == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((new_w, new_h), Image.BILINEAR))
                     for f in frames])


def center_crop(frames: np.ndarray, crop: int) -> np.ndarray:
    """``T x H x W x C`` -> ``T x crop x crop x C``, offsets ``round((H - crop) / 2)`` (torchvision's)."""
    height, width = frames.shape[1:3]
    if crop < 1 or crop > min(height, width):
        raise VjxError(f"crop={crop} does not fit frames of {width}x{height}; use a crop of at most "
                       f"{min(height, width)} (or a larger resize).")
    top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
    return frames[:, top:top + crop, left:left + crop]


def preprocess_frames(frames: np.ndarray, *, resize: int, crop: int, mean: Sequence[float],
                      std: Sequence[float]) -> np.ndarray:
    """uint8 ``T x H x W x 3`` -> float32 ``T x crop x crop x 3``, ``(pixel / 255 - mean) / std``.

    Args:
      frames: uint8 RGB frames.
      resize: the short side after resizing (aspect kept, Pillow bilinear).
      crop: side of the center crop.
      mean, std: per-channel statistics of RGB in [0, 1].

    Raises:
      VjxError: frames not uint8 ``T x H x W x 3``, a crop larger than the resized frames, or bad
        mean/std.
    """
    mean_a, std_a = _channel_stats(mean, std)
    cropped = center_crop(resize_short_side(frames, resize), crop)
    return (cropped.astype(np.float32) / 255.0 - mean_a) / std_a


def denormalize(x: np.ndarray, *, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Inverse of the normalisation for display: ``... x 3`` -> float32 RGB in [0, 1] (clipped)."""
    mean_a, std_a = _channel_stats(mean, std)
    return np.clip(np.asarray(x, np.float32) * std_a + mean_a, 0.0, 1.0)
