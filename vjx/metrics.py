"""Measuring explanations: hard-mask preservation, and the metrics that compare attribution methods.

Every metric is a pure function whose compiled core is cached per shape and static option (a second
call with the same shapes does not recompile); the public functions check their arguments first and
raise a :class:`vjx.VjxError` naming the argument at fault.

Maps are ``B x T x H x W`` at the model's input resolution (``Attribution.maps``), or
``B x A x T x H x W`` for an area sweep (``ExtremalResult.masks``); videos are the model's inputs,
float32 ``B x T x H x W x C``.

    import vjx
    from vjx import attribution, metrics
    result = attribution.step(model, x, targets)                       # masks B x A x T x H x W
    hard = metrics.hard_masks(result.masks, result.areas)              # exactly round(a T H W) ones
    metrics.preserved_probability(model, x, targets, hard)             # B x A
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vjx.attribution import _common
from vjx.attribution.perturbation import losses, pyramid
from vjx.errors import VjxError

PERTURBATIONS = ("blur", "fade")


def _check_finite(name: str, values: jax.Array) -> None:
    if not bool(jnp.isfinite(values).all()):
        raise VjxError(f"{name} contain NaN or infinite values")


def _with_area_axis(name: str, maps, frames_shape: tuple[int, ...] | None = None) -> tuple[jax.Array, bool]:
    """``B x T x H x W`` or ``B x A x T x H x W`` -> (``B x A x T x H x W`` float32, whether A was given).

    ``frames_shape``, if given, is the ``(B, T, H, W)`` the maps must match.
    """
    maps = jnp.asarray(maps)
    shape = tuple(maps.shape)
    if maps.ndim not in (4, 5):
        raise VjxError(f"{name} must be B x T x H x W or B x A x T x H x W, got shape {shape}")
    has_areas = maps.ndim == 5
    maps = maps.astype(jnp.float32) if has_areas else maps.astype(jnp.float32)[:, None]
    if frames_shape is not None and (maps.shape[0],) + maps.shape[2:] != tuple(frames_shape):
        raise VjxError(f"{name} of shape {shape} do not fit the videos: expected B x T x H x W = "
                       f"{' x '.join(map(str, frames_shape))}, with an optional area axis after B")
    _check_finite(name, maps)
    return maps, has_areas


def _descending_ranks(values: jax.Array) -> jax.Array:
    """Rank of each value along the last axis, 0 = largest; equal values rank by index (lower first)."""
    order = jnp.argsort(-values, axis=-1, stable=True)
    iota = jnp.broadcast_to(jnp.arange(values.shape[-1], dtype=jnp.int32), values.shape)
    return jnp.put_along_axis(jnp.zeros(values.shape, jnp.int32), order, iota, axis=-1, inplace=False)


@functools.partial(jax.jit, static_argnames=("per_frame",))
def _hard_masks(masks: jax.Array, counts: jax.Array, *, per_frame: bool) -> jax.Array:
    b, a, t, h, w = masks.shape
    flat = masks.reshape(b, a, t, h * w) if per_frame else masks.reshape(b, a, 1, t * h * w)
    ranks = _descending_ranks(flat)
    return (ranks < counts[None, :, None, None]).astype(jnp.float32).reshape(masks.shape)


def hard_masks(masks, areas, *, per_frame: bool = False) -> jax.Array:
    """Binarises soft masks: each mask's top ``a`` fraction becomes 1, the rest 0.

    Exactly ``round(a * N)`` values become 1 (``N = T * H * W``, or ``H * W`` per frame; ``round``
    is Python's, halves to even, computed in float64). Among equal values the one with the lower
    flat (row-major ``t, y, x``) index is kept first, so the result is deterministic.

    Args:
      masks: float ``B x A x T x H x W`` (one area per ``A``) or ``B x T x H x W`` (one area).
      areas: ``A`` ratios in [0, 1] for 5-D masks (e.g. ``ExtremalResult.areas``); a scalar for 4-D.
      per_frame: keep the top ``a`` of every frame on its own (2D-EP's constraint) instead of the
        top ``a`` of the whole clip.
    Returns:
      float32 masks of the input's shape, values 0 or 1.
    """
    masks, has_areas = _with_area_axis("masks", masks)
    areas = np.asarray(areas, np.float64)
    if has_areas and areas.shape != (masks.shape[1],):
        raise VjxError(f"areas must hold one ratio per mask (A = {masks.shape[1]}), got shape {areas.shape}")
    if not has_areas and areas.ndim != 0:
        raise VjxError(f"areas must be one scalar ratio for B x T x H x W masks, got shape {areas.shape}")
    if not ((areas >= 0) & (areas <= 1)).all():
        raise VjxError(f"areas must lie in [0, 1], got {areas.tolist()}")
    size = masks.shape[3] * masks.shape[4] * (1 if per_frame else masks.shape[2])
    counts = np.round(areas.reshape(-1) * size).astype(np.int32)
    hard = _hard_masks(masks, jnp.asarray(counts), per_frame=bool(per_frame))
    return hard if has_areas else hard[:, 0]


@functools.partial(jax.jit, static_argnames=("apply_fn", "num_levels", "max_blur", "perturbation"))
def _preserved_probability(apply_fn, variables, videos, targets, masks, *, num_levels: int, max_blur: float,
                           perturbation: str) -> jax.Array:
    pyr = pyramid.build_pyramid(videos, num_levels, max_blur, perturbation)

    def one_area(area_masks):                                          # B x T x H x W
        log_p, _ = losses.log_prob(apply_fn(variables, pyramid.apply_mask(pyr, area_masks)), targets)
        return jnp.exp(log_p)

    return jax.lax.map(one_area, jnp.swapaxes(masks, 0, 1)).T          # B x A


def preserved_probability(model, videos, targets, masks, *, variables: Mapping[str, Any] | None = None,
                          num_levels: int = 8, max_blur: float = 20.0, perturbation: str = "blur") -> jax.Array:
    """Target probability of each video perturbed by each mask, exactly as extremal perturbation does.

    A mask value ``m`` picks level ``m * (L - 1)`` of the video's perturbation pyramid: 1 keeps the
    pixel, 0 gives the strongest blur (or black with ``"fade"``). With hard masks (:func:`hard_masks`)
    this is the preservation score at area ``a``. Areas are evaluated one after another (``lax.map``)
    to bound memory, each as one batched model call.

    Args:
      model: a ``vjx.Model`` or ``apply_fn(variables, video) -> logits`` (then pass ``variables``).
      videos: float32 ``B x T x H x W x C``, preprocessed for the model.
      targets: int ``B`` class indices.
      masks: ``B x A x T x H x W`` or ``B x T x H x W`` in [0, 1].
      num_levels, max_blur, perturbation: the pyramid, as in ``ExtremalConfig``.
    Returns:
      float32 ``B x A`` (``B`` for 4-D masks) target softmax probabilities.
    """
    apply_fn, variables = _common.resolve_model(model, variables)
    videos, targets = _common.check_inputs(apply_fn, variables, videos, targets)
    masks, has_areas = _with_area_axis("masks", masks, videos.shape[:4])
    if not bool(((masks >= 0) & (masks <= 1)).all()):
        raise VjxError("masks must lie in [0, 1] (1 keeps a pixel, 0 blurs it most)")
    if perturbation not in PERTURBATIONS:
        raise VjxError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, got {perturbation!r}")
    if not isinstance(num_levels, int) or num_levels < 2 or not max_blur > 0:
        raise VjxError(f"num_levels must be an integer >= 2 and max_blur > 0, got {num_levels!r}, {max_blur!r}")
    probs = _preserved_probability(apply_fn, variables, videos, targets, masks, num_levels=num_levels,
                                   max_blur=float(max_blur), perturbation=perturbation)
    return probs if has_areas else probs[:, 0]
