"""Videos as a model sees them: read up front, sampled and preprocessed by the model's spec, and
turned back into pixels for pictures.

    videos = read_videos(paths)                               # every file checked before any compute
    x = np.stack([model_input(spec, v) for v in videos])      # float32 B x T x S x S x 3
    frames = display_frames(spec, x[0])                       # uint8 T x S x S x 3

The one path from frames to a model input is :meth:`vjx.ModelSpec.prepare`; this module adds the
run's policy (short videos are sampled with repeated frames, warned about by name).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from vjx import data
from vjx.models.registry import ModelSpec


def read_videos(paths: Sequence[str]) -> list[data.Video]:
    """Reads every video up front, so a bad file fails the run before any compute or output."""
    return [data.read_video(p) for p in paths]


def model_input(spec: ModelSpec, video: data.Video) -> np.ndarray:
    """uint8 ``N x H x W x 3`` -> float32 ``T x S x S x 3``; a video shorter than T frames is sampled
    with repeated frames and a warning that names it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = spec.prepare(video.frames, repeat=True)
    for w in caught:
        warnings.warn(f"video {video.path!r}: {w.message}", stacklevel=2)
    return x


def display_frames(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    """The model's input as the viewer should see it: float32 ``T x S x S x 3`` -> uint8."""
    rgb = data.denormalize(x, mean=spec.mean, std=spec.std)
    return (rgb * 255.0 + 0.5).astype(np.uint8)
