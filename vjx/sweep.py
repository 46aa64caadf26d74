"""A dataset x areas sweep of one extremal method, sharded over every local device, resumable.

    from vjx import pipeline, sweep
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
finished videos at the end.
"""
from __future__ import annotations

import csv
import io
import json
import pathlib
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vjx import pipeline
from vjx.errors import VjxError

COLUMNS = ("video", "label", "target", "target_name", "area", "preserved_probability", "mask_area",
           "extremal_area", "base_probability_top1", "method", "model")


def batch_sharding(devices: list[jax.Device] | None = None) -> NamedSharding:
    """``NamedSharding`` splitting axis 0 (videos) over ``devices`` (default: all local devices)."""
    devices = jax.local_devices() if devices is None else devices
    return NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))


def fingerprint(request: pipeline.Request) -> dict[str, Any]:
    """What must match for a finished video to be reused by a rerun."""
    return {"model": pipeline.get_spec(request.model).name, "dataset": request.dataset,
            "method": request.method, "areas": list(request.areas), "num_iter": request.num_iter,
            "checkpoint": request.checkpoint, "seed": request.seed, "dtype": request.dtype,
            "target": request.target}


def _finished(path: pathlib.Path, expected: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rows of a finished video, None if not done; a different configuration is a VjxError."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
        stored_print, rows = stored["fingerprint"], stored["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None                    # unreadable leftovers are recomputed and replaced
    if stored_print != expected:
        raise VjxError(f"output dir {str(path.parent.parent)!r} holds results of another configuration "
                       f"({path.name}); use a new --output_dir or delete it")
    return rows


def rows_for(result: pipeline.VideoResult, names, runner: pipeline.Runner) -> list[dict[str, Any]]:
    """One row per area for one explained video (see :data:`COLUMNS`)."""
    return [{"video": result.video.name, "label": result.video.label, "target": result.target,
             "target_name": names[result.target], "area": float(area),
             "preserved_probability": float(result.extras["preserved"][a]),
             "mask_area": float(result.extras["mask_area"][a]),
             "extremal_area": float(result.extras["extremal_area"]),
             "base_probability_top1": result.top[0][1], "method": runner.method,
             "model": runner.model.spec.name}
            for a, area in enumerate(runner.config.areas)]


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """The rows as CSV (header :data:`COLUMNS`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def run(request: pipeline.Request, devices: list[jax.Device] | None = None) -> list[dict[str, Any]]:
    """Runs (or resumes) the sweep of ``request`` and writes its results; returns all rows.

    Raises:
      VjxError: bad request or input; a method that is not extremal; results of another
        configuration in the output dir.
    """
    start = time.perf_counter()
    label_set = pipeline.check_request(request)
    if request.method not in pipeline.EXTREMAL_METHODS:
        raise VjxError(f"--vis_method {request.method} has no areas to sweep; use one of "
                       f"{', '.join(pipeline.EXTREMAL_METHODS)}")
    expected = fingerprint(request)
    out = pathlib.Path(request.output_dir)
    names_by_path = {path: pipeline.safe_name(pathlib.Path(path).stem if pathlib.Path(path).is_file()
                                              else pathlib.Path(path).name) for path in request.videos}
    if len(set(names_by_path.values())) != len(names_by_path):
        raise VjxError("two videos of the dataset share a name; rename one (results are stored by name)")
    done = {path: _finished(out / "videos" / f"{name}.json", expected) for path, name in names_by_path.items()}
    todo = [path for path, rows in done.items() if rows is None]
    sharding = batch_sharding(devices)
    num_devices = sharding.mesh.size
    batch_size = -(-request.batch_size // num_devices) * num_devices
    print(f"sweep: {len(request.videos)} videos ({len(request.videos) - len(todo)} already done), "
          f"{len(request.areas)} areas, batches of {batch_size} over {num_devices} device(s)", flush=True)
    with pipeline.OutputWriter(out) as top:
        if todo:
            model = pipeline.build_model(request, label_set)
            names = pipeline.class_names(model)
            runner = pipeline.make_runner(request, model, sharding)
            top.subdir("videos")                       # removed on failure unless a batch finished
            for first in range(0, len(todo), batch_size):
                paths = todo[first:first + batch_size]
                videos = pipeline.read_videos(paths)
                padded = videos + [videos[-1]] * (batch_size - len(videos))
                desc = f"{request.method} [{first + 1}-{first + len(videos)}/{len(todo)}]"
                results, _ = pipeline.explain_batch(runner, padded, request.target, names, request.progress, desc)
                with pipeline.OutputWriter(out / "videos") as writer:
                    for path, result in zip(paths, results):
                        rows = rows_for(result, names, runner)
                        name = names_by_path[path]
                        writer.write(f"{name}.npz", pipeline.npz_bytes(
                            masks=result.maps.astype(np.float16), areas=np.asarray(request.areas, np.float32)))
                        writer.write(f"{name}.json", pipeline.json_bytes({"fingerprint": expected, "rows": rows}))
                        done[path] = rows
        all_rows = [row for path in request.videos for row in done[path]]
        top.write("results.csv", csv_bytes(all_rows))
        top.write("results.json", pipeline.json_bytes({
            "fingerprint": expected, "rows": all_rows, "devices": num_devices, "batch_size": batch_size,
            "seconds_this_run": time.perf_counter() - start, "versions": pipeline.versions(),
            "flags": dict(request.flags)}))
    return all_rows
