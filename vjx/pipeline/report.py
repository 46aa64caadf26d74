"""What an explained video becomes on disk: its figure, animations, raw maps and summary entry.

Per video: a PNG figure (the frames, an overlay row per map row, the per-frame importance curves, a
title with the explained class, its probability, the top predictions and what each mask keeps), one
GIF and one MP4 per map row (original | overlay at the model's input size, frame index and class on
each frame) and an ``.npz`` of the raw maps with metadata; per run the ``summary.json`` dict of
:func:`run_summary`. :func:`run_lines` and :func:`result_lines` are the console's words for the same.
"""
from __future__ import annotations

import dataclasses
import json
import platform
from typing import TYPE_CHECKING, Any, Sequence

import jax
import numpy as np

from vjx import visualize
from vjx.models.registry import get_spec
from vjx.pipeline.files import OutputWriter, file_stem, jsonable, npz_bytes
from vjx.pipeline.methods import LOST_FRACTION, area_sentence, extremal_sentence
from vjx.pipeline.request import Resolved
from vjx.pipeline.targets import TARGET_WORDS

if TYPE_CHECKING:
    from vjx.pipeline.session import VideoResult

# Names of per-area numbers in the .npz where they differ from the summary's (kept for readers of
# files written by earlier versions).
NPZ_NAMES = {"area": "areas", "preserved_probability": "preserved"}
# Playback speed of the animations when the video does not say its frame rate (frame folders).
DEFAULT_FPS = 4.0


def run_lines(resolved: Resolved) -> list[str]:
    """The console's lines before a run: model and weights, input size, videos, method, output folder."""
    request, spec, method = resolved.request, resolved.spec, resolved.method
    own = None if resolved.weights.source == "given" else get_spec(request.model).crop
    size = f"{spec.num_frames} frames of {spec.crop} x {spec.crop} px"
    if own is not None:
        size += " (the model's own size)" if own == spec.crop else f" (input_size; the model's own is {own} px)"
    videos = request.videos
    what = method.title
    if method.extremal:
        config = resolved.config
        what += (f", areas {', '.join(f'{a:g}' for a in config.areas)}, {config.schedule} schedule, "
                 f"{config.num_iter} iterations")
    return [f"Model: {spec.name} ({spec.label_set}, {spec.num_classes} classes) with "
            f"{resolved.weights.sentence(spec, request.seed)}",
            f"Input: {size}",
            f"Videos: {len(videos)} ({videos[0]}{', ...' if len(videos) > 1 else ''})",
            f"Method: {what}",
            f"Output: {request.output_dir}"]


def result_lines(result: VideoResult, resolved: Resolved) -> list[str]:
    """The console's lines after a video: per area what its hard mask keeps against the clip, and
    Eq. 3's verdict (extremal methods); a note when maps are shared by several frames."""
    lines = [f"{result.video.name}: {result.target_name!r}, p = {result.probability:.3f} on the whole clip"]
    for row in result.explanation.areas:
        lines.append("  " + area_sentence(row, result.probability))
    if resolved.method.extremal:
        lines.append("  " + extremal_sentence(result.explanation))
    note = shared_note(result, resolved)
    return lines + (["  " + note] if note else [])


def shared_note(result: VideoResult, resolved: Resolved) -> str:
    """Says so when each map is shared by several consecutive frames (Grad-CAM's coarse time axis)."""
    maps = result.explanation.maps
    shared = visualize.shared_frames(maps[0])
    if shared == 1:
        return ""
    steps = len(maps[0]) // shared
    where = f"layer {resolved.config.layer}" if hasattr(resolved.config, "layer") else "the method"
    return (f"Note: {resolved.method.title}'s {where} has {steps} time steps for {len(maps[0])} frames, so each "
            f"map is shared by {shared} consecutive frames (not a bug).")


def figure_title(result: VideoResult, resolved: Resolved) -> str:
    """Method and video; the explained class, where it came from and its probability; the top
    predictions; (extremal methods) what each area's top-a mask keeps and Eq. 3's verdict."""
    video = result.video
    top = ", ".join(f"{n} {p:.2f}" for n, p in result.top)
    label = (f"   class in the file name: {video.label}"
             if video.label and video.label != video.name and video.label != result.target_name else "")
    lines = [f"{resolved.method.title} of {resolved.spec.name} on {video.name}",
             f"explaining {result.target_name!r} ({TARGET_WORDS[result.target_source]}): p = {result.probability:.2f}"
             f"   top-{len(result.top)}: {top}{label}",
             resolved.method.caption(result.explanation, result.probability)]
    return "\n".join(line for line in lines if line)


def animation_fps(result: VideoResult) -> float:
    """Frames per second that give the animation the clip's duration (:data:`DEFAULT_FPS` if unknown)."""
    video = result.video
    if not video.fps or len(video.frames) == 0:
        return DEFAULT_FPS
    return float(np.clip(video.fps * len(result.frames) / len(video.frames), 1.0, 30.0))


def write_video_files(writer: OutputWriter, result: VideoResult, resolved: Resolved) -> list[str]:
    """PNG figure, a GIF and an MP4 per map row and the ``.npz`` of one video; returns the file names written."""
    explanation = result.explanation
    base = file_stem(result.video.name)
    extremal = resolved.method.extremal
    labels = ([f"top {row['area']:.0%}" for row in explanation.areas] if extremal else [resolved.method.title])
    probabilities = explanation.frame_probabilities
    curves = [visualize.FrameCurve(label, maps, None if probabilities is None else probabilities[i])
              for i, (label, maps) in enumerate(zip(labels, explanation.maps))]
    written = [writer.write(f"{base}.png", visualize.figure_png(
        result.frames, list(zip(labels, explanation.maps)), title=figure_title(result, resolved),
        note=shared_note(result, resolved), curves=curves)).name]
    fps, total = animation_fps(result), len(result.frames)
    for label, name, maps in zip(labels, explanation.row_names, explanation.maps):
        suffix = "" if len(labels) == 1 else "_" + name.replace(" ", "")
        captions = [f"frame {t + 1}/{total}  {result.target_name}  {label}" for t in range(total)]
        written.append(writer.write(f"{base}{suffix}.gif", visualize.gif_bytes(
            result.frames, maps, fps=fps, captions=captions)).name)
        written.append(writer.write(f"{base}{suffix}.mp4", visualize.mp4_bytes(
            result.frames, maps, fps=fps, captions=captions)).name)
    meta = {"video": result.video.name, "path": result.video.path, "method": resolved.method.name,
            "model": resolved.spec.name, "target": result.target, "target_name": result.target_name,
            "rows": list(explanation.row_names)}
    maps = explanation.maps
    arrays = {"maps": maps.astype(np.float16 if maps.size > 4_000_000 else np.float32),
              "frames": result.frames, "meta": np.array(json.dumps(meta)),
              "clip_probability": np.float64(result.probability)}
    if probabilities is not None:
        arrays["frame_probabilities"] = np.asarray(probabilities, np.float64)
    for key in dict.fromkeys(k for row in explanation.areas for k in row):
        arrays[NPZ_NAMES.get(key, key)] = np.array([row[key] for row in explanation.areas], np.float64)
    arrays.update({key: np.float64(value) for key, value in explanation.numbers.items()})
    written.append(writer.write(f"{base}.npz", npz_bytes(**arrays)).name)
    return written


def summary_entry(result: VideoResult) -> dict[str, Any]:
    """The ``summary.json`` entry of one video: who, which target and its probability on the clip, top
    predictions, the method's numbers; per area (extremal methods) the soft and hard masks'
    probabilities, ``hard_mask_loses_class`` (the hard mask keeps less than a tenth of the clip's
    probability) and ``frame_probabilities`` (the per-frame importance curve)."""
    entry = {"video": result.video.name, "path": result.video.path, "label": result.video.label,
             "target": result.target, "target_name": result.target_name, "target_source": result.target_source,
             "clip_probability": result.probability,
             "predictions": [{"class": n, "probability": p} for n, p in result.top]}
    if result.explanation.areas:
        entry["areas"] = [{**row, "hard_mask_loses_class": row["hard_preserved_probability"]
                           < LOST_FRACTION * result.probability} for row in result.explanation.areas]
        if result.explanation.frame_probabilities is not None:
            for row, probabilities in zip(entry["areas"], result.explanation.frame_probabilities):
                row["frame_probabilities"] = [float(p) for p in probabilities]
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
