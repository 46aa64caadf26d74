"""Removal-based attribution for video: RISE and occlusion. Both call the model on many perturbed
copies of each clip, ``batch`` copies per compiled call, and explain with the target's softmax
probability.

    attr = rise(model, videos, targets, RiseConfig(num_masks=500, batch=16), key=jax.random.key(0))
    attr = occlusion(model, videos, targets, OcclusionConfig(window=(4, 56, 56), stride=(4, 28, 28)))
    attr.maps        # B x T x H x W in [0, 1]
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vjx.attribution import _batched
from vjx.attribution._common import check_inputs, resolve_model
from vjx.attribution._stepping import Progress
from vjx.attribution.backprop import Attribution, target_summary
from vjx.attribution.display import min_max_normalize
from vjx.errors import ArgumentError


@dataclasses.dataclass(frozen=True)
class RiseConfig:
    """Options of :func:`rise`.

    Attributes:
      num_masks: random masks N (each one model call per video).
      grid: cells of the low-resolution random grid, ``(time, height, width)``.
      keep: probability that a cell is kept.
      batch: masked clips per model call (memory bound).
      normalize: min-max normalise each video's map.
    """

    num_masks: int = 1000
    grid: tuple[int, int, int] = (4, 7, 7)
    keep: float = 0.5
    batch: int = 16
    normalize: bool = True

    def __post_init__(self):
        if not isinstance(self.num_masks, (int, np.integer)) or self.num_masks < 1:
            raise ArgumentError("num_masks", f"must be a whole number of RISE masks >= 1, got {self.num_masks!r}")
        if not 0.0 < self.keep < 1.0 or len(self.grid) != 3 or min(self.grid) < 1:
            raise ArgumentError("method", f"RISE needs 0 < keep < 1 and a grid of 3 positive cell counts, got "
                                f"keep {self.keep}, grid {self.grid}")
        _batched.check_batch(self.batch)


@dataclasses.dataclass(frozen=True)
class OcclusionConfig:
    """Options of :func:`occlusion`.

    Attributes:
      window: occluded block ``(frames, height, width)``, clipped to the clip.
      stride: step of the window; a last position flush with the end is added so every voxel is covered.
      batch: occluded clips per model call (memory bound).
      normalize: min-max normalise each video's map.
    """

    window: tuple[int, int, int] = (4, 56, 56)
    stride: tuple[int, int, int] = (4, 28, 28)
    batch: int = 16
    normalize: bool = True

    def __post_init__(self):
        if len(self.window) != 3 or len(self.stride) != 3 or min(self.window) < 1 or min(self.stride) < 1:
            raise ArgumentError("method", f"occlusion needs 3 positive window sizes and strides, got window "
                                f"{self.window}, stride {self.stride}")
        _batched.check_batch(self.batch)


def _target_probabilities(apply_fn, variables, clips, targets):
    return jnp.take_along_axis(jax.nn.softmax(apply_fn(variables, clips)), targets[:, None], axis=1)[:, 0]


def rise_mask(key: jax.Array, grid: tuple[int, int, int], keep: float, shape: tuple[int, int, int]) -> jax.Array:
    """One RISE mask ``T x H x W`` in [0, 1]: a ``grid`` of Bernoulli(keep) cells, upsampled linearly to
    ``(cells + 1) x cell size`` and cropped at a random shift of less than one cell (Petsiuk et al. 2018)."""
    cells_key, shift_key = jax.random.split(key)
    cells = jax.random.bernoulli(cells_key, keep, grid).astype(jnp.float32)
    size = tuple(math.ceil(s / g) for s, g in zip(shape, grid))
    big = jax.image.resize(cells, tuple((g + 1) * c for g, c in zip(grid, size)), method="linear")
    shift = jax.random.randint(shift_key, (3,), 0, jnp.asarray(size))
    return jax.lax.dynamic_slice(big, tuple(shift), shape)


@functools.partial(jax.jit, static_argnames=("apply_fn", "grid", "keep"))
def _rise_scores(apply_fn, variables, x, targets, chunk, *, grid, keep):
    videos, keys = chunk
    masks = jax.vmap(lambda k: rise_mask(k, grid, keep, x.shape[1:4]))(keys)
    return _target_probabilities(apply_fn, variables, x[videos] * masks[..., None], targets[videos])


@functools.partial(jax.jit, static_argnames=("grid", "keep", "shape"))
def _rise_sum(keys, probabilities, *, grid, keep, shape):
    """``sum_i p[:, i] M_i / (N keep)``: ``B x T x H x W``, one mask in memory at a time."""
    def add(total, item):
        key, p = item
        return total + p[:, None, None, None] * rise_mask(key, grid, keep, shape)[None], None

    total, _ = jax.lax.scan(add, jnp.zeros((probabilities.shape[0], *shape)), (keys, probabilities.T))
    return total / (keys.shape[0] * keep)


def rise(model, videos, targets, config: RiseConfig = RiseConfig(), *, variables: Mapping[str, Any] | None = None,
         key: jax.Array | None = None, progress: Progress | None = None) -> Attribution:
    """RISE for video: the mean of random spatio-temporal masks weighted by the target probability
    each keeps, ``S = sum_i p(x * M_i) M_i / (N keep)``.

    Args:
      model, videos, targets, variables: as :func:`vjx.attribution.gradient`.
      config: mask count, grid, keep probability, clips per call.
      key: PRNG key of the masks (default ``jax.random.key(0)``); same key, same masks, same map.
      progress: optional ``progress(done, total)`` over the ``B x N`` masked clips.
    Returns:
      :class:`Attribution`: ``maps`` ``B x T x H x W``; ``raw`` S before normalisation.
    """
    apply_fn, variables = resolve_model(model, variables)
    x, t = check_inputs(apply_fn, variables, videos, targets)
    b, n = x.shape[0], config.num_masks
    keys = jax.random.split(jax.random.key(0) if key is None else key, n)
    pairs = (jnp.repeat(jnp.arange(b), n), jnp.concatenate([keys] * b))
    score = functools.partial(_rise_scores, apply_fn, variables, x, t, grid=tuple(config.grid), keep=config.keep)
    probabilities = _batched.batched(score, pairs, batch=config.batch, progress=progress).reshape(b, n)
    raw = _rise_sum(keys, probabilities, grid=tuple(config.grid), keep=config.keep, shape=tuple(x.shape[1:4]))
    maps = min_max_normalize(raw) if config.normalize else raw
    return Attribution(maps, raw, *target_summary(apply_fn(variables, x), t))


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start positions of a window sliding over ``size`` (the last one flush with the end)."""
    window = min(window, size)
    return sorted(set(range(0, size - window + 1, stride)) | {size - window})


@functools.partial(jax.jit, static_argnames=("apply_fn", "window"))
def _occluded_scores(apply_fn, variables, x, targets, chunk, *, window):
    videos, starts = chunk

    def occlude(video, start):
        zeros = jnp.zeros(window + (x.shape[-1],), x.dtype)
        return jax.lax.dynamic_update_slice(video, zeros, (*start, 0))

    clips = jax.vmap(occlude)(x[videos], starts)
    return _target_probabilities(apply_fn, variables, clips, targets[videos])


def occlusion(model, videos, targets, config: OcclusionConfig = OcclusionConfig(), *,
              variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
              progress: Progress | None = None) -> Attribution:
    """Occlusion for video: a block slides over the clip, set to 0 (the mean colour in the model's
    normalisation); each voxel's score is the target probability's drop, averaged over the windows
    that cover it (Captum's ``Occlusion`` with baseline 0, on probabilities).

    Args:
      model, videos, targets, variables: as :func:`vjx.attribution.gradient`.
      config: window, stride, clips per call.
      key: unused (deterministic method).
      progress: optional ``progress(done, total)`` over the ``B x windows`` occluded clips.
    Returns:
      :class:`Attribution`: ``maps`` ``B x T x H x W``: the positive part of the drop, normalised;
      ``raw`` the signed drop; diagnostics ``windows`` (the number of window positions).
    """
    apply_fn, variables = resolve_model(model, variables)
    x, t = check_inputs(apply_fn, variables, videos, targets)
    b, shape = x.shape[0], tuple(x.shape[1:4])
    window = tuple(min(w, s) for w, s in zip(config.window, shape))
    starts = np.array(np.meshgrid(*(window_starts(s, w, st) for s, w, st in zip(shape, window, config.stride)),
                                  indexing="ij")).reshape(3, -1).T                                  # n x 3
    n = len(starts)
    pairs = (jnp.repeat(jnp.arange(b), n), jnp.tile(jnp.asarray(starts, jnp.int32), (b, 1)))
    score = functools.partial(_occluded_scores, apply_fn, variables, x, t, window=window)
    occluded = np.asarray(_batched.batched(score, pairs, batch=config.batch, progress=progress)).reshape(b, n)
    logits = apply_fn(variables, x)
    base = np.asarray(target_summary(logits, t)[1])
    total, count = np.zeros((b, *shape)), np.zeros(shape)
    for i, (s0, s1, s2) in enumerate(starts):
        region = np.s_[s0:s0 + window[0], s1:s1 + window[1], s2:s2 + window[2]]
        total[(slice(None), *region)] += (base - occluded[:, i])[:, None, None, None]
        count[region] += 1
    raw = jnp.asarray(total / count, jnp.float32)
    positive = jax.nn.relu(raw)
    maps = min_max_normalize(positive) if config.normalize else positive
    return Attribution(maps, raw, *target_summary(logits, t), {"windows": n})
