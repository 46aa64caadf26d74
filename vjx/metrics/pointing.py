"""Pointing games: does a map's maximum fall on the ground truth, in space or in time."""
from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from vjx.errors import VjxError
from vjx.metrics._arrays import with_area_axis


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


def _checked_boxes(boxes, annotated, b: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Checks boxes ``B x T [x K] x 4`` and ``annotated`` -> (float32 ``B x T x K x 4``, bool ``B x T x K``)."""
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
    return boxes, annotated


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
    maps, has_areas = with_area_axis("maps", maps)
    b = maps.shape[0]
    boxes, annotated = _checked_boxes(boxes, annotated, b, maps.shape[2])
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
    maps, has_areas = with_area_axis("maps", maps)
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


@jax.jit
def _energy_pointing(maps, boxes, annotated):
    """maps ``B x A x T x H x W``, boxes ``B x T x K x 4``, annotated ``B x T x K`` -> shares ``B x A``."""
    h, w = maps.shape[-2:]
    rows, cols = jnp.arange(h, dtype=jnp.float32)[:, None], jnp.arange(w, dtype=jnp.float32)[None, :]
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))                       # B x T x K x 1 x 1
    inside = ((cols >= x0) & (cols <= x1) & (rows >= y0) & (rows <= y1) & annotated[..., None, None]).any(2)
    mass = jnp.maximum(maps, 0.0) * annotated.any(-1)[:, None, :, None, None]            # annotated frames only
    return (mass * inside[:, None]).sum((2, 3, 4)) / mass.sum((2, 3, 4))


def energy_pointing_game(maps, boxes, annotated=None) -> jax.Array:
    """Energy pointing game (Wang et al., Score-CAM): the share of the map's mass inside the boxes.

    Over the annotated frames, the sum of the map's positive values on pixels inside any of the
    frame's boxes, divided by their sum over the whole frames. Boxes and pixels as in
    :func:`spatial_pointing_game` (pixel at row ``r``, column ``c`` is inside when
    ``x0 <= c <= x1`` and ``y0 <= r <= y1``). A map spread evenly scores the boxes' share of the
    frame; a map all inside scores 1.

    Args:
      maps: ``B x T x H x W`` or ``B x A x T x H x W``.
      boxes, annotated: as :func:`spatial_pointing_game`.
    Returns:
      float32 ``B [x A]`` shares in [0, 1]; NaN where the map has no positive mass on annotated frames.
    """
    maps, has_areas = with_area_axis("maps", maps)
    boxes, annotated = _checked_boxes(boxes, annotated, maps.shape[0], maps.shape[2])
    shares = _energy_pointing(maps, jnp.asarray(boxes), jnp.asarray(annotated))
    return shares if has_areas else shares[:, 0]


@jax.jit
def _maximum_in_region(maps, regions):
    """maps ``B x A x T x H x W``, regions bool ``B x T x H x W`` -> shares ``B x A``."""
    top = maps == maps.max((2, 3, 4), keepdims=True)
    return (top & regions[:, None]).sum((2, 3, 4)) / top.sum((2, 3, 4))


def maximum_in_region(maps, regions) -> jax.Array:
    """Pointing by a whole clip's maximum: does the map's largest value lie inside the region?

    The grid pointing game of image attribution (Böhle et al., B-cos) for video: 1 when the map's
    maximum over all ``T x H x W`` voxels lies in the region, 0 when outside. Ties are shared, not
    broken by position: the score is the fraction of the maximal voxels inside the region, so a flat
    map scores the region's share of the clip (0.5 for a half) instead of a hit at the first pixel.

    Args:
      maps: ``B x T x H x W`` or ``B x A x T x H x W``.
      regions: bool ``B x T x H x W``: the ground truth (e.g. one half of a side-by-side clip).
    Returns:
      float32 ``B [x A]`` in [0, 1].
    """
    maps, has_areas = with_area_axis("maps", maps)
    regions = np.asarray(regions)
    if regions.dtype != bool or regions.shape != maps.shape[:1] + maps.shape[2:]:
        raise VjxError(f"regions must be bool B x T x H x W = {' x '.join(map(str, maps.shape[:1] + maps.shape[2:]))},"
                       f" got {regions.dtype} of shape {regions.shape}")
    shares = _maximum_in_region(maps, jnp.asarray(regions))
    return shares if has_areas else shares[:, 0]
