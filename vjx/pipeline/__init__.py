"""Explaining videos end to end: the run layer behind ``python -m experiments.explain`` and ``sweep``.

    from vjx import pipeline
    request = pipeline.Request(videos=(pipeline.sample_video(),), model="i3d", method="step",
                               areas=(0.05, 0.1), num_iter=300, output_dir="out")
    summary = pipeline.explain(request)     # out/<video>.png, .gif, .npz and out/summary.json

A run resolves its request once (:mod:`~vjx.pipeline.request`; methods come from the table in
:mod:`~vjx.pipeline.methods`), reads every video up front (:mod:`~vjx.pipeline.inputs`), loads the
model and prepares it for the method (:mod:`~vjx.pipeline.runner`), then per batch predicts, chooses
targets (:mod:`~vjx.pipeline.targets`) and attributes in one compiled call
(:mod:`~vjx.pipeline.session`). Each video's result is drawn and written
(:mod:`~vjx.pipeline.report`) through an atomic writer (:mod:`~vjx.pipeline.files`): if the run
fails, every file and directory it created is removed again. :mod:`~vjx.pipeline.sweep` runs a
dataset x areas sweep on the same steps.

Other runs over videos (an evaluation, say) reuse them through a :class:`Session`::

    session = pipeline.Session.open(pipeline.resolve(request))
    results, timings = session.explain_batch(pipeline.read_videos(paths))   # maps, targets, numbers
"""
from vjx import data
from vjx.pipeline.inputs import read_videos
from vjx.pipeline.request import Request, Resolved, load_model, resolve
from vjx.pipeline.session import Session, VideoResult, explain


def sample_video() -> str:
    """The bundled demo clip (Big Buck Bunny, (c) Blender Foundation, CC-BY 3.0)."""
    return data.sample_video_path()


__all__ = ["Request", "Resolved", "Session", "VideoResult", "explain", "load_model", "read_videos", "resolve",
           "sample_video"]
