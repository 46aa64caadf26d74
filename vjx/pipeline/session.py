"""One explain run: a :class:`Session` explains batches of videos; :func:`explain` runs a whole
request through one and writes its files.

    session = Session.open(resolve(request))          # weights loaded, model prepared for the method
    results, timings = session.explain_batch(read_videos(paths))   # one VideoResult per video
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import jax
import numpy as np

from vjx import data
from vjx.model import Model
from vjx.pipeline import report
from vjx.pipeline.files import OutputWriter, json_bytes
from vjx.pipeline.inputs import display_frames, model_input, read_videos
from vjx.pipeline.methods import Explanation
from vjx.pipeline.progress import phase, progress_bar, say
from vjx.pipeline.request import Request, Resolved, follow_checkpoint, load_model, resolve
from vjx.pipeline.runner import Runner
from vjx.pipeline.targets import TARGET_WORDS, choose_target, class_names

TOP_K = 3


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """Everything explained about one video.

    Attributes:
      video: the video as read.
      frames: uint8 ``T x S x S x 3``, the model's view of it.
      explanation: the method's maps (``R x T x S x S``) and numbers.
      target, target_name, target_source: the explained class, its name and how it was chosen
        (``label``, ``pred`` or ``given``).
      probability: the clip's probability of the target class.
      top: the :data:`TOP_K` most probable classes as ``(name, probability)``.
    """

    video: data.Video
    frames: np.ndarray
    explanation: Explanation
    target: int
    target_name: str
    target_source: str
    probability: float
    top: list[tuple[str, float]]


@dataclasses.dataclass
class Session:
    """A resolved request with its model loaded and prepared: explains batches of videos.

    Attributes:
      resolved: the request, checked.
      model: the loaded model.
      names: its class names.
      runner: the model prepared for the request's method, dtype, seed (and sharding).
    """

    resolved: Resolved
    model: Model
    names: tuple[str, ...]
    runner: Runner

    @classmethod
    def open(cls, resolved: Resolved, sharding: jax.sharding.Sharding | None = None) -> "Session":
        """Loads the weights and prepares the model (``sharding``: a NamedSharding of the batch axis)."""
        model = load_model(resolved)
        resolved = follow_checkpoint(resolved, model)
        request = resolved.request
        runner = Runner(model, resolved.method, resolved.config, request.dtype, request.seed, sharding)
        return cls(resolved, model, class_names(model.spec), runner)

    def explain_batch(self, videos: Sequence[data.Video], desc: str = "", *, inputs: np.ndarray | None = None,
                      targets: Sequence[int | None] | None = None,
                      announce: bool = False) -> tuple[list[VideoResult], dict[str, float]]:
        """Predicts and explains one batch of videos in one compiled attribution call.

        Args:
          videos: the batch.
          desc: the progress bar's label.
          inputs: float32 ``B x T x S x S x 3`` model inputs of the videos (default: each video
            through the resolved spec, at the request's input size), for tests built from several clips.
          targets: per video the class to explain (index), or None: chosen by the request's ``target``.
          announce: print per video the explained class, its probability and the top predictions
            before the attribution starts.
        Returns:
          one :class:`VideoResult` per video and the batch's timings in seconds (``predict``, ``attribution``).
        """
        request, spec, names = self.resolved.request, self.resolved.spec, self.names
        start = time.perf_counter()
        x = np.stack([model_input(spec, v) for v in videos]) if inputs is None else np.asarray(inputs, np.float32)
        with phase(f"Predicting {len(videos)} video(s) (the first call compiles the model)",
                   announce and request.progress):
            probs = self.runner.predict(x)
        predict_s = time.perf_counter() - start
        given = [None] * len(videos) if targets is None else targets
        chosen = [choose_target(request.target, v, p, names) if t is None else (int(t), "given")
                  for v, p, t in zip(videos, probs, given)]
        targets = np.array([index for index, _ in chosen], np.int32)
        tops = [[(names[j], float(p[j])) for j in np.argsort(-p)[:TOP_K]] for p in probs]
        for video, (index, source), p, top in zip(videos, chosen, probs, tops):
            say(f"  {video.name}: explaining {names[index]!r} ({TARGET_WORDS[source]}), p = {p[index]:.3f}; "
                f"top-{TOP_K}: " + ", ".join(f"{n} {q:.3f}" for n, q in top), announce and request.progress)
        start = time.perf_counter()
        with progress_bar(desc or f"{request.method} {spec.name}", request.progress) as update:
            explanations = self.runner.explain(x, targets, progress=update)
        attribution_s = time.perf_counter() - start
        results = [VideoResult(video=video, frames=display_frames(spec, x[i]), explanation=explanations[i],
                               target=int(targets[i]), target_name=names[targets[i]], target_source=chosen[i][1],
                               probability=float(probs[i, targets[i]]), top=tops[i])
                   for i, video in enumerate(videos)]
        return results, {"predict": predict_s, "attribution": attribution_s}


def explain(request: Request, model: Model | None = None) -> dict[str, Any]:
    """Runs a whole explain request and writes its outputs (see the module docstring).

    With ``request.progress`` the console says what happens: before the work the model, its weights,
    the input size, the videos and the method; per video the explained class, its probability and
    the top predictions; a line per phase with its seconds; after the work what every area's hard
    mask keeps against the clip's probability and why the extremal area is what it is.

    Args:
      request: the run.
      model: a model already loaded, used instead of the request's model and weights.
    Returns:
      the summary that was written to ``<output_dir>/summary.json``: per video a PNG figure, a GIF
      and an MP4 per map row and an ``.npz`` (see :mod:`vjx.pipeline.report`).
    Raises:
      VjxError: any bad input; nothing this run wrote is left behind.
    """
    start = time.perf_counter()
    resolved = resolve(request, model)
    if resolved.method.extremal:                  # the figure's per-frame importance curve
        resolved = dataclasses.replace(resolved, config=dataclasses.replace(resolved.config, frame_probabilities=True))
    talk = request.progress
    for line in report.run_lines(resolved):
        say(line, talk)
    with phase(f"Reading {len(request.videos)} video(s)", talk):
        videos = read_videos(request.videos)
    with phase(f"Loading {resolved.spec.name}", talk):
        session = Session.open(resolved)
    entries, timings = [], {"load": time.perf_counter() - start, "predict": 0.0, "attribution": 0.0, "write": 0.0}
    with OutputWriter(request.output_dir) as writer:
        for first in range(0, len(videos), request.batch_size):
            batch = videos[first:first + request.batch_size]
            desc = f"{request.method} {resolved.spec.name} [{first + 1}-{first + len(batch)}/{len(videos)}]"
            results, batch_timings = session.explain_batch(batch, desc, announce=True)
            for k, v in batch_timings.items():
                timings[k] += v
            for result in results:
                for line in report.result_lines(result, resolved):
                    say(line, talk)
            write_start = time.perf_counter()
            with phase(f"Writing the figures, animations and maps of {len(results)} video(s)", talk):
                for result in results:
                    entry = report.summary_entry(result)
                    entry["files"] = report.write_video_files(writer, result, resolved)
                    entries.append(entry)
            timings["write"] += time.perf_counter() - write_start
        timings["total"] = time.perf_counter() - start
        summary = report.run_summary(resolved, entries, timings)
        writer.write("summary.json", json_bytes(summary))
    return summary
