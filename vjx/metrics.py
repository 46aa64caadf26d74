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
    metrics.preserved_probability(model, x, targets, hard)             # B x A = result.hard_probabilities
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from vjx.attribution import _common
from vjx.attribution.perturbation import losses, loop, pyramid
from vjx.errors import VjxError

PERTURBATIONS = ("blur", "fade")
BASELINES = ("blur", "constant")


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
    maps = maps.astype(jnp.float32)
    if not has_areas:
        maps = maps[:, None]
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
    masks, has_areas = _with_area_axis("masks", masks)
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
    ranks = _descending_ranks(maps.reshape(b, a, size)).reshape(maps.shape)           # B x A x T x H x W
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
    maps, has_areas = _with_area_axis("maps", maps, videos.shape[:4])
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


@flax.struct.dataclass
class PointingResult:
    """A pointing game's outcome.

    Attributes:
      hits: bool, spatial ``B x [A x] T`` (False on frames without a box), temporal ``B x [A]``.
      counted: bool, same shape: the entries that count (annotated frames; every video for the
        temporal game).
      points: where each map points: spatial int32 ``B x [A x] T x 2`` as ``(x, y)`` = (column, row)
        of each frame's maximum; temporal int32 ``B x [A]``, the frame of highest total attribution.
      hit_rate: float32 ``[A]``: counted hits / counted entries over the whole batch (NaN if none count).
      class_hit_rates: float32 ``[A x] C``, the same per class of ``labels`` (NaN for a class with no
        counted entry); None without labels.
    """

    hits: jax.Array
    counted: jax.Array
    points: jax.Array
    hit_rate: jax.Array
    class_hit_rates: jax.Array | None


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _hit_rates(hits, counted, labels, *, num_classes: int | None):
    """``B x A x N`` hits and counted entries -> (rate ``A``, per-class rates ``A x C`` or None)."""
    scored = (hits & counted).astype(jnp.float32)
    counted = counted.astype(jnp.float32)
    rate = scored.sum((0, 2)) / counted.sum((0, 2))
    if num_classes is None:
        return rate, None
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)                      # B x C
    per_class = jnp.einsum("ban,bc->ac", scored, onehot) / jnp.einsum("ban,bc->ac", counted, onehot)
    return rate, per_class


def _labels(labels, batch: int, num_classes: int | None) -> tuple[jax.Array, int | None]:
    """Checks per-video class labels: (int32 ``B``, number of classes), or (zeros, None) without labels."""
    if labels is None:
        if num_classes is not None:
            raise VjxError("num_classes needs labels: pass one class label per video")
        return jnp.zeros(batch, jnp.int32), None
    labels = np.asarray(labels)
    if labels.shape != (batch,) or not np.issubdtype(labels.dtype, np.integer):
        raise VjxError(f"labels must be {batch} integer class labels (one per video), got {labels.dtype} of "
                       f"shape {labels.shape}")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if not isinstance(num_classes, (int, np.integer)) or labels.min() < 0 or labels.max() >= num_classes:
        raise VjxError(f"labels must lie in [0, num_classes = {num_classes}), got {labels.min()} ... {labels.max()}")
    return jnp.asarray(labels, jnp.int32), int(num_classes)


def _pointing_result(hits, counted, points, labels, num_classes, has_areas) -> PointingResult:
    """Rates of ``B x A [x T]`` hits; drops the area axis when the maps had none."""
    b, a = hits.shape[:2]
    rate, per_class = _hit_rates(hits.reshape(b, a, -1), counted.reshape(b, a, -1), labels, num_classes=num_classes)
    if not has_areas:
        hits, counted, points, rate = hits[:, 0], counted[:, 0], points[:, 0], rate[0]
        per_class = None if per_class is None else per_class[0]
    return PointingResult(hits=hits, counted=counted, points=points, hit_rate=rate, class_hit_rates=per_class)


@jax.jit
def _spatial_pointing(maps, boxes, annotated, tolerance):
    """maps ``B x A x T x H x W``, boxes ``B x T x K x 4``, annotated ``B x T x K``."""
    b, a, t, h, w = maps.shape
    flat = jnp.argmax(maps.reshape(b, a, t, h * w), axis=-1)                              # first maximum
    y, x = flat // w, flat % w                                                             # B x A x T
    x0, y0, x1, y1 = (boxes[:, None, :, :, i] for i in range(4))                          # B x 1 x T x K
    dx = jnp.maximum(jnp.maximum(x0 - x[..., None], x[..., None] - x1), 0.0)
    dy = jnp.maximum(jnp.maximum(y0 - y[..., None], y[..., None] - y1), 0.0)
    near = (dx * dx + dy * dy <= tolerance * tolerance) & annotated[:, None]
    counted = jnp.broadcast_to(annotated.any(-1)[:, None], near.shape[:3])
    return near.any(-1), counted, jnp.stack([x, y], axis=-1).astype(jnp.int32)


def spatial_pointing_game(maps, boxes, annotated=None, *, tolerance: float = 7.0, labels=None,
                          num_classes: int | None = None) -> PointingResult:
    """Spatial pointing game: does each annotated frame's maximum lie within ``tolerance`` of its box?

    Coordinates are pixels of the maps (the model's input frames: boxes must be resized and cropped
    as the frames were). A box is ``(x0, y0, x1, y1)``, x along columns (``W``), y along rows
    (``H``); the pixel at row ``r``, column ``c`` is the point ``(x, y) = (c, r)``, and the box
    holds the points with ``x0 <= x <= x1`` and ``y0 <= y <= y1`` (edges included). A frame is a
    hit when the Euclidean distance from its maximum (the first in row-major order on ties) to the
    nearest point of any of its annotated boxes is at most ``tolerance`` (the paper: 7 px). Only
    annotated frames count.

    Args:
      maps: ``B x T x H x W`` or ``B x A x T x H x W``.
      boxes: float ``B x T x 4`` (one box per frame) or ``B x T x K x 4`` (up to K per frame).
      annotated: bool ``B x T`` (or ``B x T x K``): which boxes exist; default all.
      tolerance: radius in pixels, >= 0.
      labels: optional int ``B`` class of each video, for per-class hit rates.
      num_classes: C for the per-class rates; default ``max(labels) + 1``.
    Returns:
      a :class:`PointingResult`.
    """
    maps, has_areas = _with_area_axis("maps", maps)
    b, _, t = maps.shape[:3]
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim == 3:
        boxes = boxes[:, :, None]
    if boxes.ndim != 4 or boxes.shape[:2] != (b, t) or boxes.shape[-1] != 4:
        raise VjxError(f"boxes must be B x T x 4 or B x T x K x 4 with B x T = {b} x {t}, got shape {boxes.shape}")
    annotated = np.ones(boxes.shape[:3], bool) if annotated is None else np.asarray(annotated)
    if annotated.ndim == 2:
        annotated = annotated[:, :, None]
    if annotated.shape != boxes.shape[:3] or annotated.dtype != bool:
        raise VjxError(f"annotated must be bool B x T (or B x T x K) = {' x '.join(map(str, boxes.shape[:3]))}, "
                       f"got {annotated.dtype} of shape {annotated.shape}")
    real = boxes[annotated]
    if not np.isfinite(real).all() or (real[:, 2] < real[:, 0]).any() or (real[:, 3] < real[:, 1]).any():
        raise VjxError("boxes must be finite (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1 on annotated frames")
    if not tolerance >= 0:
        raise VjxError(f"tolerance must be a distance in pixels >= 0, got {tolerance!r}")
    labels, num_classes = _labels(labels, b, num_classes)
    hits, counted, points = _spatial_pointing(maps, jnp.asarray(boxes), jnp.asarray(annotated),
                                              jnp.float32(tolerance))
    return _pointing_result(hits, counted, points, labels, num_classes, has_areas)


@jax.jit
def _temporal_pointing(maps, segments):
    """maps ``B x A x T x H x W``, segments ``B x 2`` -> hits, counted, frames, each ``B x A``."""
    frame = jnp.argmax(maps.sum((3, 4)), axis=-1)                                         # first on ties
    hits = (frame >= segments[:, :1]) & (frame < segments[:, 1:])
    return hits, jnp.ones_like(hits), frame.astype(jnp.int32)


def temporal_pointing_game(maps, segments, *, labels=None, num_classes: int | None = None) -> PointingResult:
    """Temporal pointing game: does the frame of highest total attribution fall inside the action?

    A frame's importance is the sum of its map over ``H x W``; the frame with the largest sum (the
    first on ties) is a hit when ``start <= frame < stop``. Every video counts.

    Args:
      maps: ``B x T x H x W`` or ``B x A x T x H x W``.
      segments: int ``B x 2``: ``(start, stop)`` frame indices of the maps' frames, stop excluded
        (as a Python slice), ``0 <= start < stop <= T``.
      labels, num_classes: as :func:`spatial_pointing_game`.
    Returns:
      a :class:`PointingResult` (``hits``, ``counted`` and ``points`` are ``B x [A]``).
    """
    maps, has_areas = _with_area_axis("maps", maps)
    b, _, t = maps.shape[:3]
    segments = np.asarray(segments)
    if segments.shape != (b, 2) or not np.issubdtype(segments.dtype, np.integer):
        raise VjxError(f"segments must be {b} x 2 integer (start, stop) frame indices, got {segments.dtype} of "
                       f"shape {segments.shape}")
    bad = np.flatnonzero((segments[:, 0] < 0) | (segments[:, 0] >= segments[:, 1]) | (segments[:, 1] > t))
    if bad.size:
        raise VjxError(f"segments[{bad[0]}] = {segments[bad[0]].tolist()} is not a frame range with "
                       f"0 <= start < stop <= {t}")
    labels, num_classes = _labels(labels, b, num_classes)
    hits, counted, frames = _temporal_pointing(maps, jnp.asarray(segments, jnp.int32))
    return _pointing_result(hits, counted, frames, labels, num_classes, has_areas)


def _average_ranks(values: jax.Array) -> jax.Array:
    """Ranks along the last axis (0-based), equal values sharing the mean of their ranks (as scipy)."""
    ordered = jnp.sort(values, axis=-1)
    search = jax.vmap(jnp.searchsorted, in_axes=(0, 0, None))
    low = search(ordered, values, "left")
    high = search(ordered, values, "right")
    return (low + high - 1).astype(jnp.float32) / 2


@jax.jit
def _rank_correlation(a: jax.Array, b: jax.Array) -> jax.Array:
    size = a.shape[-1]
    ra = _average_ranks(a) / size - 0.5
    rb = _average_ranks(b) / size - 0.5
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    return (ra * rb).sum(-1) / jnp.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))


def rank_correlation(a, b) -> jax.Array:
    """Spearman rank correlation between two maps of each video, over all their values.

    Ties share their mean rank (as ``scipy.stats.spearmanr``); a constant map gives NaN.

    Args:
      a, b: float ``B x ...`` of the same shape (e.g. ``B x T x H x W``).
    Returns:
      float32 ``B`` in [-1, 1].
    """
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    if a.shape != b.shape or a.ndim < 2:
        raise VjxError(f"rank_correlation needs two B x ... maps of one shape, got {tuple(a.shape)} and "
                       f"{tuple(b.shape)}")
    _check_finite("maps", a)
    _check_finite("maps", b)
    return _rank_correlation(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1))


@dataclasses.dataclass(frozen=True)
class Randomisation:
    """The model-randomisation sanity check's outcome.

    Attributes:
      correlations: float32 ``B x L``: Spearman correlation between each video's map under the
        trained model and under the model whose layer groups ``0 ... l`` were re-initialised.
      layers: the ``L`` groups, top (output) first; each a tuple of ``/``-joined parameter paths.
    """

    correlations: jax.Array
    layers: tuple[tuple[str, ...], ...]


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _default_init(model):
    """``init_fn(key) -> variables`` of a ``vjx.Model``: its module initialised on a zero clip of its spec."""
    spec = model.spec
    clip = jnp.zeros((1, spec.num_frames, spec.crop, spec.crop, 3), jnp.float32)
    return lambda key: model.module.init(key, clip)


def _definition_order(init_fn, key) -> list[str]:
    """Top-level parameter names in the order ``init_fn`` builds them (Flax: definition order).

    Read while tracing (``jax.eval_shape``): outputs of traced functions come back with sorted keys.
    """
    order = []

    def record(k):
        variables = init_fn(k)
        order.extend(variables["params"])
        return variables

    jax.eval_shape(record, key)
    return order


def _group_leaves(group: tuple[str, ...], trained: dict, fresh: dict) -> list[tuple[str, ...]]:
    """The parameter leaves under a layer group's paths; each path must exist and the group must change."""
    names = []
    for path in group:
        prefix = tuple(path.split("/"))
        found = [name for name in trained if name[:len(prefix)] == prefix]
        if not found:
            raise VjxError(f"layers: {path!r} is not a parameter path of the model; top-level entries: "
                           f"{', '.join(sorted({name[0] for name in trained}))}")
        names += found
    if all(np.array_equal(trained[name], fresh[name]) for name in names):
        raise VjxError(f"init_fn(key) reproduces the trained weights of layers {', '.join(group)}: nothing would be "
                       "randomised; pass another key (a model built with random weights may have used it)")
    return names


def model_randomisation(model, attribute, *, variables: Mapping[str, Any] | None = None, layers=None,
                        init_fn=None, key: jax.Array | None = None) -> Randomisation:
    """Cascading model randomisation (Adebayo et al. 2018): do the maps depend on the learned weights?

    Layer groups are re-initialised cumulatively from the output down; after each group the maps are
    recomputed and compared with the trained model's by rank correlation. Maps that stay highly
    correlated while the weights are destroyed do not explain the model. Only ``params`` are
    re-initialised; other collections (BatchNorm statistics) keep their trained values.

    Args:
      model: a ``vjx.Model`` or ``apply_fn(variables, video) -> logits`` (then pass ``variables``);
        passed through to ``attribute``.
      attribute: ``attribute(model, variables) -> maps B x ...``, e.g.
        ``lambda m, v: vjx.attribution.gradient(m, x, t, variables=v).maps``.
      variables: the trained weights (default the ``vjx.Model``'s).
      layers: the groups to re-initialise, top first; each a ``/``-joined path into ``params``
        (``"fc"``, ``"layer4_1/conv2"``) or a sequence of paths re-initialised together. Default:
        every top-level entry of ``params`` in reverse definition order (as ``init_fn`` builds them).
      init_fn: ``init_fn(key) -> variables`` of a freshly initialised model of the same structure;
        default for a ``vjx.Model`` its module's ``init`` on a zero clip of its spec's shape; needed
        with an ``apply_fn``.
      key: PRNG key of the re-initialisation (default ``jax.random.key(0)``).
    Returns:
      a :class:`Randomisation`.
    """
    from vjx.model import Model

    _, variables = _common.resolve_model(model, variables)
    variables = dict(variables)                    # every call below passes the same kind of mapping
    if init_fn is None:
        if not isinstance(model, Model):
            raise VjxError("model_randomisation of an apply_fn needs init_fn=key -> freshly initialised variables")
        init_fn = _default_init(model)
    if "params" not in variables:
        raise VjxError("variables have no 'params' collection to re-initialise")
    key = jax.random.key(0) if key is None else key
    trained = {_path_names(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])}
    fresh = {_path_names(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(jax.jit(init_fn)(key)["params"])}
    mismatched = sorted(set(trained) ^ set(fresh)) or [p for p in trained if trained[p].shape != fresh[p].shape]
    if mismatched:
        raise VjxError(f"init_fn's params do not match the model's at {'/'.join(mismatched[0])}; init_fn must "
                       "build the same model")
    if layers is None:
        layers = list(reversed(_definition_order(init_fn, key)))
    groups = tuple((g,) if isinstance(g, str) else tuple(g) for g in layers)
    if not groups:
        raise VjxError("layers must name at least one layer group")
    members = [_group_leaves(group, trained, fresh) for group in groups]

    reference = attribute(model, variables)
    randomised: set[tuple[str, ...]] = set()
    correlations = []
    for names in members:
        randomised.update(names)
        params = jax.tree_util.tree_map_with_path(
            lambda path, leaf: fresh[_path_names(path)] if _path_names(path) in randomised else leaf,
            variables["params"])
        correlations.append(rank_correlation(reference, attribute(model, {**variables, "params": params})))
    return Randomisation(correlations=jnp.stack(correlations, axis=1), layers=groups)
