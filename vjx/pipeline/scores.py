"""The scores of one batch of explanations: every metric of :mod:`vjx.metrics` the cases allow.

    rows = score_batch(call, variables, x, targets, cases, explanations, areas, extremal=False)
    rows[i][j]      # case i, area j: {"deletion_auc": ..., "insertion_auc": ..., ...}

A method's map of a case is scored once per area: an extremal method's mask of that area, any other
method's one map at every area. :data:`METRICS` is the one table of metrics: each row names a metric,
whether higher or lower is better, which cases it applies to and how a batch computes it; scoring
and the evaluation's table (:mod:`vjx.pipeline.table`) iterate it, so a new metric is one row.
Which metrics a case gets depends on what it is:

- ``spatial_pointing`` (real clips with boxes): the fraction of annotated input frames whose map
  maximum lies within ``tolerance`` pixels of a box (:func:`vjx.metrics.spatial_pointing_game`);
  ``energy_pointing``: the share of the map's positive mass inside the boxes on those frames
  (:func:`vjx.metrics.energy_pointing_game`).
- ``half_pointing`` and ``half_energy`` (spatial pairs): 1 if the clip's map maximum lies in the
  explained half, else 0 (ties shared, :func:`vjx.metrics.maximum_in_region`), and the share of the
  map's mass in that half (:func:`vjx.metrics.energy_pointing_game`); a flat map scores 0.5 on both.
- ``temporal_pointing`` (cases with a segment, every joined pair): 1 if the frame of largest total
  map falls inside the segment, else 0 (:func:`vjx.metrics.temporal_pointing_game`).
- real clips only: ``deletion_auc`` (low = good) and ``insertion_auc`` (high = good) over
  ``curve_steps`` steps with the blur baseline.
- every case: ``hard_preserved_probability``, the target probability when only the map's top ``a``
  fraction of voxels is kept (hard mask, :func:`vjx.metrics.hard_masks`) and the rest blurred as
  extremal perturbation blurs it. Extremal methods already report this column for their own masks
  (:class:`vjx.pipeline.methods.Explanation`, the same hard-mask rule, on the padded mask and per
  frame for 2D-EP); it is not computed twice. ``minimum_preservation_ratio``: the smallest area
  whose hard mask keeps the unperturbed probability (the paper's Eq. 3; extremal methods: their
  ``extremal_area``, converged masks only; NaN when none does, so it counts only where reached).
  ``average_drop`` / ``confidence_increase`` (Grad-CAM++'s): the map scaled to a maximum of 1 used
  as a soft mask (extremal methods: their soft mask of each area) against the unperturbed
  probability (:func:`vjx.metrics.confidence_change`).
- every case, describing it rather than scoring the map: ``target_probability`` and
  ``target_rank`` (1 = the model's top class) of the explained class on the unperturbed input.
  On a spatial pair they say whether the model still recognises the class in the composite.

Maps must keep their ranking: a display clip (the gradient methods' percentile normalisation)
would tie the top voxels and move every maximum to the first of them. The evaluation therefore
asks the methods for unclipped maps.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vjx import metrics
from vjx.pipeline.cases import Case
from vjx.pipeline.methods import Explanation


@dataclasses.dataclass
class Batch:
    """One batch of explanations and what scoring them needs; a metric reads what it uses.

    Attributes:
      call, variables: the explained model's ``apply_fn(variables, video) -> logits`` and weights.
      x: float32 ``B x T x H x W x 3`` inputs; targets: int ``B`` explained classes.
      cases: the ``B`` cases; explanations: their ``B`` explanations.
      maps: float32 ``B x R x T x H x W``; row_of_area: the map row of each of the ``A`` areas.
      areas, extremal, curve_steps, tolerance: as :func:`score_batch`.
    """

    call: Callable
    variables: Any
    x: np.ndarray
    targets: np.ndarray
    cases: Sequence[Case]
    explanations: Sequence[Explanation]
    maps: np.ndarray
    row_of_area: list[int]
    areas: Sequence[float]
    extremal: bool
    curve_steps: int
    tolerance: float
    _memo: dict = dataclasses.field(default_factory=dict)

    def once(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()``, computed once per batch for ``key`` (metrics that share a curve share it)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def per_area(self, by_row: np.ndarray) -> np.ndarray:
        """``n x R`` values of the map rows -> ``n x A`` values of the areas."""
        return np.asarray(by_row)[:, self.row_of_area]


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric of the evaluation.

    Attributes:
      name: its column in the rows and the table.
      better: ``"higher"`` or ``"lower"``: which way is better; None for a number that describes the
        case rather than scores the map (the class's probability).
      applies: whether a case gets it.
      compute: ``(batch, indices) -> n x A`` values of the cases at ``indices`` (those it applies
        to), or None when the run's settings skip it.
    """

    name: str
    better: str | None
    applies: Callable[[Case], bool]
    compute: Callable[[Batch, list[int]], np.ndarray | None]


def _is_clip(case: Case) -> bool:
    return case.kind == "clip"


def _has_boxes(case: Case) -> bool:
    return case.kind != "spatial" and case.truth is not None and bool(case.truth.annotated.any())


def _is_spatial(case: Case) -> bool:
    return case.kind == "spatial"


def _has_segment(case: Case) -> bool:
    return case.truth is not None and case.truth.segment is not None


def _every_case(case: Case) -> bool:
    return True


def _curve(batch: Batch, indices: list[int], insertion: bool):
    """The deletion (insertion) curve of the cases at ``indices``, per map row, or None (no steps)."""
    if not batch.curve_steps:
        return None
    curve = metrics.insertion_curve if insertion else metrics.deletion_curve
    # One curve step per model call (a call sees n x R clips): at I3D's 224 px, 8 steps of an extremal
    # method's 3 areas in one call took 18.7 GB of memory.
    return batch.once(("curve", insertion, tuple(indices)), lambda: curve(
        batch.call, batch.x[indices], batch.targets[indices], batch.maps[indices], variables=batch.variables,
        steps=batch.curve_steps, batch_size=1))


def _curve_auc(insertion: bool):
    def compute(batch: Batch, indices: list[int]) -> np.ndarray | None:
        curve = _curve(batch, indices, insertion)
        return None if curve is None else batch.per_area(curve.auc)
    return compute


def _probabilities(batch: Batch) -> np.ndarray:
    """Class probabilities of the unperturbed inputs: float64 ``B x K`` (one model call per batch)."""
    return batch.once(("probabilities",), lambda: np.asarray(
        jax.nn.softmax(batch.call(batch.variables, jnp.asarray(batch.x)).astype(jnp.float32), axis=-1), np.float64))


def _target_probability(batch: Batch, indices: list[int]) -> np.ndarray:
    p = _probabilities(batch)[indices, batch.targets[indices]]
    return np.repeat(p[:, None], len(batch.areas), axis=1)


def _target_rank(batch: Batch, indices: list[int]) -> np.ndarray:
    probabilities = _probabilities(batch)[indices]
    own = probabilities[np.arange(len(indices)), batch.targets[indices]]
    rank = 1 + (probabilities > own[:, None]).sum(1)
    return np.repeat(rank[:, None].astype(np.float64), len(batch.areas), axis=1)


def _own(batch: Batch, indices: list[int], key: str) -> np.ndarray:
    """An extremal method's own per-area number of the cases at ``indices``: ``n x A``."""
    return np.array([[row[key] for row in batch.explanations[i].areas] for i in indices], np.float64)


def _hard_kept(batch: Batch, indices: list[int]) -> np.ndarray:
    """Target probability kept by each area's hard mask of the map: ``n x A`` (extremal: the method's own)."""
    if batch.extremal:
        return _own(batch, indices, "hard_preserved_probability")
    return batch.once(("hard", tuple(indices)), lambda: np.asarray(metrics.preserved_probability(
        batch.call, batch.x[indices], batch.targets[indices],
        metrics.hard_masks(batch.maps[indices][:, batch.row_of_area], np.asarray(batch.areas, np.float32)),
        variables=batch.variables), np.float64))


def _hard_preserved_probability(batch: Batch, indices: list[int]) -> np.ndarray | None:
    # Extremal methods report their own masks' (see the docstring): not a second time.
    return None if batch.extremal else _hard_kept(batch, indices)


def _minimum_preservation_ratio(batch: Batch, indices: list[int]) -> np.ndarray:
    if batch.extremal:                       # Eq. 3 on the method's converged hard masks
        ratio = np.array([batch.explanations[i].numbers["extremal_area"] for i in indices], np.float64)
    else:
        bound = _probabilities(batch)[indices, batch.targets[indices]]
        ratio = metrics.minimum_preservation_ratio(_hard_kept(batch, indices), batch.areas, bound)
    return np.repeat(ratio[:, None], len(batch.areas), axis=1)


def _confidence_change(batch: Batch, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Average drop and increase in confidence of the map as a soft mask (scaled to a maximum of 1)."""
    def compute():
        if batch.extremal:
            kept = _own(batch, indices, "preserved_probability")
        else:
            maps = np.maximum(batch.maps[indices][:, 0], 0)
            peak = maps.reshape(len(indices), -1).max(1).reshape(-1, 1, 1, 1)
            soft = maps / np.where(peak > 0, peak, 1)
            kept = np.asarray(metrics.preserved_probability(batch.call, batch.x[indices], batch.targets[indices],
                                                            soft, variables=batch.variables), np.float64)
            kept = np.repeat(kept[:, None], len(batch.areas), axis=1)
        return metrics.confidence_change(_probabilities(batch)[indices, batch.targets[indices]], kept)
    return batch.once(("confidence", tuple(indices)), compute)


def _pad(values: np.ndarray, k: int) -> np.ndarray:
    """``T x K' [x 4]`` -> ``T x k [x 4]`` with zeros (False) after the first ``K'``."""
    pad = [(0, 0), (0, k - values.shape[1])] + [(0, 0)] * (values.ndim - 2)
    return np.pad(values, pad)


def _boxes(batch: Batch, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The cases' boxes ``n x T x K x 4`` and which exist ``n x T x K``, padded to one ``K``."""
    k_max = max(batch.cases[i].truth.boxes.shape[1] for i in indices)
    return (np.stack([_pad(batch.cases[i].truth.boxes, k_max) for i in indices]),
            np.stack([_pad(batch.cases[i].truth.annotated, k_max) for i in indices]))


def _spatial_pointing(batch: Batch, indices: list[int]) -> np.ndarray:
    boxes, annotated = _boxes(batch, indices)
    game = metrics.spatial_pointing_game(batch.maps[indices], boxes, annotated, tolerance=batch.tolerance)
    hits, counted = np.asarray(game.hits), np.asarray(game.counted)                     # n x R x T
    return batch.per_area((hits & counted).sum(-1) / counted.sum(-1))


def _energy_pointing(batch: Batch, indices: list[int]) -> np.ndarray:
    boxes, annotated = _boxes(batch, indices)
    return batch.per_area(np.asarray(metrics.energy_pointing_game(batch.maps[indices], boxes, annotated)))


def _half_pointing(batch: Batch, indices: list[int]) -> np.ndarray:
    """Whether the clip's map maximum lies in the explained half (ties shared: a flat map scores 0.5)."""
    boxes, _ = _boxes(batch, indices)
    x0, x1 = boxes[:, 0, 0, 0], boxes[:, 0, 0, 2]                                      # one half per case
    cols = np.arange(batch.maps.shape[-1])
    inside = (cols >= x0[:, None]) & (cols <= x1[:, None])                              # n x W
    regions = np.broadcast_to(inside[:, None, None, :], (len(indices), *batch.maps.shape[2:]))
    return batch.per_area(np.asarray(metrics.maximum_in_region(batch.maps[indices], regions)))


def _temporal_pointing(batch: Batch, indices: list[int]) -> np.ndarray:
    segments = np.array([batch.cases[i].truth.segment for i in indices], np.int64)
    game = metrics.temporal_pointing_game(batch.maps[indices], segments)
    return batch.per_area(np.asarray(game.hits, np.float64))                             # n x A


METRICS: tuple[Metric, ...] = (
    Metric("spatial_pointing", "higher", _has_boxes, _spatial_pointing),
    Metric("energy_pointing", "higher", _has_boxes, _energy_pointing),
    Metric("half_pointing", "higher", _is_spatial, _half_pointing),
    Metric("half_energy", "higher", _is_spatial, _energy_pointing),
    Metric("temporal_pointing", "higher", _has_segment, _temporal_pointing),
    Metric("deletion_auc", "lower", _is_clip, _curve_auc(insertion=False)),
    Metric("insertion_auc", "higher", _is_clip, _curve_auc(insertion=True)),
    Metric("hard_preserved_probability", "higher", _every_case, _hard_preserved_probability),
    Metric("minimum_preservation_ratio", "lower", _every_case, _minimum_preservation_ratio),
    Metric("average_drop", "lower", _every_case, lambda batch, indices: _confidence_change(batch, indices)[0]),
    Metric("confidence_increase", "higher", _every_case,
           lambda batch, indices: _confidence_change(batch, indices)[1]),
    Metric("target_probability", None, _every_case, _target_probability),
    Metric("target_rank", None, _every_case, _target_rank),
)


def score_batch(call, variables, x: np.ndarray, targets: np.ndarray, cases: Sequence[Case],
                explanations: Sequence[Explanation], areas: Sequence[float], *, extremal: bool,
                curve_steps: int = 20, tolerance: float = 7.0) -> list[list[dict[str, float]]]:
    """Scores of a batch, per case and area: every row of :data:`METRICS` that applies.

    Args:
      call: ``apply_fn(variables, video) -> logits`` of the explained model; ``variables`` its weights.
      x: float32 ``B x T x H x W x 3``: the cases' model inputs.
      targets: int ``B``: the explained classes.
      cases: the ``B`` cases (their kind and ground truth decide which metrics apply).
      explanations: the ``B`` explanations: maps ``R x T x H x W`` (``R`` = one per area for an
        extremal method, else 1).
      areas: the ``A`` areas.
      extremal: whether map row ``j`` belongs to area ``j`` (else row 0 serves every area).
      curve_steps: steps of the deletion and insertion curves; 0 skips them.
      tolerance: the spatial pointing game's radius in input pixels.
    Returns:
      ``B`` lists of ``A`` dicts metric name -> value (only the metrics that apply).
    """
    batch = Batch(call=call, variables=variables, x=x, targets=np.asarray(targets), cases=cases,
                  explanations=explanations, maps=np.stack([e.maps for e in explanations]).astype(np.float32),
                  row_of_area=list(range(len(areas))) if extremal else [0] * len(areas), areas=areas,
                  extremal=extremal, curve_steps=curve_steps, tolerance=tolerance)
    rows: list[list[dict[str, float]]] = [[{} for _ in areas] for _ in cases]
    for metric in METRICS:
        indices = [i for i, case in enumerate(cases) if metric.applies(case)]
        values = metric.compute(batch, indices) if indices else None
        if values is None:
            continue
        for k, i in enumerate(indices):
            for j in range(len(areas)):
                rows[i][j][metric.name] = float(values[k, j])
    return rows
