"""Deletion and insertion curves (Petsiuk et al. 2018) and their areas."""
from __future__ import annotations

import functools
from typing import Any, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from vjx.attribution import _common
from vjx.attribution.perturbation import losses, pyramid
from vjx.errors import VjxError
from vjx.metrics._arrays import descending_ranks, with_area_axis

BASELINES = ("blur", "constant")


@flax.struct.dataclass
class Curve:
    """A deletion or insertion curve.

    Attributes:
      probabilities: float32 ``B x [A x] (k + 1)``: the target probability after each step
        (step 0: nothing deleted / inserted yet).
      fractions: float32 ``k + 1``: the fraction of voxels deleted / inserted at each step.
      auc: float32 ``B x [A]``: the area under ``probabilities`` over ``fractions`` (trapezoid rule).
    """

    probabilities: jax.Array
    fractions: jax.Array
    auc: jax.Array


def _step_counts(steps: int, size: int) -> np.ndarray:
    """int32 ``steps + 1``: voxels changed after step ``j``, ``round(j / steps * size)`` (0 ... size)."""
    return np.round(np.arange(steps + 1) / steps * size).astype(np.int32)


@functools.partial(jax.jit, static_argnames=("apply_fn", "insertion", "steps", "baseline", "max_blur",
                                             "batch_size"))
def _perturbation_curve(apply_fn, variables, videos, targets, maps, constant, *, insertion: bool, steps: int,
                        baseline: str, max_blur: float, batch_size: int) -> Curve:
    b, a = maps.shape[:2]
    size = maps[0, 0].size
    ranks = descending_ranks(maps.reshape(b, a, size)).reshape(maps.shape)           # B x A x T x H x W
    if baseline == "blur":
        base = pyramid.build_pyramid(videos, 2, max_blur, "blur")[:, :, 0]              # the strongest blur
    else:
        base = jnp.full_like(videos, constant)
    changed_from, changed_to = (base, videos) if insertion else (videos, base)
    counts = _step_counts(steps, size)
    chunks = np.concatenate([counts, np.full(-len(counts) % batch_size, size, np.int32)]).reshape(-1, batch_size)
    chunk_targets = jnp.broadcast_to(targets[None, :, None], (batch_size, b, a)).reshape(-1)

    def evaluate(chunk):                                                                # batch_size counts
        changed = (ranks[None] < chunk[:, None, None, None, None, None])[..., None]       # S B A T H W 1
        x = jnp.where(changed, changed_to[None, :, None], changed_from[None, :, None])
        log_p, _ = losses.log_prob(apply_fn(variables, x.reshape(-1, *videos.shape[1:])), chunk_targets)
        return jnp.exp(log_p).reshape(batch_size, b, a)

    probs = jax.lax.map(evaluate, jnp.asarray(chunks)).reshape(-1, b, a)[:steps + 1]
    probs = jnp.moveaxis(probs, 0, -1)                                                   # B x A x (k + 1)
    fractions = jnp.asarray(counts / size, jnp.float32)
    return Curve(probabilities=probs, fractions=fractions, auc=jnp.trapezoid(probs, fractions, axis=-1))


def _curve(model, videos, targets, maps, variables, steps, baseline, constant, max_blur, batch_size,
           insertion: bool) -> Curve:
    apply_fn, variables = _common.resolve_model(model, variables)
    videos, targets = _common.check_inputs(apply_fn, variables, videos, targets)
    maps, has_areas = with_area_axis("maps", maps, videos.shape[:4])
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise VjxError(f"{name} must be a positive integer, got {value!r}")
    if baseline not in BASELINES:
        raise VjxError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    if baseline == "blur" and not max_blur > 0:
        raise VjxError(f"max_blur must be positive, got {max_blur!r}")
    curve = _perturbation_curve(apply_fn, variables, videos, targets, maps, jnp.float32(constant),
                                insertion=insertion, steps=steps, baseline=baseline, max_blur=float(max_blur),
                                batch_size=min(batch_size, steps + 1))
    if has_areas:
        return curve
    return curve.replace(probabilities=curve.probabilities[:, 0], auc=curve.auc[:, 0])


def deletion_curve(model, videos, targets, maps, *, variables: Mapping[str, Any] | None = None, steps: int = 20,
                   baseline: str = "blur", constant: float = 0.0, max_blur: float = 20.0,
                   batch_size: int = 8) -> Curve:
    """Deletion curve (Petsiuk et al. 2018): the target probability as the map's top voxels vanish.

    The map ranks the clip's ``T * H * W`` voxels (largest first; equal values by flat index, lower
    first). Step ``j`` of ``k`` replaces the top ``round(j / k * T H W)`` voxels (all channels) by the
    baseline. A faithful map makes the probability fall fast: a low AUC is good. All ``k + 1``
    inputs are evaluated on the device, ``batch_size`` steps per model call (``lax.map`` over chunks).

    Args:
      model: a ``vjx.Model`` or ``apply_fn(variables, video) -> logits`` (then pass ``variables``).
      videos: float32 ``B x T x H x W x C``, preprocessed for the model.
      targets: int ``B`` class indices.
      maps: ``B x T x H x W`` or ``B x A x T x H x W`` (one curve per area), at input resolution.
      steps: ``k``.
      baseline: ``"blur"`` (each frame blurred with sigma ``max_blur``: the strongest level of the
        extremal methods' pyramid) or ``"constant"`` (every value ``constant``, in model input space).
      batch_size: steps per model call; a call sees ``batch_size * B * A`` clips.
    Returns:
      a :class:`Curve`.
    """
    return _curve(model, videos, targets, maps, variables, steps, baseline, constant, max_blur, batch_size,
                  insertion=False)


def insertion_curve(model, videos, targets, maps, *, variables: Mapping[str, Any] | None = None, steps: int = 20,
                    baseline: str = "blur", constant: float = 0.0, max_blur: float = 20.0,
                    batch_size: int = 8) -> Curve:
    """Insertion curve: the target probability as the map's top voxels return into the baseline.

    Step ``j`` of ``k`` shows the top ``round(j / k * T H W)`` voxels of the video and the baseline
    everywhere else; a faithful map makes the probability rise fast: a high AUC is good. Arguments
    and ranking as :func:`deletion_curve`.
    """
    return _curve(model, videos, targets, maps, variables, steps, baseline, constant, max_blur, batch_size,
                  insertion=True)
