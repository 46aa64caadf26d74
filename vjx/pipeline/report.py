"""What an explained video becomes on disk: its figure, animations, raw maps and summary entry.

Per video: a PNG figure (the frames, an overlay row per map row, a title with the label, the top
predictions and the method's caption), one GIF per map row (original | overlay) and an ``.npz`` of
the raw maps with metadata; per run the ``summary.json`` dict of :func:`run_summary`.
"""
from __future__ import annotations

import dataclasses
import json
import platform
from typing import TYPE_CHECKING, Any, Sequence

import jax
import numpy as np

from vjx import visualize
from vjx.pipeline.files import OutputWriter, file_stem, jsonable, npz_bytes
from vjx.pipeline.request import Resolved

if TYPE_CHECKING:
    from vjx.pipeline.session import VideoResult

# Names of per-area numbers in the .npz where they differ from the summary's (kept for readers of
# files written by earlier versions).
NPZ_NAMES = {"area": "areas", "preserved_probability": "preserved"}


def figure_title(result: VideoResult, resolved: Resolved) -> str:
    """Video, label, target, top predictions and (extremal methods) the per-area caption."""
    video = result.video
    label = video.label if video.label and video.label != video.name else "-"
    top = ", ".join(f"{n} {p:.2f}" for n, p in result.top)
    lines = [f"{video.name}   label: {label}   target: {result.target_name} ({result.target_source})",
             f"top-{len(result.top)}: {top}", resolved.method.caption(result.explanation)]
    return "\n".join(line for line in lines if line)


def write_video_files(writer: OutputWriter, result: VideoResult, resolved: Resolved, fps: float) -> list[str]:
    """PNG figure, one GIF per map row and the ``.npz`` of one video; returns the file names written."""
    explanation = result.explanation
    base = file_stem(result.video.name)
    rows = list(zip(explanation.row_names, explanation.maps))
    written = [writer.write(f"{base}.png", visualize.figure_png(
        result.frames, rows, title=figure_title(result, resolved))).name]
    for name, maps in rows:
        suffix = "" if len(rows) == 1 else "_" + name.replace(" ", "")
        written.append(writer.write(f"{base}{suffix}.gif", visualize.gif_bytes(result.frames, maps, fps=fps)).name)
    meta = {"video": result.video.name, "path": result.video.path, "method": resolved.method.name,
            "model": resolved.spec.name, "target": result.target, "target_name": result.target_name,
            "rows": list(explanation.row_names)}
    maps = explanation.maps
    arrays = {"maps": maps.astype(np.float16 if maps.size > 4_000_000 else np.float32),
              "frames": result.frames, "meta": np.array(json.dumps(meta))}
    for key in dict.fromkeys(k for row in explanation.areas for k in row):
        arrays[NPZ_NAMES.get(key, key)] = np.array([row[key] for row in explanation.areas], np.float64)
    arrays.update({key: np.float64(value) for key, value in explanation.numbers.items()})
    written.append(writer.write(f"{base}.npz", npz_bytes(**arrays)).name)
    return written


def summary_entry(result: VideoResult) -> dict[str, Any]:
    """The ``summary.json`` entry of one video: who, which target, top predictions, the method's numbers."""
    entry = {"video": result.video.name, "path": result.video.path, "label": result.video.label,
             "target": result.target, "target_name": result.target_name, "target_source": result.target_source,
             "predictions": [{"class": n, "probability": p} for n, p in result.top]}
    if result.explanation.areas:
        entry["areas"] = [dict(row) for row in result.explanation.areas]
    entry.update(result.explanation.numbers)
    return entry


def run_summary(resolved: Resolved, entries: Sequence[dict[str, Any]], timings: dict[str, float]) -> dict[str, Any]:
    """The ``summary.json`` of a run: what ran (method, model, weights, config), its videos, timings, versions."""
    request = resolved.request
    return {"method": resolved.method.name, "model": resolved.spec.name, "label_set": resolved.spec.label_set,
            "input_size": resolved.spec.crop, "weights": resolved.weights.describe(resolved.spec.label_set),
            "config": jsonable(dataclasses.asdict(resolved.config)), "dtype": request.dtype, "seed": request.seed,
            "videos": list(entries), "timings_s": timings, "versions": versions(), "flags": dict(request.flags)}


def versions() -> dict[str, Any]:
    """Versions of vjx and its numeric stack, the Python and the devices, for the summary."""
    import flax

    import vjx
    return {"vjx": vjx.__version__, "jax": jax.__version__, "flax": flax.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "devices": [str(d) for d in jax.devices()]}
