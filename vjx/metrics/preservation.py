"""Hard masks and the probability a masked video keeps (the extremal methods' own perturbation)."""
from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vjx.attribution import _common
from vjx.attribution.perturbation import loop, pyramid
from vjx.errors import VjxError
from vjx.metrics._arrays import with_area_axis

PERTURBATIONS = ("blur", "fade")


@functools.partial(jax.jit, static_argnames=("per_frame",))
def _hard_masks(masks: jax.Array, areas: jax.Array, *, per_frame: bool) -> jax.Array:
    """``B x A x T x H x W`` masks, ``A`` areas -> hard masks, by the extremal loop's own rule."""
    _, _, t, h, w = masks.shape
    kept = loop.hard_kept("ep2d" if per_frame else "ep3d", areas, t, h, w)                # A
    return jax.vmap(lambda m, k: loop.hard_masks(m, k, per_frame), in_axes=(1, 0), out_axes=1)(masks, kept)


def hard_masks(masks, areas, *, per_frame: bool = False) -> jax.Array:
    """Binarises soft masks: each mask's top ``a`` fraction becomes 1, the rest 0.

    Exactly ``round(a * N)`` values become 1 (``N = T * H * W``, or ``H * W`` per frame; rounded
    half to even in float32, as ``ExtremalResult.hard_probabilities`` counts them). Among equal
    values the one with the lower flat (row-major ``t, y, x``) index is kept first, so the result
    is deterministic.

    Args:
      masks: float ``B x A x T x H x W`` (one area per ``A``) or ``B x T x H x W`` (one area).
      areas: ``A`` ratios in [0, 1] for 5-D masks (e.g. ``ExtremalResult.areas``); a scalar for 4-D.
      per_frame: keep the top ``a`` of every frame on its own (2D-EP's constraint) instead of the
        top ``a`` of the whole clip.
    Returns:
      float32 masks of the input's shape, values 0 or 1.
    """
    masks, has_areas = with_area_axis("masks", masks)
    areas = np.asarray(areas, np.float32)
    if has_areas and areas.shape != (masks.shape[1],):
        raise VjxError(f"areas must hold one ratio per mask (A = {masks.shape[1]}), got shape {areas.shape}")
    if not has_areas and areas.ndim != 0:
        raise VjxError(f"areas must be one scalar ratio for B x T x H x W masks, got shape {areas.shape}")
    if not ((areas >= 0) & (areas <= 1)).all():
        raise VjxError(f"areas must lie in [0, 1], got {areas.tolist()}")
    hard = _hard_masks(masks, jnp.asarray(areas.reshape(-1)), per_frame=bool(per_frame))
    return hard if has_areas else hard[:, 0]


@functools.partial(jax.jit, static_argnames=("apply_fn", "num_levels", "max_blur", "perturbation"))
def _preserved_probability(apply_fn, variables, videos, targets, masks, *, num_levels: int, max_blur: float,
                           perturbation: str) -> jax.Array:
    pyr = pyramid.build_pyramid(videos, num_levels, max_blur, perturbation)
    by_area = jax.lax.map(lambda m: loop.preserved_probability(apply_fn, variables, pyr, targets, m),
                          jnp.swapaxes(masks, 0, 1))
    return by_area.T                                                                      # B x A


def preserved_probability(model, videos, targets, masks, *, variables: Mapping[str, Any] | None = None,
                          num_levels: int = 8, max_blur: float = 20.0, perturbation: str = "blur") -> jax.Array:
    """Target probability of each video perturbed by each mask, exactly as extremal perturbation does.

    A mask value ``m`` picks level ``m * (L - 1)`` of the video's perturbation pyramid: 1 keeps the
    pixel, 0 gives the strongest blur (zeros in the model's input space with ``"fade"``). With hard masks (:func:`hard_masks`)
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
    masks, has_areas = with_area_axis("masks", masks, videos.shape[:4])
    if not bool(((masks >= 0) & (masks <= 1)).all()):
        raise VjxError("masks must lie in [0, 1] (1 keeps a pixel, 0 blurs it most)")
    if perturbation not in PERTURBATIONS:
        raise VjxError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, got {perturbation!r}")
    if not isinstance(num_levels, int) or num_levels < 2 or not max_blur > 0:
        raise VjxError(f"num_levels must be an integer >= 2 and max_blur > 0, got {num_levels!r}, {max_blur!r}")
    probs = _preserved_probability(apply_fn, variables, videos, targets, masks, num_levels=num_levels,
                                   max_blur=float(max_blur), perturbation=perturbation)
    return probs if has_areas else probs[:, 0]


def minimum_preservation_ratio(hard_probabilities, areas, bound, converged=None) -> np.ndarray:
    """Eq. 3 of the paper (its Table 2): the smallest area whose hard mask keeps the class at ``bound``.

    The rule of ``vjx.attribution.extremal.extremal_area``, for any method's hard masks: a map's
    exact-area hard masks (:func:`hard_masks`) need no convergence, an extremal method's count only
    where they converged.

    Args:
      hard_probabilities: float ``B x A``: the target probability each hard mask keeps
        (:func:`preserved_probability`).
      areas: the ``A`` ratios.
      bound: float ``B``: the probability to keep (the clip's own: "without decreasing" it).
      converged: bool ``B x A`` (default all True).
    Returns:
      float64 ``B`` areas; NaN where no (converged) mask reaches the bound.
    """
    from vjx.attribution.extremal import extremal_area

    kept = np.asarray(hard_probabilities, np.float32)
    areas = np.asarray(areas, np.float32)
    bound = np.asarray(bound, np.float32)
    converged = np.ones(kept.shape, bool) if converged is None else np.asarray(converged, bool)
    if (kept.ndim != 2 or areas.shape != kept.shape[1:] or bound.shape != kept.shape[:1]
            or converged.shape != kept.shape):
        raise VjxError(f"hard_probabilities must be B x A with A areas, B bounds and converged B x A; got shapes "
                       f"{kept.shape}, {areas.shape}, {bound.shape}, {converged.shape}")
    return np.asarray(extremal_area(jnp.asarray(areas), jnp.asarray(kept), jnp.asarray(converged),
                                    jnp.asarray(bound)), np.float64)


def confidence_change(probabilities, kept) -> tuple[np.ndarray, np.ndarray]:
    """Average drop and increase in confidence (Chattopadhyay et al., Grad-CAM++), per video.

    ``drop = max(0, p - o) / p`` and ``increase = 1 if o > p else 0``, with ``p`` the target's
    probability on the video and ``o`` on the video seen through the explanation (the map as a
    soft mask, :func:`preserved_probability`). Their means over videos (x 100 in percent) are the
    published "average drop" (lower is better) and "increase in confidence" (higher is better).

    Args:
      probabilities: float ``B`` (``p``, > 0); kept: float ``B [x A]`` (``o``).
    Returns:
      ``(drop, increase)``, float64 of ``kept``'s shape.
    """
    p = np.asarray(probabilities, np.float64)
    o = np.asarray(kept, np.float64)
    if p.ndim != 1 or o.shape[:1] != p.shape or o.ndim > 2 or not (p > 0).all():
        raise VjxError(f"probabilities must be B values > 0 and kept B [x A], got shapes {p.shape} and {o.shape}")
    p = p.reshape(-1, *[1] * (o.ndim - 1))
    return np.maximum(p - o, 0) / p, (o > p).astype(np.float64)
