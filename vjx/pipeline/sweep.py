"""A dataset x areas sweep of one extremal method, sharded over every local device, resumable.

    from vjx import pipeline
    from vjx.pipeline import sweep
    request = pipeline.Request(videos=tuple(vjx.data.list_videos("frames/")), model="r2plus1d",
                               method="step", areas=(0.05, 0.1), num_iter=2000, output_dir="sweep_out")
    rows = sweep.run(request)      # one row per video x area; also sweep_out/results.{csv,json}

Videos go through the model in batches whose size is a multiple of the local device count; each
batch is one compiled call over all areas, with the model's input constrained to a
``NamedSharding`` over the batch axis (``Mesh(local devices, ("batch",))``), so XLA runs each
device's share of the videos there. A short last batch is padded with copies of its last video.

Each finished video's rows (``videos/<name>.json``) and masks (``videos/<name>.npz``) are written
atomically as soon as its batch is done; a rerun with the same configuration skips those videos,
and a failed batch removes only its own files. ``results.csv``/``results.json`` are rebuilt from the
finished videos at the end (``merge_only=True`` only rebuilds them). A video's ``<name>`` is
:func:`vjx.data.video_name` made file-safe, the same name its results carry.

Across hosts (:mod:`vjx.pipeline.processes`, ``jax.distributed``), process ``i`` of ``n`` sweeps
every ``n``-th video from the ``i``-th on and writes its files into the shared output directory;
after a barrier, process 0 writes the results of all of them.
"""
from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vjx import data
from vjx.errors import ArgumentError
from vjx.model import Model
from vjx.attribution import registry
from vjx.pipeline import processes, report
from vjx.pipeline.files import OutputWriter, csv_bytes, file_stem, json_bytes, npz_bytes
from vjx.pipeline.inputs import read_videos
from vjx.pipeline.progress import say
from vjx.pipeline.request import Request, Resolved, resolve
from vjx.pipeline.resume import finished_rows, rows_bytes
from vjx.pipeline.session import Session, VideoResult


def batch_sharding(devices: list[jax.Device] | None = None) -> NamedSharding:
    """``NamedSharding`` splitting axis 0 (videos) over ``devices`` (default: all local devices)."""
    devices = jax.local_devices() if devices is None else devices
    return NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))


def fingerprint(resolved: Resolved) -> dict[str, Any]:
    """What must match for a finished video to be reused by a rerun."""
    request = resolved.request
    return {"model": resolved.spec.name, "dataset": request.dataset, "method": resolved.method.name,
            "areas": list(request.areas), "schedule": request.schedule, "num_iter": resolved.config.num_iter,
            "input_size": request.input_size, "checkpoint": request.checkpoint, "weights": resolved.weights.source,
            "seed": request.seed,
            "dtype": request.dtype, "target": request.target}


def rows_for(result: VideoResult, resolved: Resolved) -> list[dict[str, Any]]:
    """One row per area of one explained video: who, the target, the area's numbers, the video's."""
    who = {"video": result.video.name, "label": result.video.label, "target": result.target,
           "target_name": result.target_name}
    what = {"base_probability_top1": result.top[0][1], "method": resolved.method.name, "model": resolved.spec.name}
    return [{**who, **area, **result.explanation.numbers, **what} for area in result.explanation.areas]


def run(request: Request, devices: list[jax.Device] | None = None, model: Model | None = None, *,
        merge_only: bool = False) -> list[dict[str, Any]]:
    """Runs (or resumes) the sweep of ``request`` and writes its results; returns all finished rows.

    Under ``jax.distributed`` (:mod:`vjx.pipeline.processes`) every process sweeps its share of the
    videos and writes their files; once all are done, process 0 writes ``results.csv``/``.json``.

    Args:
      request: the sweep (``batch_size`` is rounded up to a multiple of the device count).
      devices: the devices to shard the batch over (default: all local devices).
      model: a model already loaded, used instead of the request's model and weights.
      merge_only: compute nothing: rebuild the results from the videos finished so far.
    Raises:
      VjxError: bad request or input; a method that is not extremal; results of another
        configuration in the output dir.
    """
    start = time.perf_counter()
    resolved = resolve(request, model)
    if not resolved.method.extremal:
        raise ArgumentError("method", f"{request.method!r} has no areas to sweep; use one of "
                            f"{registry.describe(registry.MASKS)}")
    expected = fingerprint(resolved)
    out = pathlib.Path(request.output_dir)
    stems = {path: file_stem(data.video_name(path)) for path in request.videos}
    if len(set(stems.values())) != len(stems):
        raise ArgumentError("videos", "holds two videos with the same name; rename one (results are stored by name)")

    def finished(path: str) -> list[dict[str, Any]] | None:
        return finished_rows(out / "videos" / f"{stems[path]}.json", expected, out)

    mine = processes.share(request.videos)
    unfinished = [path for path in mine if finished(path) is None]
    todo = [] if merge_only else unfinished
    sharding = batch_sharding(devices)
    num_devices = sharding.mesh.size
    batch_size = -(-request.batch_size // num_devices) * num_devices
    who = f"process {jax.process_index()} of {processes.count()}: " if processes.count() > 1 else ""
    for line in report.run_lines(resolved):
        say(line, request.progress)
    print(f"sweep: {who}{len(mine)} videos ({len(mine) - len(unfinished)} already done), {len(request.areas)} areas, "
          f"batches of {batch_size} over {num_devices} device(s)", flush=True)
    with OutputWriter(out) as top:
        if todo:
            session = Session.open(resolved, sharding)
            top.subdir("videos")                       # removed on failure unless a batch finished
            for first in range(0, len(todo), batch_size):
                paths = todo[first:first + batch_size]
                videos = read_videos(paths)
                padded = videos + [videos[-1]] * (batch_size - len(videos))
                desc = f"{request.method} [{first + 1}-{first + len(videos)}/{len(todo)}]"
                results, _ = session.explain_batch(padded, desc, announce=True)
                for result in results[:len(videos)]:
                    for line in report.result_lines(result, resolved):
                        say(line, request.progress)
                with OutputWriter(out / "videos") as writer:
                    for path, result in zip(paths, results):
                        rows = rows_for(result, resolved)
                        writer.write(f"{stems[path]}.npz", npz_bytes(
                            masks=result.explanation.maps.astype(np.float16),
                            areas=np.asarray(request.areas, np.float32)))
                        writer.write(f"{stems[path]}.json", rows_bytes(expected, rows))
        processes.wait_for_all("vjx sweep: every share written")
        done = {path: finished(path) for path in request.videos}
        missing = [data.video_name(path) for path, rows in done.items() if rows is None]
        all_rows = [row for rows in done.values() if rows is not None for row in rows]
        if processes.is_coordinator():
            if missing:
                print(f"sweep: {len(missing)} of {len(done)} videos not finished (e.g. {missing[0]}); the results "
                      "hold the others", flush=True)
            top.write("results.csv", csv_bytes(all_rows, list(dict.fromkeys(k for row in all_rows for k in row))))
            top.write("results.json", json_bytes({
                "fingerprint": expected, "rows": all_rows, "missing": missing, "processes": processes.count(),
                "devices": num_devices, "batch_size": batch_size, "seconds_this_run": time.perf_counter() - start,
                "versions": report.versions(), "flags": dict(request.flags)}))
    return all_rows
