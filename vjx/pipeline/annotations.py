"""Ground truth for the pointing games: a CSV file of boxes per frame and action segments per video.

    video,kind,start,stop,x0,y0,x1,y1
    v_Basketball_g01_c01,segment,10,52
    v_Basketball_g01_c01,box,12,,34,20,80,110
    v_Basketball_g01_c01,box,13,20,35,21,81,111

One row per line after the header (blank lines and lines starting with ``#`` are skipped):

- ``video``: the video's name as vjx names it (a frame folder's name, a video file's stem).
- ``kind``: ``segment`` (when the action happens; at most one per video) or ``box`` (where it is).
- ``start``, ``stop``: frame indices of the video as read (0-based; a frame folder's frames in name
  order), ``stop`` excluded, as a Python slice. A box row may leave ``stop`` empty: the box is on
  frame ``start`` only; otherwise the same box holds on every frame of the range. A frame may have
  several boxes (several rows).
- ``x0, y0, x1, y1``: a box row's box in pixels of the video's frames: x along columns, y along
  rows, ``0 <= x0 <= x1 <= width - 1``, ``0 <= y0 <= y1 <= height - 1``, edges included.

:func:`read_annotations` checks every row against the videos (a video that is not evaluated, a
frame index out of range, a box outside the frame, a malformed value are each a :class:`VjxError`
naming the file and the line). :func:`model_truth` carries one video's truth into the frames the
model sees: the sampled frames (the spec's sampling), then the resize and the center crop.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import warnings
from typing import Mapping

import numpy as np

from vjx.data.preprocess import resized_size
from vjx.data.sampling import sample_indices
from vjx.errors import VjxError
from vjx.models.registry import ModelSpec

COLUMNS = ("video", "kind", "start", "stop", "x0", "y0", "x1", "y1")
KINDS = ("segment", "box")


@dataclasses.dataclass(frozen=True)
class VideoShape:
    """What the checks need of a video: frames N, height H, width W."""

    num_frames: int
    height: int
    width: int


@dataclasses.dataclass(frozen=True)
class Truth:
    """One video's annotations, in its own frames and pixels.

    Attributes:
      segment: ``(start, stop)`` frames of the action, or None.
      boxes: ``(start, stop, (x0, y0, x1, y1))`` per box row: the box holds on frames ``[start, stop)``.
    """

    segment: tuple[int, int] | None = None
    boxes: tuple[tuple[int, int, tuple[float, float, float, float]], ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelTruth:
    """One video's annotations in the model's input frames (``T`` frames of ``S x S`` pixels).

    Attributes:
      boxes: float32 ``T x K x 4`` boxes ``(x0, y0, x1, y1)`` in input pixels (``K`` >= 1).
      annotated: bool ``T x K``: which boxes exist (a frame without any is not counted).
      segment: ``(start, stop)`` input frames of the action, or None (no segment, or none of the
        sampled frames falls inside it).
    """

    boxes: np.ndarray
    annotated: np.ndarray
    segment: tuple[int, int] | None


def read_annotations(path: str | os.PathLike, videos: Mapping[str, VideoShape]) -> dict[str, Truth]:
    """Reads and checks an annotation file (format in the module docstring).

    Args:
      path: the CSV file.
      videos: name -> shape of every video evaluated.
    Returns:
      name -> :class:`Truth` of every annotated video.
    Raises:
      VjxError: a missing or unreadable file, a wrong header, a malformed row, a video not in
        ``videos``, a frame index out of range, a box outside the frame, a second segment; the
        message names the file and the line.
    """
    path = os.fspath(path)
    try:
        with open(path, newline="") as f:
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise VjxError(f"annotations {path!r} cannot be read: {e}") from e
    segments: dict[str, tuple[int, int]] = {}
    boxes: dict[str, list] = {}
    header_seen = False
    for number, fields in enumerate(lines, start=1):
        fields = [f.strip() for f in fields]
        if not any(fields) or fields[0].startswith("#"):
            continue
        where = f"annotations {path!r} line {number}"
        if not header_seen:
            if tuple(fields) != COLUMNS:
                raise VjxError(f"{where}: the header must be {','.join(COLUMNS)}, got {','.join(fields)}")
            header_seen = True
            continue
        name, kind, start, stop, box = _parse_row(fields, where)
        if name not in videos:
            close = ", ".join(sorted(videos)[:3])
            raise VjxError(f"{where}: video {name!r} is not among the videos evaluated ({close}"
                           f"{', ...' if len(videos) > 3 else ''}); check its name or remove its rows")
        shape = videos[name]
        stop = start + 1 if stop is None else stop
        if not 0 <= start < stop <= shape.num_frames:
            raise VjxError(f"{where}: frames [{start}, {stop}) are out of range: video {name!r} has "
                           f"{shape.num_frames} frames (0 ... {shape.num_frames - 1})")
        if kind == "segment":
            if name in segments:
                raise VjxError(f"{where}: a second segment for video {name!r}; give one segment per video")
            segments[name] = (start, stop)
        else:
            x0, y0, x1, y1 = box
            if not (0 <= x0 <= x1 <= shape.width - 1 and 0 <= y0 <= y1 <= shape.height - 1):
                raise VjxError(f"{where}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the "
                               f"{shape.width}x{shape.height} frames of video {name!r} or is not ordered; need "
                               f"0 <= x0 <= x1 <= {shape.width - 1} and 0 <= y0 <= y1 <= {shape.height - 1}")
            boxes.setdefault(name, []).append((start, stop, box))
    if not header_seen:
        raise VjxError(f"annotations {path!r} is empty; its first line must be {','.join(COLUMNS)}")
    return {name: Truth(segment=segments.get(name), boxes=tuple(boxes.get(name, ())))
            for name in dict.fromkeys([*segments, *boxes])}


def _parse_row(fields: list[str], where: str):
    """``(video, kind, start, stop or None, box or None)`` of one row; a VjxError naming ``where`` if malformed."""
    if len(fields) > len(COLUMNS):
        raise VjxError(f"{where}: {len(fields)} values; a row has at most {len(COLUMNS)} ({','.join(COLUMNS)})")
    fields = fields + [""] * (len(COLUMNS) - len(fields))
    name, kind = fields[0], fields[1]
    if not name:
        raise VjxError(f"{where}: the video name is empty")
    if kind not in KINDS:
        raise VjxError(f"{where}: kind {kind!r} is neither segment nor box")
    start = _integer(fields[2], "start", where)
    stop = _integer(fields[3], "stop", where) if fields[3] else None
    if kind == "segment":
        if stop is None or any(fields[4:]):
            raise VjxError(f"{where}: a segment row gives start and stop and no box")
        return name, kind, start, stop, None
    try:
        box = tuple(float(v) for v in fields[4:8])
    except ValueError:
        raise VjxError(f"{where}: a box row needs four numbers x0,y0,x1,y1, got {','.join(fields[4:8])!r}") from None
    if not all(math.isfinite(v) for v in box):
        raise VjxError(f"{where}: box values must be finite numbers, got {','.join(fields[4:8])}")
    return name, kind, start, stop, box


def _integer(text: str, column: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise VjxError(f"{where}: {column} must be a frame index (an integer), got {text!r}") from None


def _input_pixels(box: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Box ``(x0, y0, x1, y1)`` of video pixels -> the input pixels (before clipping to the crop)."""
    # A coordinate c of the video is (c + 0.5) * scale - 0.5 after resizing (pixel centers map to
    # pixel centers); the box covers [x0 - 0.5, x1 + 0.5] before.
    low = box[:2] * scale[:2] - 0.5
    high = (box[2:] + 1.0) * scale[2:] - 0.5
    first, last = np.ceil(low), np.floor(high)                    # input pixel centers inside
    center = np.round((low + high) / 2)
    first, last = np.where(first <= last, first, center), np.where(first <= last, last, center)
    return np.concatenate([first, last]) - offset


def model_truth(truth: Truth | None, shape: VideoShape, spec: ModelSpec) -> ModelTruth:
    """One video's truth in the frames and pixels of the model's input.

    Input frame ``t`` shows the video's frame ``sample_indices(N, T)[t]`` (repeated frames for short
    videos, as the run samples them); it holds the boxes of that frame. A box becomes the input
    pixels whose centers lie in the area its pixels cover after the resize (the pixel ``x`` covers
    ``[x - 0.5, x + 0.5]``; a box smaller than one input pixel becomes the pixel at its center),
    shifted by the center crop and clipped to it; a box the crop leaves out entirely is dropped.
    Without resizing a box stays the same pixels. The segment becomes the input frames whose
    source frame lies inside it.

    Args:
      truth: the video's :class:`Truth` (None: not annotated).
      shape: the video's frames and size.
      spec: the model's spec (``num_frames``, ``resize``, ``crop``).
    Returns:
      a :class:`ModelTruth`; a segment that no sampled frame falls into becomes None, with a warning.
    """
    truth = truth or Truth()
    t, size = spec.num_frames, spec.crop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # the run warns about repeated frames itself
        sources = sample_indices(shape.num_frames, t, repeat=True)
    new_h, new_w = resized_size(shape.height, shape.width, spec.resize)
    scale = np.array([new_w / shape.width, new_h / shape.height] * 2)
    offset = np.array([round((new_w - size) / 2.0), round((new_h - size) / 2.0)] * 2)
    per_frame: list[list[np.ndarray]] = [[] for _ in range(t)]
    for start, stop, box in truth.boxes:
        mapped = _input_pixels(np.array(box, np.float64), scale, offset)
        if mapped[2] < 0 or mapped[3] < 0 or mapped[0] > size - 1 or mapped[1] > size - 1:
            continue                                                          # cropped away
        mapped = np.clip(mapped, 0.0, size - 1.0)
        for i in np.flatnonzero((sources >= start) & (sources < stop)):
            per_frame[i].append(mapped)
    k = max(1, max(len(b) for b in per_frame))
    boxes = np.zeros((t, k, 4), np.float32)
    annotated = np.zeros((t, k), bool)
    for i, frame_boxes in enumerate(per_frame):
        for j, b in enumerate(frame_boxes):
            boxes[i, j], annotated[i, j] = b, True
    segment = None
    if truth.segment is not None:
        first, last = np.searchsorted(sources, truth.segment, side="left")
        if first < last:
            segment = (int(first), int(last))
        else:
            warnings.warn(f"segment {list(truth.segment)} holds none of the {t} frames the model sees "
                          f"({sources.tolist()}): the temporal pointing game skips this video", stacklevel=2)
    return ModelTruth(boxes=boxes, annotated=annotated, segment=segment)
