"""Choosing the T frames a model sees: the original toolkit's "long range, first" sampling."""
from __future__ import annotations

import warnings

import numpy as np

from vjx.errors import VjxError


def sample_indices(num_available: int, num_frames: int, *, repeat: bool = False) -> np.ndarray:
    """Frame indices of the original's "long range, first" sampling.

    With ``r = num_available // num_frames`` it takes ``0, r, 2r, ...`` below ``num_available`` and
    keeps the last ``num_frames`` of them (e.g. 40 frames, T = 16: ``r = 2``, indices 8, 10, ..., 38).

    Args:
      num_available: N, frames in the video.
      num_frames: T, frames the model needs.
      repeat: when ``N < T``, sample evenly with repetition (``floor(i * N / T)``) and warn, instead
        of raising. The original toolkit refuses such videos.

    Returns:
      int64 ``T`` indices, non-decreasing.

    Raises:
      VjxError: ``N < T`` without ``repeat``, or no frames at all, or ``T < 1``.
    """
    if num_frames < 1:
        raise VjxError(f"num_frames={num_frames}: a model needs at least 1 frame.")
    if num_available < 1:
        raise VjxError("the video has no frames; nothing to sample.")
    if num_available < num_frames:
        if not repeat:
            raise VjxError(f"the video has {num_available} frames but the model needs {num_frames}; use "
                           "a longer video or allow repeated frames (repeat=True).")
        warnings.warn(f"the video has {num_available} frames but the model needs {num_frames}: "
                      "sampling evenly with repeated frames.", stacklevel=2)
        return np.arange(num_frames, dtype=np.int64) * num_available // num_frames
    step = num_available // num_frames
    return np.arange(0, num_available, step, dtype=np.int64)[-num_frames:]


def sample_frames(frames: np.ndarray, num_frames: int, *, repeat: bool = False) -> np.ndarray:
    """The frames at :func:`sample_indices`: ``N x H x W x C`` -> ``T x H x W x C`` (a copy).

    Raises:
      VjxError: ``frames`` is not an array with a leading frame axis, or see :func:`sample_indices`.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise VjxError(f"frames must be N x H x W x 3, got shape {frames.shape}.")
    return frames[sample_indices(frames.shape[0], num_frames, repeat=repeat)]
