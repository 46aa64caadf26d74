"""The scores of one batch of explanations: every metric of :mod:`vjx.metrics` the cases allow.

    rows = score_batch(call, variables, x, targets, cases, explanations, areas, extremal=False)
    rows[i][j]      # case i, area j: {"deletion_auc": ..., "insertion_auc": ..., ...}

A method's map of a case is scored once per area: an extremal method's mask of that area, any other
method's one map at every area. Which metrics a case gets depends on what it is:

- ``spatial_pointing`` (cases with boxes): the fraction of annotated input frames whose map maximum
  lies within ``tolerance`` pixels of a box (:func:`vjx.metrics.spatial_pointing_game`).
- ``temporal_pointing`` (cases with a segment, every joined pair): 1 if the frame of largest total
  map falls inside the segment, else 0 (:func:`vjx.metrics.temporal_pointing_game`).
- real clips only: ``deletion_auc`` (low = good) and ``insertion_auc`` (high = good) over
  ``curve_steps`` steps with the blur baseline; ``target_probability`` (the unperturbed clip's).
- every case, methods that are not extremal: ``hard_preserved_probability``, the target
  probability when only the map's top ``a`` fraction of voxels is kept (hard mask,
  :func:`vjx.metrics.hard_masks`) and the rest blurred as extremal perturbation blurs it. Extremal
  methods already report this column for their own masks (:class:`vjx.pipeline.methods.Explanation`,
  the same hard-mask rule, on the padded mask and per frame for 2D-EP); it is not computed twice.

Maps must keep their ranking: a display clip (the gradient methods' percentile normalisation)
would tie the top voxels and move every maximum to the first of them. The evaluation therefore
asks the methods for unclipped maps.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vjx import metrics
from vjx.pipeline.cases import Case
from vjx.pipeline.methods import Explanation


def score_batch(call, variables, x: np.ndarray, targets: np.ndarray, cases: Sequence[Case],
                explanations: Sequence[Explanation], areas: Sequence[float], *, extremal: bool,
                curve_steps: int = 20, tolerance: float = 7.0) -> list[list[dict[str, float]]]:
    """Scores of a batch, per case and area.

    Args:
      call: ``apply_fn(variables, video) -> logits`` of the explained model; ``variables`` its weights.
      x: float32 ``B x T x S x S x 3``: the cases' model inputs.
      targets: int ``B``: the explained classes.
      cases: the ``B`` cases (their kind and ground truth decide which metrics apply).
      explanations: the ``B`` explanations: maps ``R x T x S x S`` (``R`` = one per area for an
        extremal method, else 1).
      areas: the ``A`` areas.
      extremal: whether map row ``j`` belongs to area ``j`` (else row 0 serves every area).
      curve_steps: steps of the deletion and insertion curves; 0 skips them.
      tolerance: the spatial pointing game's radius in input pixels.
    Returns:
      ``B`` lists of ``A`` dicts metric name -> value (only the metrics that apply).
    """
    maps = np.stack([e.maps for e in explanations]).astype(np.float32)        # B x R x T x S x S
    row_of_area = list(range(len(areas))) if extremal else [0] * len(areas)
    rows: list[list[dict[str, float]]] = [[{} for _ in areas] for _ in cases]

    def put(index: int, name: str, by_row: np.ndarray) -> None:
        for j, r in enumerate(row_of_area):
            rows[index][j][name] = float(by_row[r])

    clips = [i for i, case in enumerate(cases) if case.kind == "clip"]
    if clips:
        xs, ts = x[clips], targets[clips]
        if curve_steps:
            deletion = metrics.deletion_curve(call, xs, ts, maps[clips], variables=variables, steps=curve_steps)
            insertion = metrics.insertion_curve(call, xs, ts, maps[clips], variables=variables, steps=curve_steps)
            for k, i in enumerate(clips):
                put(i, "deletion_auc", np.asarray(deletion.auc[k]))
                put(i, "insertion_auc", np.asarray(insertion.auc[k]))
                put(i, "target_probability", np.asarray(deletion.probabilities[k, :, 0]))

    if not extremal:                          # extremal methods report their own masks' (see the docstring)
        hard = metrics.hard_masks(maps[:, row_of_area], np.asarray(areas, np.float32))  # B x A x T x S x S
        kept = np.asarray(metrics.preserved_probability(call, x, targets, hard, variables=variables))   # B x A
        for i in range(len(cases)):
            for j in range(len(areas)):
                rows[i][j]["hard_preserved_probability"] = float(kept[i, j])

    boxed = [i for i, case in enumerate(cases) if case.truth is not None and case.truth.annotated.any()]
    if boxed:
        k_max = max(cases[i].truth.boxes.shape[1] for i in boxed)
        boxes = np.stack([_pad(cases[i].truth.boxes, k_max) for i in boxed])          # B'' x T x K x 4
        annotated = np.stack([_pad(cases[i].truth.annotated, k_max) for i in boxed])  # B'' x T x K
        game = metrics.spatial_pointing_game(maps[boxed], boxes, annotated, tolerance=tolerance)
        hits, counted = np.asarray(game.hits), np.asarray(game.counted)              # B'' x R x T
        rates = (hits & counted).sum(-1) / counted.sum(-1)
        for k, i in enumerate(boxed):
            put(i, "spatial_pointing", rates[k])

    timed = [i for i, case in enumerate(cases) if case.truth is not None and case.truth.segment is not None]
    if timed:
        segments = np.array([cases[i].truth.segment for i in timed], np.int64)
        game = metrics.temporal_pointing_game(maps[timed], segments)
        hits = np.asarray(game.hits)                                                   # B''' x R
        for k, i in enumerate(timed):
            put(i, "temporal_pointing", hits[k].astype(np.float64))
    return rows


def _pad(values: np.ndarray, k: int) -> np.ndarray:
    """``T x K' [x 4]`` -> ``T x k [x 4]`` with zeros (False) after the first ``K'``."""
    pad = [(0, 0), (0, k - values.shape[1])] + [(0, 0)] * (values.ndim - 2)
    return np.pad(values, pad)

