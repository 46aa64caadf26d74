"""Extremal perturbation for videos: 2D-EP, 3D-EP, STEP and 3D-EP with temporally smoothed seeds.

Each method finds, for every requested area ratio ``a``, a smooth mask that keeps about ``a`` of the
clip while keeping the target class probable (Li et al., WACV 2021, after Fong et al., ICCV 2019).
Every area is optimised in the same call; ``docs/original.md`` lists every constant of the original.

    import vjx
    from vjx.attribution import step, ExtremalConfig
    model = vjx.load_model("r2plus1d_18", checkpoint="r2plus1d_18-91a641e6.pth")
    result = step(model, videos, targets, ExtremalConfig(areas=(0.05, 0.1)))      # the native schedule
    result = step(model, videos, targets, ExtremalConfig(areas=(0.05, 0.1), schedule="original"))
    result = step(model, videos, targets, ExtremalConfig(areas=(0.1,), schedule="fast"))  # 200 it., the previous default
    result.masks            # B x A x T x H x W in [0, 1]
    result.hard_probabilities, result.mask_area, result.converged     # B x A

Deliberate differences from the original code:
- all areas run in one call (the original used only the first area of its list per call);
- the returned masks are those of the final parameters (after the last step), with their
  preserved probability; the original returned the mask evaluated before its last step;
- ``log(1 - p)`` of the delete reward is computed from the logits (stable), not from ``1 - softmax``;
- STEP's tie-breaking shuffle uses an explicit key;
- Eq. 3's extremal area is computed from hard masks, and only from masks that converged.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from vjx.attribution import _common
from vjx.attribution._stepping import Progress
from vjx.attribution.perturbation import loop, warm_start
from vjx.attribution.perturbation.config import (DEFAULT_AREAS, DEFAULT_SCHEDULE, SCHEDULES, WARM_STARTS,
                                                 ExtremalConfig, Schedule, default_sigma, resolve)

__all__ = ["DEFAULT_AREAS", "DEFAULT_SCHEDULE", "SCHEDULES", "WARM_STARTS", "ExtremalConfig", "ExtremalResult", "Schedule", "Scores",
           "default_sigma", "ep2d", "ep3d", "ep3d_temporal_smoothing", "extremal_area", "step"]

# A mask counts as converged when its soft area is within this of the requested area and at most
# MAX_UNDECIDED of its values lie in loop.UNDECIDED (neither kept nor blurred).
AREA_TOLERANCE = 0.02
MAX_UNDECIDED = 0.10


@flax.struct.dataclass
class Scores:
    """How good each mask is (every field ``B x A``).

    Attributes:
      probabilities: target softmax probability with the soft mask preserving the video (blur
        elsewhere).
      hard_probabilities: the same with the hard mask: the top ``a`` fraction of the padded mask
        (the one the area loss counts; 2D-EP: of each frame) set to 1, the rest to 0, cropped.
      mask_area: the soft mask's area: the mean of the padded mask.
      undecided: fraction of the padded mask's values between 0.1 and 0.9.
      converged: the soft area is within ``AREA_TOLERANCE`` of ``a`` and at most ``MAX_UNDECIDED``
        of the values are undecided.
    """

    probabilities: jax.Array
    hard_probabilities: jax.Array
    mask_area: jax.Array
    undecided: jax.Array
    converged: jax.Array


@flax.struct.dataclass
class ExtremalResult:
    """What an extremal-perturbation run returns (a pytree).

    Attributes:
      masks: float32 ``B x A x T x H x W`` in [0, 1], at input resolution (the cropped masks).
      hard_masks: bool ``B x A x T x H x W``: the hard masks (see :class:`Scores`).
      probabilities, hard_probabilities, mask_area, undecided, converged: ``B x A``, the final
        masks' :class:`Scores`.
      history: ``{name: B x A x num_iter}``: ``reward``, ``area_loss`` (both weighted, as the original
        records them), ``probability`` (target probability under the optimised perturbation) and, for
        STEP, ``step_loss``.
      extremal_area: ``B``: Eq. 3 on hard masks: the smallest area whose converged hard mask keeps
        the bound; NaN where none does.
      areas: ``A`` the area ratios.
      base_probability: ``B`` target probability of the unperturbed video.
      snapshots: ``{iteration: Scores}`` of the masks after each iteration asked for by ``evaluate_at``.
      frame_probabilities: ``B x A x T`` with ``config.frame_probabilities``, else None: per frame
        ``t``, the target probability when only frame ``t`` keeps its soft mask (the other frames
        get the strongest blur): the per-frame importance curve.
    """

    masks: jax.Array
    hard_masks: jax.Array
    probabilities: jax.Array
    hard_probabilities: jax.Array
    mask_area: jax.Array
    undecided: jax.Array
    converged: jax.Array
    history: dict[str, jax.Array]
    extremal_area: jax.Array
    areas: jax.Array
    base_probability: jax.Array
    snapshots: dict[int, Scores]
    frame_probabilities: jax.Array | None = None


def ep2d(model, videos, targets, config: ExtremalConfig = ExtremalConfig(), *, variables=None,
         key: jax.Array | None = None, progress: Progress | None = None,
         evaluate_at: tuple[int, ...] = ()) -> ExtremalResult:
    """2D-EP ("EP-3D-Evenly"): every frame's mask is held to area ``a`` on its own.

    Args:
      model: a ``vjx.Model`` or ``apply_fn(variables, video) -> logits`` (then pass ``variables``).
      videos: float32 ``B x T x H x W x 3``, preprocessed for the model.
      targets: int ``B`` class indices.
      config: an :class:`ExtremalConfig`.
      key: PRNG key (default ``jax.random.key(0)``); same key, same masks.
      progress: optional ``progress(iterations done, num_iter)``, called as the loop advances.
      evaluate_at: iterations after which the masks are also scored (``result.snapshots``), to
        follow convergence.
    Returns:
      an :class:`ExtremalResult`.
    """
    return _extremal("ep2d", model, videos, targets, config, variables, key, progress, evaluate_at)


def ep3d(model, videos, targets, config: ExtremalConfig = ExtremalConfig(), *, variables=None,
         key: jax.Array | None = None, progress: Progress | None = None,
         evaluate_at: tuple[int, ...] = ()) -> ExtremalResult:
    """3D-EP: one area constraint over the whole clip (area spread freely over time). Args as :func:`ep2d`."""
    return _extremal("ep3d", model, videos, targets, config, variables, key, progress, evaluate_at)


def step(model, videos, targets, config: ExtremalConfig = ExtremalConfig(), *, variables=None,
         key: jax.Array | None = None, progress: Progress | None = None,
         evaluate_at: tuple[int, ...] = ()) -> ExtremalResult:
    """STEP: 3D-EP plus the spatio-temporal ellipsoid smoothness loss. Args as :func:`ep2d`.

    ``key`` also drives the random tie-breaking of the loss's sort.
    """
    return _extremal("step", model, videos, targets, config, variables, key, progress, evaluate_at)


def ep3d_temporal_smoothing(model, videos, targets, config: ExtremalConfig = ExtremalConfig(), *,
                            variables=None, key: jax.Array | None = None, progress: Progress | None = None,
                            evaluate_at: tuple[int, ...] = ()) -> ExtremalResult:
    """Table 4's baseline: 3D-EP whose seed masks are Gaussian-smoothed over time before upsampling.

    Each frame's seed becomes ``sum_s k(t - s) seed_s / sum_s k(t - s)``, ``k(d) = exp(-d^2 / 2 sigma^2)``
    with ``sigma = config.temporal_sigma`` frames (the paper compares three values). Args as :func:`ep2d`.
    """
    return _extremal("ep3d_temporal_smoothing", model, videos, targets, config, variables, key, progress,
                     evaluate_at)


def _extremal(method: str, model, videos, targets, config: ExtremalConfig, variables,
              key: jax.Array | None, progress, evaluate_at) -> ExtremalResult:
    apply_fn, variables = _common.resolve_model(model, variables)
    videos, targets = _common.check_inputs(apply_fn, variables, videos, targets)
    _, frames, height, width, _ = videos.shape
    spec = getattr(model, "spec", None)
    spec_sigma = spec.ep_sigma if spec is not None and spec.crop == height == width else None
    config, geometry = resolve(method, config, frames, height, width, spec_sigma)
    key = jax.random.key(0) if key is None else key
    init = None
    if config.warm_start == "gradient":
        init = warm_start.seeds_from_map(warm_start.gradient_map(apply_fn, variables, videos, targets), config.areas,
                                         geometry, per_frame=method == "ep2d")
    evaluation, history, base, snapshots = loop.optimize(
        apply_fn, loop.Problem.of(method, geometry, config), config.areas, variables, videos, targets, key,
        init=init, progress=progress, evaluate_at=tuple(evaluate_at))
    areas = jnp.asarray(config.areas, jnp.float32)
    final = _scores(evaluation, areas)
    bound = base if config.extremal_bound is None else jnp.full_like(base, config.extremal_bound)
    return ExtremalResult(
        masks=jnp.swapaxes(evaluation.masks, 0, 1), hard_masks=jnp.swapaxes(evaluation.hard_masks, 0, 1),
        probabilities=final.probabilities,
        hard_probabilities=final.hard_probabilities, mask_area=final.mask_area, undecided=final.undecided,
        converged=final.converged, history={k: jnp.transpose(v, (2, 1, 0)) for k, v in history.items()},
        extremal_area=extremal_area(areas, final.hard_probabilities, final.converged, bound), areas=areas,
        base_probability=base, snapshots={i: _scores(e, areas) for i, e in snapshots.items()},
        frame_probabilities=(None if evaluation.frame_probabilities is None
                             else jnp.swapaxes(evaluation.frame_probabilities, 0, 1)))


def _scores(evaluation: loop.Evaluation, areas: jax.Array) -> Scores:
    """The :class:`Scores` (``B x A``) of an evaluation (``A x B``)."""
    def by_video(a):
        return jnp.swapaxes(a, 0, 1)

    mask_area, undecided = by_video(evaluation.mask_area), by_video(evaluation.undecided)
    return Scores(probabilities=by_video(evaluation.probabilities),
                  hard_probabilities=by_video(evaluation.hard_probabilities), mask_area=mask_area,
                  undecided=undecided,
                  converged=(jnp.abs(mask_area - areas) <= AREA_TOLERANCE) & (undecided <= MAX_UNDECIDED))


def extremal_area(areas: jax.Array, hard_probabilities: jax.Array, converged: jax.Array,
                  bound: jax.Array) -> jax.Array:
    """Eq. 3: the smallest area whose converged hard mask keeps the target probability at the bound.

    Args:
      areas: ``A`` ratios.
      hard_probabilities, converged: ``B x A``.
      bound: ``B`` probabilities to reach.
    Returns:
      ``B`` areas; NaN where no converged mask reaches the bound.
    """
    reached = converged & (hard_probabilities >= bound[:, None])
    smallest = jnp.min(jnp.where(reached, areas[None], jnp.inf), axis=1)
    return jnp.where(jnp.isinf(smallest), jnp.nan, smallest)
