"""The tests of an evaluation: real clips (with their annotations), clips joined in time, clips side by side.

    clips = clip_cases(paths, spec, annotations="truth.csv")     # one Case per video, truth in input frames
    pairs = pair_cases(paths, spec, class_names(spec))           # the temporal test built from labelled clips
    sides = spatial_cases(paths, spec, class_names(spec))        # the spatial test built from labelled clips
    video, x = load(pairs[0], spec)                              # x: float32 T x S x S x 3, the model's input
    video, x = load(sides[0], spec)                              # x: float32 T x S x 2S x 3

**Joined pairs** (the temporal pointing game of Li et al. in the style of their later evaluation
code): for every ordered pair ``(a, b)`` of clips with different labels, each clip is sampled to half
the model's frames (the spec's sampling rule, ``T // 2`` for ``a`` and ``T - T // 2`` for ``b``),
preprocessed, and ``a``'s half is followed by ``b``'s. Each joined clip is two tests: explain ``a``'s
class (ground truth: the first half's frames) and explain ``b``'s (the second half's). So every clip
is explained in both positions next to every clip of another label, and a method that prefers early
or late frames gains nothing. Labels come from the clip names (the part before the first ``-``) and
must be classes of the model. The joined clips exist only in memory.

**Spatial pairs** (the grid pointing game of image attribution, Böhle et al.'s B-cos and Rao et al.'s
DiFull, in video form): for every ordered pair ``(a, b)`` of clips with different labels, each clip
is sampled and preprocessed at the model's own size (``T x S x S``) and ``a`` is put left of ``b``,
``gap`` columns of zeros (the normalisation's mean colour) between them: a ``T x S x (2S + gap)``
input, which every vjx model takes (they pool globally). Each is two tests: explain ``a``'s class
(ground truth: the left clip, columns ``0 ... S - 1`` of every frame) and ``b``'s (the right clip,
columns ``S + gap ... 2S + gap - 1``). Every clip is on both sides next to every clip of another
label. The model's evidence for a class can only be in the half that holds it, so a map that puts
its mass in the other half is wrong by construction. A gap keeps the two clips' borders from mixing
in the model's first layers: one layout to try when the side-by-side composite confuses the model. A composite may confuse the model (neither class in its top 5): the
evaluation reports each case's class rank and probability beside the scores.

Both pair tests refuse a clip too short for its part (``T // 2`` frames for a joined pair, ``T``
side by side): repeated frames would make the halves unlike what the model was trained on.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Sequence

import numpy as np

from vjx import data
from vjx.data.video import label_from_name
from vjx.errors import ArgumentError
from vjx.models.registry import ModelSpec
from vjx.pipeline.annotations import ModelTruth, VideoShape, model_truth, read_annotations
from vjx.pipeline.files import file_stem
from vjx.pipeline.inputs import display_frames, model_input

HALVES = ("first", "second")
SIDES = ("left", "right")


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    """One test of an evaluation.

    Attributes:
      name: unique, file-safe: the clip's name, ``<a>+<b>@first`` / ``@second`` for a joined pair,
        ``<a>+<b>@left`` / ``@right`` for a spatial pair.
      kind: ``"clip"`` (a real video), ``"pair"`` (two clips joined in time) or ``"spatial"`` (two
        clips side by side).
      paths: the clip's path, or the two clips' paths in their order in time (left to right).
      label: the label of the class explained (a clip's name label; the explained half's label).
      target: the class to explain (index), or None to choose it by the run's ``target`` rule.
      truth: the ground truth in the model's input frames, or None (nothing annotated).
      gap: a spatial pair's columns between its two clips.
    """

    name: str
    kind: str
    paths: tuple[str, ...]
    label: str
    target: int | None = None
    truth: ModelTruth | None = None
    gap: int = 0


def clip_cases(paths: Sequence[str], spec: ModelSpec, annotations: str | os.PathLike | None = None) -> list[Case]:
    """One case per video; with an annotation file, its truth carried into the model's input frames.

    With ``annotations``, every video is read once first (to check the file's rows against the
    frame counts and sizes), so a bad file or row fails before any compute.

    Raises:
      ArgumentError: of ``videos``: two videos with the same name.
      VjxError: a video cannot be read; a bad annotation file (see :func:`read_annotations`).
    """
    names = [data.video_name(p) for p in paths]
    _check_unique(names, "videos")
    if annotations is None:
        return [Case(name=n, kind="clip", paths=(p,), label=label_from_name(n)) for n, p in zip(names, paths)]
    shapes = {}
    for name, path in zip(names, paths):
        frames = data.read_video(path).frames
        shapes[name] = VideoShape(*frames.shape[:3])
    truths = read_annotations(annotations, shapes)
    return [Case(name=name, kind="clip", paths=(path,), label=label_from_name(name),
                 truth=model_truth(truths.get(name), shapes[name], spec) if name in truths else None)
            for name, path in zip(names, paths)]


def pair_cases(paths: Sequence[str], spec: ModelSpec, class_names: Sequence[str]) -> list[Case]:
    """The joined-pair temporal test of the clips at ``paths`` (see the module docstring).

    Returns:
      two cases per ordered pair of clips with different labels, in the order of ``paths``.
    Raises:
      ArgumentError: of ``pairs``: two clips with the same name, a label that is not a class of the
        model, fewer than two labels, or a clip shorter than ``T - T // 2`` frames.
    """
    half = spec.num_frames // 2
    cases = []
    for (i, j), names, labels, classes in _ordered_pairs(paths, spec, class_names, "pairs", spec.num_frames - half):
        for side, k in zip(HALVES, (i, j)):
            segment = (0, half) if side == "first" else (half, spec.num_frames)
            truth = ModelTruth(boxes=np.zeros((spec.num_frames, 1, 4), np.float32),
                               annotated=np.zeros((spec.num_frames, 1), bool), segment=segment)
            cases.append(Case(name=f"{file_stem(names[i])}+{file_stem(names[j])}@{side}", kind="pair",
                              paths=(paths[i], paths[j]), label=labels[k], target=classes[k], truth=truth))
    return cases


def spatial_cases(paths: Sequence[str], spec: ModelSpec, class_names: Sequence[str], gap: int = 0) -> list[Case]:
    """The side-by-side spatial test of the clips at ``paths`` (see the module docstring).

    The truth of a side is its clip as one box in every frame, ``(x0, y0, x1, y1)`` = ``(0, 0, S - 1,
    S - 1)`` on the left, ``(S + gap, 0, 2S + gap - 1, S - 1)`` on the right, in the composite's pixels.

    Returns:
      two cases per ordered pair of clips with different labels, in the order of ``paths``.
    Raises:
      ArgumentError: of ``spatial_pairs``: as :func:`pair_cases`, a clip shorter than ``T`` frames.
    """
    t, s = spec.num_frames, spec.crop
    cases = []
    for (i, j), names, labels, classes in _ordered_pairs(paths, spec, class_names, "spatial_pairs", t):
        for side, k in zip(SIDES, (i, j)):
            left = 0 if side == "left" else s + gap
            truth = ModelTruth(boxes=np.tile(np.array([left, 0, left + s - 1, s - 1], np.float32), (t, 1, 1)),
                               annotated=np.ones((t, 1), bool), segment=None)
            cases.append(Case(name=f"{file_stem(names[i])}+{file_stem(names[j])}@{side}", kind="spatial",
                              paths=(paths[i], paths[j]), label=labels[k], target=classes[k], truth=truth, gap=gap))
    return cases


def _ordered_pairs(paths: Sequence[str], spec: ModelSpec, class_names: Sequence[str], argument: str,
                   min_frames: int):
    """Checks labelled clips and yields ``((i, j), names, labels, classes)`` per ordered pair of different labels.

    Every clip is read once here, so a short clip fails before any compute.
    """
    names = [data.video_name(p) for p in paths]
    _check_unique(names, argument)
    labels = [label_from_name(n) for n in names]
    classes = []
    for name, label in zip(names, labels):
        index = data.resolve_label(label, class_names)
        if index is None:
            raise ArgumentError(argument, f"clip {name!r}: its label {label!r} (the name up to its first '-') is not "
                                f"a class of {spec.name}; the pair tests explain each clip's own class")
        classes.append(index)
    if len(set(labels)) < 2:
        raise ArgumentError(argument, "needs clips of at least two labels (pairs join clips of different labels)")
    for name, path in zip(names, paths):
        count = data.read_video(path).frames.shape[0]
        if count < min_frames:
            raise ArgumentError(argument, f"clip {name!r} ({path}) has {count} frames; this test needs {min_frames} "
                                f"per clip for {spec.name}: remove it or give a longer clip")
    for i, j in itertools.permutations(range(len(paths)), 2):
        if labels[i] != labels[j]:
            yield (i, j), names, labels, classes


def load(case: Case, spec: ModelSpec) -> tuple[data.Video, np.ndarray]:
    """The case's video and the model's input of it: float32 ``T x S x S x 3`` (``T x S x (2S + gap)
    x 3`` for a spatial pair).

    A pair's video is the composite as the model sees it (uint8 frames of the input's shape).
    """
    if case.kind == "clip":
        video = data.read_video(case.paths[0])
        return video, model_input(spec, video)
    half = spec.num_frames // 2
    first, second = (data.read_video(p) for p in case.paths)
    if case.kind == "spatial":
        left, right = model_input(spec, first), model_input(spec, second)
        x = np.concatenate([left, np.zeros((*left.shape[:2], case.gap, 3), np.float32), right], axis=2)
    else:
        x = np.concatenate([_half_input(spec, first, half), _half_input(spec, second, spec.num_frames - half)])
    video = data.Video(frames=display_frames(spec, x), name=case.name, fps=None, label=case.label,
                       path=" + ".join(case.paths))
    return video, x


def _half_input(spec: ModelSpec, video: data.Video, num_frames: int) -> np.ndarray:
    """``num_frames`` of the video, sampled by the spec's rule and preprocessed: float32 ``n x S x S x 3``."""
    return model_input(dataclasses.replace(spec, num_frames=num_frames), video)


def _check_unique(names: Sequence[str], argument: str) -> None:
    stems = [file_stem(n) for n in names]
    twins = sorted({n for n, s in zip(names, stems) if stems.count(s) > 1})
    if twins:
        raise ArgumentError(argument, f"holds two videos named {twins[0]!r} (results are stored by name); rename one")
