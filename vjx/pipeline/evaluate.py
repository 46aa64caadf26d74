"""Measuring explanations over a dataset: methods x cases x areas -> one row each, and one table.

    from vjx import pipeline
    from vjx.pipeline import evaluate
    clips = tuple(vjx.data.list_videos("kinetics/sampled_frames"))
    evaluation = evaluate.Evaluation(
        request=pipeline.Request(videos=clips, model="i3d", areas=(0.1,), output_dir="eval"),
        methods=("grad", "grad_cam", "step"), pairs=clips, annotations="truth.csv")
    result = evaluate.run(evaluation)
    result.table       # per method and area: {metric: {"mean", "std", "n"}} (vjx.pipeline.table)

The cases are the request's videos (real clips, with the ground truth of ``annotations``, format in
:mod:`vjx.pipeline.annotations`) and the joined pairs built from ``pairs`` (:mod:`vjx.pipeline.cases`).
Each method explains every case with the run's settings (areas, schedule, target rule, seed); the
maps are scored by :mod:`vjx.pipeline.scores`. Written under ``output_dir``:

- ``rows/<method>/<case>.json``: one method's rows of one case, written atomically as soon as its
  batch is done. A rerun with the same settings skips them (resumable); results of other settings
  in the folder are an error.
- ``rows.csv``, ``rows.json``: every row (method, area, case, kind, label, target, the metrics, the
  seconds of attribution and scoring per case).
- ``table.csv``, ``table.json``, ``table.md``: per method and area, each metric's mean, standard
  deviation, count and bootstrap interval over the cases (:mod:`vjx.pipeline.table`); ``table.md``
  and ``table.json`` also hold the same over the cases whose class is in the model's top 5
  (``recognised``) and the ordering of the methods per metric (Krippendorff's alpha of the cases'
  rankings, the best method's paired difference to the others); ``table.json`` also records the
  settings, the versions and any unfinished rows.

Across hosts (:mod:`vjx.pipeline.processes`) every process evaluates its share of the cases and
process 0 writes the rows and the table once all are done; ``merge_only=True`` only rebuilds them
from the finished rows. Nothing is written before every input (videos, annotation file, names) is
checked.
"""
from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import time
from typing import Any

import jax
import numpy as np

from vjx.errors import ArgumentError
from vjx.model import Model
from vjx.models.registry import ModelSpec
from vjx.pipeline import processes, report, table
from vjx.pipeline.cases import Case, clip_cases, load, pair_cases, spatial_cases
from vjx.pipeline.files import OutputWriter, csv_bytes, file_stem, json_bytes
from vjx.pipeline import methods
from vjx.pipeline.methods import any_model_names
from vjx.pipeline.progress import say
from vjx.pipeline.request import Request, Resolved, load_model, resolve
from vjx.pipeline.resume import finished_rows, rows_bytes
from vjx.pipeline.scores import score_batch
from vjx.pipeline.session import Session
from vjx.pipeline.targets import class_names


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What to evaluate.

    Attributes:
      request: the model, weights, ``areas`` (each map is scored at each; extremal methods optimise
        them), ``schedule``/``num_iter`` (default: ``vjx.attribution.extremal.DEFAULT_SCHEDULE`` and
        its iterations), the ``target`` rule for real clips, ``seed``, ``dtype``,
        ``batch_size``, ``output_dir``, ``progress`` and ``flags``; its ``videos`` are the real
        clips (may be empty when ``pairs`` is given); its ``method`` is not used.
      methods: method names or aliases (:mod:`vjx.attribution.registry`), in the table's order; rows
        and the table use the canonical names (default: every method a plain model can use, i.e. not
        the prototype, attention or excitation backprop methods, which apply to one kind of model).
      pairs: labelled clips whose joined pairs make the temporal test (empty: none).
      spatial_pairs: labelled clips whose side-by-side pairs make the spatial test (empty: none).
      spatial_gap: columns of the model's mean colour between a spatial pair's clips (0: none).
      annotations: the ground-truth CSV of the real clips, or None.
      curve_steps: steps of the deletion and insertion curves (0: skip them).
      tolerance: the spatial pointing game's radius in input pixels (the paper: 7).
    """

    request: Request
    methods: tuple[str, ...] = any_model_names()
    pairs: tuple[str, ...] = ()
    spatial_pairs: tuple[str, ...] = ()
    spatial_gap: int = 0
    annotations: str | None = None
    curve_steps: int = 20
    tolerance: float = 7.0


@dataclasses.dataclass(frozen=True)
class Result:
    """What an evaluation produced.

    Attributes:
      rows: every finished row (one per method x case x area).
      table: :func:`vjx.pipeline.table.summarise` of the rows.
      missing: ``"<method>/<case>"`` of the rows not finished (another process failed, or a
        ``merge_only`` run before the end).
    """

    rows: list[dict[str, Any]]
    table: list[dict[str, Any]]
    missing: list[str]


def run(evaluation: Evaluation, model: Model | None = None, *, merge_only: bool = False) -> Result:
    """Runs (or resumes) an evaluation and writes its rows and table (see the module docstring).

    Args:
      evaluation: what to evaluate.
      model: a model already loaded, used instead of the request's model and weights.
      merge_only: compute nothing; rebuild the rows and the table from the finished rows.
    Raises:
      VjxError: a bad request, video, annotation file or pair set (before anything is written);
        results of other settings in the output dir.
    """
    start = time.perf_counter()
    resolved = _resolve_all(evaluation, model)
    evaluation = dataclasses.replace(evaluation, methods=tuple(resolved))      # canonical names: rows say these
    spec = resolved[evaluation.methods[0]].spec                     # at the request's input_size
    request = evaluation.request
    cases = clip_cases(request.videos, spec, evaluation.annotations)
    if evaluation.pairs:
        cases += pair_cases(evaluation.pairs, spec, class_names(spec))
    if evaluation.spatial_pairs:
        cases += spatial_cases(evaluation.spatial_pairs, spec, class_names(spec), evaluation.spatial_gap)
    digest = _file_digest(evaluation.annotations)
    prints = {m: fingerprint(evaluation, r, spec, digest) for m, r in resolved.items()}
    out = pathlib.Path(request.output_dir)

    def rows_file(method: str, case: Case) -> pathlib.Path:
        return out / "rows" / file_stem(method) / f"{file_stem(case.name)}.json"

    mine = processes.share(cases)
    unfinished = {m: [c for c in mine if finished_rows(rows_file(m, c), prints[m], out) is None]
                  for m in evaluation.methods}
    todo = {m: [] if merge_only else cases_left for m, cases_left in unfinished.items()}
    count, left = sum(map(len, todo.values())), sum(map(len, unfinished.values()))
    who = f"process {jax.process_index()} of {processes.count()}: " if processes.count() > 1 else ""
    for line in report.run_lines(resolved[evaluation.methods[0]])[:2]:     # the model, its weights, the input size
        say(line, request.progress)
    print(f"evaluate: {who}{len(mine)} cases ({sum(c.kind == 'pair' for c in mine)} joined pairs, "
          f"{sum(c.kind == 'spatial' for c in mine)} spatial pairs) x "
          f"{len(evaluation.methods)} methods x {len(request.areas)} areas; {count} method x case runs to do, "
          f"{len(mine) * len(evaluation.methods) - left} already done", flush=True)
    with OutputWriter(out) as top:
        if count:
            _compute(evaluation, resolved, spec, todo, prints, rows_file, model, top)
        processes.wait_for_all("vjx evaluate: every share written")
        rows, missing = [], []
        for m in evaluation.methods:
            for case in cases:
                found = finished_rows(rows_file(m, case), prints[m], out)
                rows += found or []
                if found is None:
                    missing.append(f"{m}/{case.name}")
        summary = table.summarise(rows)
        if processes.is_coordinator():
            if missing:
                print(f"evaluate: {len(missing)} of {len(cases) * len(evaluation.methods)} method x case runs are "
                      f"not finished (e.g. {missing[0]}); the table holds the others", flush=True)
            columns = list(dict.fromkeys([*table.IDENTITY, *(k for row in rows for k in row)]))
            top.write("rows.csv", csv_bytes(rows, columns))
            top.write("rows.json", json_bytes({"rows": rows}))
            top.write("table.csv", table.table_csv(summary))
            top.write("table.md", table.report_markdown(rows).encode())
            recognised = table.recognised(rows)
            top.write("table.json", json_bytes({
                "table": summary, "recognised": table.summarise(recognised), "ordering": table.ordering(rows),
                "recognised_ordering": table.ordering(recognised), "methods": list(evaluation.methods),
                "areas": list(request.areas),
                "cases": {name: sum(c.kind == kind for c in cases)
                          for name, kind in (("clips", "clip"), ("pairs", "pair"), ("spatial_pairs", "spatial"))},
                "settings": prints, "missing": missing, "processes": processes.count(),
                "seconds_this_run": time.perf_counter() - start, "versions": report.versions(),
                "flags": dict(request.flags)}))
    return Result(rows=rows, table=summary, missing=missing)


def fingerprint(evaluation: Evaluation, resolved: Resolved, spec: ModelSpec,
                annotations_digest: str | None) -> dict[str, Any]:
    """What must match for a method's finished rows to be reused by a rerun (``spec``: the one run)."""
    request = resolved.request
    settings = {"model": spec.name, "input_size": spec.crop, "dataset": request.dataset,
                "checkpoint": request.checkpoint, "weights": resolved.weights.source, "method": request.method,
                "areas": list(request.areas), "polarity": request.polarity, "seed": request.seed, "dtype": request.dtype, "target": request.target,
                "curve_steps": evaluation.curve_steps, "tolerance": evaluation.tolerance,
                "spatial_gap": evaluation.spatial_gap,
                "annotations_sha256": annotations_digest}
    if resolved.method.extremal:
        settings.update(schedule=request.schedule, num_iter=resolved.config.num_iter)   # the schedule's if not given
    return settings


def _resolve_all(evaluation: Evaluation, model: Model | None) -> dict[str, Resolved]:
    """Checks the evaluation's own settings and resolves the request once per method."""
    request = evaluation.request
    if not evaluation.methods:
        raise ArgumentError("methods", "is empty; give at least one method")
    canonical = [methods.get(m).name for m in evaluation.methods]
    twice = sorted({m for m in canonical if canonical.count(m) > 1})
    if twice:
        raise ArgumentError("methods", f"names {twice[0]!r} twice (a name and its alias count as one)")
    if not request.videos and not evaluation.pairs and not evaluation.spatial_pairs:
        raise ArgumentError("videos", "is empty and there are no pairs; give clips, pairs or both")
    if not isinstance(evaluation.curve_steps, int) or evaluation.curve_steps < 0:
        raise ArgumentError("curve_steps", f"must be a whole number >= 0 (0 skips the curves), got "
                            f"{evaluation.curve_steps!r}")
    if not isinstance(evaluation.spatial_gap, int) or evaluation.spatial_gap < 0:
        raise ArgumentError("spatial_gap", f"must be a whole number of pixels >= 0, got {evaluation.spatial_gap!r}")
    if not evaluation.tolerance >= 0:
        raise ArgumentError("tolerance", f"must be a distance in pixels >= 0, got {evaluation.tolerance!r}")
    checked = dataclasses.replace(request, videos=request.videos or evaluation.pairs or evaluation.spatial_pairs)
    return {name: resolve(dataclasses.replace(checked, method=name), model) for name in canonical}


def _file_digest(path: str | None) -> str | None:
    """SHA-256 of a file's bytes (None for no file): a changed annotation file invalidates old rows."""
    return None if path is None else hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _compute(evaluation: Evaluation, resolved: dict[str, Resolved], spec: ModelSpec, todo: dict[str, list[Case]],
             prints: dict[str, dict[str, Any]], rows_file, model: Model | None, top: OutputWriter) -> None:
    """Explains and scores this process's unfinished cases, method by method, writing each case's rows."""
    from tqdm import tqdm

    request = evaluation.request
    loaded = model if model is not None else load_model(next(iter(resolved.values())))
    top.subdir("rows")                                    # removed on failure unless a batch finished
    with tqdm(total=sum(map(len, todo.values())), desc="evaluate", unit="run", disable=not request.progress,
              position=0) as bar:
        for name, cases in todo.items():
            if not cases:
                continue
            session = Session.open(_scoring(resolve(resolved[name].request, loaded)))
            for first in range(0, len(cases), request.batch_size):
                batch = cases[first:first + request.batch_size]
                videos, inputs = zip(*(load(case, spec) for case in batch))
                x = np.stack(inputs)
                results, timings = session.explain_batch(
                    list(videos), f"{name} [{first + 1}-{first + len(batch)}/{len(cases)}]", inputs=x,
                    targets=[case.target for case in batch])
                scoring_start = time.perf_counter()
                targets = np.array([r.target for r in results], np.int32)
                scores = score_batch(session.runner.call, session.runner.variables, x, targets, batch,
                                     [r.explanation for r in results], request.areas,
                                     extremal=session.resolved.method.extremal,
                                     curve_steps=evaluation.curve_steps, tolerance=evaluation.tolerance)
                seconds = {"attribution_s": timings["attribution"] / len(batch),
                           "scoring_s": (time.perf_counter() - scoring_start) / len(batch)}
                for case, result, case_scores in zip(batch, results, scores):
                    rows = _rows(name, case, result, case_scores, request.areas, seconds)
                    path = rows_file(name, case)
                    with OutputWriter(path.parent) as writer:
                        writer.write(path.name, rows_bytes(prints[name], rows))
                bar.update(len(batch))


def _scoring(resolved: Resolved) -> Resolved:
    """The request with maps that keep their ranking: no display clipping (see :mod:`vjx.pipeline.scores`)."""
    return dataclasses.replace(resolved, config=resolved.method.scoring_config(resolved.config))


def _rows(method: str, case: Case, result, scores: list[dict[str, float]], areas, seconds) -> list[dict[str, Any]]:
    """One row per area of one method on one case: who, the metrics, the method's own numbers, timings."""
    who = {"case": case.name, "kind": case.kind, "label": case.label, "target": result.target,
           "target_name": result.target_name}
    explanation = result.explanation
    own = [{k: v for k, v in row.items() if k != "area"} for row in explanation.areas] or [{}] * len(areas)
    return [{"method": method, "area": float(a), **who, **scores[j], **own[j], **explanation.numbers, **seconds}
            for j, a in enumerate(areas)]
