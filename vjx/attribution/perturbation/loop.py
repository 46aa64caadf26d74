"""The extremal-perturbation optimisation and the evaluation of its masks.

Every area is an independent optimisation of its own seed masks (the original runs one area per
call; vjx runs them all). Areas are processed in groups of ``config.area_batch`` (vmapped inside a
group, groups in turn; by default one area at a time on CPU, one group of all elsewhere); iterations
run ``config.iterations_per_call`` per compiled call (:mod:`vjx.attribution._stepping`). Videos are
a batch axis whose energies are summed, as in the original. Everything compiled is cached per
(model, :class:`Problem`, shapes): new area values do not recompile.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vjx.attribution import _stepping
from vjx.attribution._stepping import Progress
from vjx.attribution.perturbation import losses, mask, pyramid
from vjx.attribution.perturbation.config import ExtremalConfig
from vjx.attribution.perturbation.optim import make_optimizer

# A mask value counts as undecided (neither kept nor blurred) inside this open interval.
UNDECIDED = (0.1, 0.9)


@dataclasses.dataclass(frozen=True)
class Problem:
    """What the compiled code depends on (hashable: a jit static argument).

    Attributes:
      method: ``"ep2d"`` (a per-frame area loss), ``"ep3d"``, ``"step"`` (+ the ellipsoid loss) or
        ``"ep3d_temporal_smoothing"`` (3D-EP with seeds smoothed over time).
      geometry: the mask generator's sizes.
      config: the resolved config with its areas and bound removed (those are data, not program).
    """

    method: str
    geometry: mask.MaskGeometry
    config: ExtremalConfig

    @staticmethod
    def of(method: str, geometry: mask.MaskGeometry, config: ExtremalConfig) -> "Problem":
        return Problem(method, geometry, dataclasses.replace(config, areas=(), extremal_bound=None))


class AreaTargets(NamedTuple):
    """Per-area data of a group of ``G`` areas (arrays, so new areas need no new compilation).

    Attributes:
      kept_values: int32 ``G``: padded-mask values the area loss pulls to 1 (per frame for 2D-EP).
      hard_values: int32 ``G``: padded-mask values a hard mask keeps (:func:`hard_kept`).
      kept_cores: int32 ``G``: ellipsoid responses STEP's loss pulls to 1 (unused by other methods).
      keys: ``G`` PRNG keys (STEP's tie-breaking shuffle).
    """

    kept_values: jax.Array
    hard_values: jax.Array
    kept_cores: jax.Array
    keys: jax.Array


@flax.struct.dataclass
class LoopState:
    """The optimisation state of a group: seeds ``G x B x T x h x w``, optimiser state, iteration."""

    seeds: jax.Array
    opt_state: Any
    iteration: jax.Array


def area_targets(method: str, areas, frames: int, geometry: mask.MaskGeometry, key: jax.Array) -> AreaTargets:
    """The :class:`AreaTargets` of ``areas`` on clips of ``frames`` frames."""
    hp, wp = geometry.padded_shape
    size = hp * wp if method == "ep2d" else frames * hp * wp
    kept = [losses.kept_values(size, a) for a in areas]
    hard = [hard_kept(method, jnp.float32(a), frames, hp, wp) for a in areas]
    cores = [losses.kept_cores(a, frames, (hp, wp)) if method == "step" else 0 for a in areas]
    return AreaTargets(jnp.asarray(kept, jnp.int32), jnp.asarray(hard, jnp.int32), jnp.asarray(cores, jnp.int32),
                       jax.random.split(key, len(areas)))


def temporal_kernel(frames: int, sigma: float) -> np.ndarray:
    """float32 ``T x T`` rows of ``exp(-(t - s)^2 / (2 sigma^2))`` over the clip, each normalised to sum 1."""
    d = np.arange(frames)[:, None] - np.arange(frames)[None, :]
    k = np.exp(-(d ** 2) / (2.0 * sigma ** 2))
    return (k / k.sum(axis=1, keepdims=True)).astype(np.float32)


def sharpen(masks: jax.Array, slope: jax.Array) -> jax.Array:
    """Masks in [0, 1] through a sigmoid of ``slope`` around 0.5, rescaled to map 0 and 1 to themselves.

    Strictly increasing (so the top-``k`` values, the hard mask, do not change); the identity as
    ``slope`` goes to 0, a step at 0.5 as it grows.
    """
    half = 0.5 * jnp.maximum(slope, 1e-3)                  # sigmoid(x) - 1/2 = tanh(x / 2) / 2, stable near 0
    return 0.5 + 0.5 * jnp.tanh(half * (masks - 0.5)) / jnp.tanh(0.5 * half)


def sharpness_at(config: ExtremalConfig, iteration: jax.Array) -> jax.Array:
    """The sharpening slope at ``iteration``: 0 before ``sharpen_from``, then linear to ``sharpness`` at the end."""
    start = round(config.sharpen_from * config.num_iter)
    span = max(config.num_iter - 1 - start, 1)
    return config.sharpness * jnp.clip((iteration - start + 1) / span, 0.0, 1.0)


def masks_from_seeds(seeds: jax.Array, problem: Problem,
                     iteration: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Seeds ``B x T x h x w`` -> (cropped ``B x T x H x W``, padded ``B x T x Hp x Wp``) masks.

    Sharpened as the schedule asks (:func:`sharpness_at`) at ``iteration``; None = after the last.
    """
    c = problem.config
    if problem.method == "ep3d_temporal_smoothing":
        kernel = jnp.asarray(temporal_kernel(seeds.shape[1], c.temporal_sigma))
        seeds = jnp.einsum("ts,bshw->bthw", kernel, seeds, precision="highest")
    masks, padded = mask.generate(seeds, problem.geometry)
    if c.sharpness > 0 and c.sharpen_from < 1:
        slope = sharpness_at(c, jnp.int32(c.num_iter) if iteration is None else iteration)
        padded = jnp.where(slope > 0, sharpen(padded, slope), padded)
        masks = problem.geometry.crop(padded)
    return masks, padded


def _optimizer(problem: Problem) -> optax.GradientTransformation:
    c = problem.config
    return make_optimizer(c.optimizer, c.learning_rate, momentum=c.momentum, dampening=c.dampening,
                          lr_decay=c.lr_decay, num_iter=c.num_iter)


def hard_start(config: ExtremalConfig) -> int:
    """The first iteration whose forward pass sees the hard mask (straight through): ``hard_from * num_iter``."""
    return round(config.hard_from * config.num_iter)


def _kept(masks: jax.Array) -> jax.Array:
    return masks


def _blurred(masks: jax.Array) -> jax.Array:
    return 1 - masks


def _energy(seeds, kept_values, hard_values, kept_cores, key, iteration, *, apply_fn, problem: Problem, variables,
            pyr, targets):
    """Energy of one area for the batch (summed over videos) and its per-video terms ``B``.

    From :func:`hard_start` on, the model sees the video perturbed by the hard mask while the
    gradient flows through the soft one (a straight-through estimator), so that the optimisation
    makes the hard mask, the explanation a user reads, keep the class.
    """
    c = problem.config
    b, t = seeds.shape[:2]
    masks, padded = masks_from_seeds(seeds, problem, iteration)
    keeps = {"preserve": (_kept,), "delete": (_blurred,), "dual": (_kept, _blurred)}[c.variant]
    videos = [pyramid.apply_mask(pyr, keep(masks)) for keep in keeps]
    if hard_start(c) < c.num_iter:
        def seen_hard():                                     # computed only from hard_start on
            hard = problem.geometry.crop(hard_masks(padded, hard_values, problem.method == "ep2d"))
            return [x + jax.lax.stop_gradient(pyramid.apply_mask(pyr, keep(hard)) - x)
                    for keep, x in zip(keeps, videos)]
        videos = jax.lax.cond(iteration >= hard_start(c), seen_hard, lambda: videos)
    log_p, log_not = losses.log_prob(apply_fn(variables, jnp.concatenate(videos)),
                                     jnp.concatenate([targets] * len(videos)))
    if c.variant == "dual":
        reward, log_p = -log_p[:b] - log_not[b:], log_p[:b]
    elif c.variant == "preserve":
        reward = -log_p
    else:
        reward = -log_not
    reward = c.reward_weight * reward
    weight = c.area_weight * jnp.power(jnp.float32(c.area_growth), iteration.astype(jnp.float32))
    if problem.method == "ep2d":
        area = losses.area_loss(padded.reshape(b, t, -1), kept_values).mean(axis=1)
    else:
        area = losses.area_loss(padded.reshape(b, -1), kept_values)
    terms = {"reward": reward, "area_loss": weight * area, "probability": jnp.exp(log_p)}
    total = reward + weight * area
    if problem.method == "step":
        step_weight = jnp.where(iteration >= c.step_start, c.step_weight, 0.0)
        terms["step_loss"] = step_weight * losses.step_loss(padded, kept_cores, jax.random.fold_in(key, iteration))
        total = total + terms["step_loss"]
    return jnp.sum(total), terms


@functools.partial(jax.jit, static_argnames=("problem",))
def _init(seeds: jax.Array, *, problem: Problem) -> LoopState:
    return LoopState(seeds, _optimizer(problem).init(seeds), jnp.zeros([], jnp.int32))


@functools.partial(jax.jit, static_argnames=("apply_fn", "problem", "length"), donate_argnames=("state",))
def _advance(state: LoopState, targets_g: AreaTargets, variables, pyr, targets, *, apply_fn, problem: Problem,
             length: int) -> tuple[LoopState, dict[str, jax.Array]]:
    """``length`` iterations of one group; returns the new state and each term ``length x G x B``."""
    optimizer = _optimizer(problem)
    energy = functools.partial(_energy, apply_fn=apply_fn, problem=problem, variables=variables, pyr=pyr,
                               targets=targets)
    group_grads = jax.vmap(jax.grad(energy, has_aux=True), in_axes=(0, 0, 0, 0, 0, None))

    def body(state: LoopState, _):
        grads, terms = group_grads(state.seeds, *targets_g, state.iteration)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.seeds)
        seeds = jnp.clip(optax.apply_updates(state.seeds, updates), 0.0, 1.0)
        return LoopState(seeds, opt_state, state.iteration + 1), terms

    return _stepping.scan(body, state, length=length)


@flax.struct.dataclass
class Evaluation:
    """The final masks of a group and what they achieve (leading axes ``G x B``).

    The hard mask is the padded mask (the one the area loss counts) with its top ``a`` set to 1 and
    the rest to 0 (2D-EP: per frame), then cropped like the soft one.

    Attributes:
      masks: ``G x B x T x H x W`` cropped masks in [0, 1].
      hard_masks: bool ``G x B x T x H x W``, the cropped hard masks.
      probabilities: ``G x B`` target probability with the soft mask preserving the video.
      hard_probabilities: ``G x B`` the same with the hard mask.
      mask_area: ``G x B`` mean of the padded mask (the area the area loss counts).
      undecided: ``G x B`` fraction of the padded mask's values inside :data:`UNDECIDED`.
      frame_probabilities: ``G x B x T``: per frame ``t``, the target probability when frame ``t``
        keeps its soft mask and every other frame gets the strongest blur; None unless the config
        asks for it (``frame_probabilities``: ``T`` more forward passes per area).
    """

    masks: jax.Array
    hard_masks: jax.Array
    probabilities: jax.Array
    hard_probabilities: jax.Array
    mask_area: jax.Array
    undecided: jax.Array
    frame_probabilities: jax.Array | None = None


def hard_masks(masks: jax.Array, kept: jax.Array, per_frame: bool) -> jax.Array:
    """Top-``kept`` values of each mask set to 1, the rest 0 (ties: the lower flat index first).

    The same exact top-``k`` selection as the area loss (:func:`losses.top_values`, no sort), read
    from the mask's end so that ties go to the lower index.

    Args:
      masks: ``B x T x H x W`` in [0, 1].
      kept: int scalar, values set to 1 per mask (per frame if ``per_frame``).
    Returns:
      float32 ``B x T x H x W`` of 0 and 1.
    """
    b, t, h, w = masks.shape
    flat = masks.reshape(b, t, h * w) if per_frame else masks.reshape(b, 1, t * h * w)
    return losses.top_values(flat[..., ::-1], kept)[..., ::-1].astype(jnp.float32).reshape(masks.shape)


def preserved_probability(apply_fn, variables, pyr: jax.Array, targets: jax.Array, masks: jax.Array) -> jax.Array:
    """Target probability ``B`` of each video perturbed by its mask ``B x T x H x W`` (1 keeps, 0 blurs most)."""
    log_p, _ = losses.log_prob(apply_fn(variables, pyramid.apply_mask(pyr, masks)), targets)
    return jnp.exp(log_p)


def hard_kept(method: str, area: jax.Array, frames: int, height: int, width: int) -> jax.Array:
    """Values a hard mask keeps: ``round(a N)`` of the ``N = T H W`` (2D-EP: ``H W`` per frame) pixels."""
    size = height * width if method == "ep2d" else frames * height * width
    return jnp.round(area * size).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("apply_fn", "problem"))
def _evaluate(seeds: jax.Array, areas: jax.Array, variables, pyr, targets, *, apply_fn,
              problem: Problem) -> tuple[Evaluation, jax.Array]:
    """Masks of a group's seeds ``G x B x T x h x w`` and their scores (areas ``G``), and the target
    probability ``B`` of the unperturbed videos.

    Every probability comes from one compiled forward pass applied to the masks in turn (the all-ones
    mask, the soft masks, the hard masks, then each soft mask's frames one by one if asked): one
    model to compile, however many kinds of mask are scored.
    """
    masks, padded = jax.vmap(lambda s: masks_from_seeds(s, problem))(seeds)            # G x B x T x ...
    g, b, t, hp, wp = padded.shape
    per_frame = problem.method == "ep2d"
    hard = problem.geometry.crop(jax.vmap(
        lambda p, a: hard_masks(p, hard_kept(problem.method, a, t, hp, wp), per_frame))(padded, areas))
    stack = jnp.concatenate([jnp.ones_like(masks[:1]), masks, hard])                 # (1 + 2G) x B x T x H x W
    rows, frames = np.arange(1 + 2 * g), np.full(1 + 2 * g, -1)
    if problem.config.frame_probabilities:                                           # then G T rows: (area, frame)
        rows = np.concatenate([rows, np.repeat(np.arange(1, 1 + g), t)])
        frames = np.concatenate([frames, np.tile(np.arange(t), g)])

    def score(row_frame):
        row, frame = row_frame
        keep = (frame < 0) | (jnp.arange(t) == frame)                                # T: frames keeping the mask
        return preserved_probability(apply_fn, variables, pyr, targets,
                                     jnp.where(keep[None, :, None, None], stack[row], 0.0))

    probs = jax.lax.map(score, (jnp.asarray(rows, jnp.int32), jnp.asarray(frames, jnp.int32)))   # rows x B
    lo, hi = UNDECIDED
    frame_probabilities = None
    if problem.config.frame_probabilities:
        frame_probabilities = jnp.transpose(probs[1 + 2 * g:].reshape(g, t, b), (0, 2, 1))
    return Evaluation(
        masks=masks, hard_masks=hard.astype(bool), probabilities=probs[1:1 + g],
        hard_probabilities=probs[1 + g:1 + 2 * g], mask_area=padded.mean(axis=(2, 3, 4)),
        undecided=((padded > lo) & (padded < hi)).mean(axis=(2, 3, 4)),
        frame_probabilities=frame_probabilities), probs[0]


@functools.partial(jax.jit, static_argnames=("num_levels", "max_blur", "kind"))
def _pyramid(videos, *, num_levels: int, max_blur: float, kind: str) -> jax.Array:
    return pyramid.build_pyramid(videos, num_levels, max_blur, kind)


def optimize(apply_fn: Callable[..., jax.Array], problem: Problem, areas: tuple[float, ...], variables: Any,
             videos: jax.Array, targets: jax.Array, key: jax.Array, *, init: jax.Array | None = None,
             progress: Progress | None = None, evaluate_at: tuple[int, ...] = ()):
    """Optimises masks for every area and evaluates them.

    Args:
      apply_fn: ``apply_fn(variables, video) -> logits`` (hashable: a jit static argument).
      problem: a :class:`Problem` of a resolved config.
      areas: ``A`` area ratios.
      variables: the model's variables.
      videos: float32 ``B x T x H x W x C``.
      targets: int32 ``B``.
      key: PRNG key (STEP's tie-breaking shuffle).
      init: starting seeds ``A x B x T x h x w``; None = ones (the original's start).
      progress: called as ``progress(iterations done, num_iter)`` after each compiled call.
      evaluate_at: iterations (1 .. num_iter - 1) after which the masks are also evaluated.
    Returns:
      ``(Evaluation with leading A x B, history {name: num_iter x A x B}, base probability B,
      {iteration: Evaluation without masks} for evaluate_at)``.
    """
    config = problem.config
    num_areas, group = len(areas), config.area_batch
    b, t = videos.shape[:2]
    pyr = _pyramid(videos, num_levels=config.num_levels, max_blur=config.max_blur, kind=config.perturbation)
    per_area = area_targets(problem.method, areas, t, problem.geometry, key)
    area_values = jnp.asarray(areas, jnp.float32)
    if init is None:
        init = jnp.ones((num_areas, b, t, *problem.geometry.seed_shape), jnp.float32)
    groups = [slice(g, g + group) for g in range(0, num_areas, group)]
    states = [_init(init[g], problem=problem) for g in groups]

    def evaluation(with_masks: bool) -> tuple[Evaluation, jax.Array]:
        parts = [_evaluate(state.seeds, area_values[g], variables, pyr, targets, apply_fn=apply_fn, problem=problem)
                 for state, g in zip(states, groups)]
        whole = jax.tree_util.tree_map(lambda *p: jnp.concatenate(p), *[e for e, _ in parts])
        return (whole if with_masks else whole.replace(masks=None, hard_masks=None)), parts[0][1]

    chunks: list[dict[str, jax.Array]] = []
    snapshots: dict[int, Evaluation] = {}
    stops = sorted({i for i in evaluate_at if 0 < i < config.num_iter} | {config.num_iter})
    per_call = _stepping.steps_per_call(config.num_iter, config.iterations_per_call)
    done = 0
    while done < config.num_iter:
        length = min(per_call, next(i for i in stops if i > done) - done)
        terms = []
        for i, g in enumerate(groups):
            states[i], group_terms = _advance(states[i], AreaTargets(*(a[g] for a in per_area)), variables, pyr,
                                              targets, apply_fn=apply_fn, problem=problem, length=length)
            terms.append(group_terms)
        chunks.append({k: jnp.concatenate([g[k] for g in terms], axis=1) for k in terms[0]})
        done += length
        if done in stops and done < config.num_iter:
            snapshots[done] = evaluation(with_masks=False)[0]
        if progress is not None:
            jax.block_until_ready(states)
            progress(done, config.num_iter)
    history = {k: jnp.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    final, base = evaluation(with_masks=True)
    return final, history, base, snapshots


def iteration_runner(apply_fn: Callable[..., jax.Array], problem: Problem, area: float, variables: Any,
                     videos: jax.Array, targets: jax.Array) -> Callable[[], jax.Array]:
    """One area's optimisation as a callable that advances it by one iteration per call (for timing).

    Each call runs one compiled iteration (the first compiles) and returns the seeds ``1 x B x T x h x w``.
    """
    config = problem.config
    b, t = videos.shape[:2]
    pyr = _pyramid(videos, num_levels=config.num_levels, max_blur=config.max_blur, kind=config.perturbation)
    per_area = area_targets(problem.method, (area,), t, problem.geometry, jax.random.key(0))
    states = [_init(jnp.ones((1, b, t, *problem.geometry.seed_shape), jnp.float32), problem=problem)]

    def advance() -> jax.Array:
        states[0], _ = _advance(states[0], per_area, variables, pyr, targets, apply_fn=apply_fn, problem=problem,
                                length=1)
        return states[0].seeds

    return advance


def compile_iteration(apply_fn: Callable[..., jax.Array], problem: Problem, areas: tuple[float, ...], variables: Any,
                      videos: jax.Array, targets: jax.Array):
    """One iteration of every area at once (vmapped), compiled but not run: for XLA's cost and memory analyses.

    Returns:
      the compiled executable (``.cost_analysis()``, ``.memory_analysis()``).
    """
    config = problem.config
    b, t = videos.shape[:2]
    pyr = _pyramid(videos, num_levels=config.num_levels, max_blur=config.max_blur, kind=config.perturbation)
    state = _init(jnp.ones((len(areas), b, t, *problem.geometry.seed_shape), jnp.float32), problem=problem)
    per_area = area_targets(problem.method, areas, t, problem.geometry, jax.random.key(0))
    return _advance.lower(state, per_area, variables, pyr, targets, apply_fn=apply_fn, problem=problem,
                          length=1).compile()
