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
finished videos at the end. A video's ``<name>`` is :func:`vjx.data.video_name` made file-safe, the
same name its results carry.
"""
from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vjx import data
from vjx.errors import ArgumentError
from vjx.model import Model
from vjx.pipeline import methods, report
from vjx.pipeline.files import OutputWriter, csv_bytes, file_stem, json_bytes, npz_bytes
from vjx.pipeline.inputs import read_videos
from vjx.pipeline.request import Request, Resolved, resolve
from vjx.pipeline.session import Session, VideoResult


def batch_sharding(devices: list[jax.Device] | None = None) -> NamedSharding:
    """``NamedSharding`` splitting axis 0 (videos) over ``devices`` (default: all local devices)."""
    devices = jax.local_devices() if devices is None else devices
    return NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))


def fingerprint(resolved: Resolved) -> dict[str, Any]:
    """What must match for a finished video to be reused by a rerun."""
    request = resolved.request
    return {"model": resolved.spec.name, "dataset": request.dataset, "method": request.method,
            "areas": list(request.areas), "schedule": request.schedule, "num_iter": request.num_iter,
            "input_size": request.input_size, "checkpoint": request.checkpoint, "seed": request.seed, "dtype": request.dtype, "target": request.target}


def _finished(path: pathlib.Path, expected: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rows of a finished video, None if not done; a different configuration is an ArgumentError."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
        stored_print, rows = stored["fingerprint"], stored["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None                    # unreadable leftovers are recomputed and replaced
    if stored_print != expected:
        raise ArgumentError("output_dir", f"{str(path.parent.parent)!r} holds results of another configuration "
                            f"({path.name}); choose a new one or delete it")
    return rows


def rows_for(result: VideoResult, resolved: Resolved) -> list[dict[str, Any]]:
    """One row per area of one explained video: who, the target, the area's numbers, the video's."""
    who = {"video": result.video.name, "label": result.video.label, "target": result.target,
           "target_name": result.target_name}
    what = {"base_probability_top1": result.top[0][1], "method": resolved.method.name, "model": resolved.spec.name}
    return [{**who, **area, **result.explanation.numbers, **what} for area in result.explanation.areas]


def run(request: Request, devices: list[jax.Device] | None = None, model: Model | None = None) -> list[dict[str, Any]]:
    """Runs (or resumes) the sweep of ``request`` and writes its results; returns all rows.

    Args:
      request: the sweep (``batch_size`` is rounded up to a multiple of the device count).
      devices: the devices to shard the batch over (default: all local devices).
      model: a model already loaded, used instead of the request's model and weights.
    Raises:
      VjxError: bad request or input; a method that is not extremal; results of another
        configuration in the output dir.
    """
    start = time.perf_counter()
    resolved = resolve(request, model)
    if not resolved.method.extremal:
        raise ArgumentError("method", f"{request.method!r} has no areas to sweep; use one of "
                            f"{', '.join(methods.extremal_names())}")
    expected = fingerprint(resolved)
    out = pathlib.Path(request.output_dir)
    stems = {path: file_stem(data.video_name(path)) for path in request.videos}
    if len(set(stems.values())) != len(stems):
        raise ArgumentError("videos", "holds two videos with the same name; rename one (results are stored by name)")
    done = {path: _finished(out / "videos" / f"{stem}.json", expected) for path, stem in stems.items()}
    todo = [path for path, rows in done.items() if rows is None]
    sharding = batch_sharding(devices)
    num_devices = sharding.mesh.size
    batch_size = -(-request.batch_size // num_devices) * num_devices
    print(f"sweep: {len(request.videos)} videos ({len(request.videos) - len(todo)} already done), "
          f"{len(request.areas)} areas, batches of {batch_size} over {num_devices} device(s)", flush=True)
    with OutputWriter(out) as top:
        if todo:
            session = Session.open(resolved, sharding)
            top.subdir("videos")                       # removed on failure unless a batch finished
            for first in range(0, len(todo), batch_size):
                paths = todo[first:first + batch_size]
                videos = read_videos(paths)
                padded = videos + [videos[-1]] * (batch_size - len(videos))
                desc = f"{request.method} [{first + 1}-{first + len(videos)}/{len(todo)}]"
                results, _ = session.explain_batch(padded, desc)
                with OutputWriter(out / "videos") as writer:
                    for path, result in zip(paths, results):
                        rows = rows_for(result, resolved)
                        writer.write(f"{stems[path]}.npz", npz_bytes(
                            masks=result.explanation.maps.astype(np.float16),
                            areas=np.asarray(request.areas, np.float32)))
                        writer.write(f"{stems[path]}.json", json_bytes({"fingerprint": expected, "rows": rows}))
                        done[path] = rows
        all_rows = [row for path in request.videos for row in done[path]]
        top.write("results.csv", csv_bytes(all_rows, list(dict.fromkeys(k for row in all_rows for k in row))))
        top.write("results.json", json_bytes({
            "fingerprint": expected, "rows": all_rows, "devices": num_devices, "batch_size": batch_size,
            "seconds_this_run": time.perf_counter() - start, "versions": report.versions(),
            "flags": dict(request.flags)}))
    return all_rows
