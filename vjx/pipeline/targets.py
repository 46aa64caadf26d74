"""Which class to explain for each video: its folder-name label, the prediction, or a named class.

    names = class_names(spec)                                  # placeholders if the label file is missing
    index, source = choose_target("label", video, probs, names)   # source: "label", "pred" or "given"
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from vjx import data
from vjx.errors import ArgumentError, VjxError
from vjx.models.registry import ModelSpec

_warned_labels: set[str] = set()
# How the console and the figures say where a target came from.
TARGET_WORDS = {"label": "the class in its file name", "pred": "the model's prediction",
                "given": "the class asked for"}


def class_names(spec: ModelSpec) -> tuple[str, ...]:
    """The model's class names; ``"class 123"`` placeholders (warned once) when the label file is missing."""
    try:
        return spec.labels
    except VjxError as e:
        if spec.label_set not in _warned_labels:
            _warned_labels.add(spec.label_set)
            warnings.warn(f"{e} Showing class numbers instead.", stacklevel=2)
        return tuple(f"class {i}" for i in range(spec.num_classes))


def choose_target(target: str, video: data.Video, probs: np.ndarray, names: Sequence[str]) -> tuple[int, str]:
    """The class to explain for one video and how it was chosen (``label``, ``pred`` or ``given``).

    Args:
      target: ``"label"`` uses the folder-name label if it is a class of ``names``; otherwise it
        warns, suggests close class names and falls back to the prediction. ``"pred"``: the
        prediction. Anything else: a class name (or index) of ``names``.
      video: the video (its ``label`` and ``name``).
      probs: float ``K`` class probabilities of the video.
      names: ``K`` class names.
    Raises:
      ArgumentError: ``target`` is neither ``label``, ``pred``, a class name nor a class index.
    """
    predicted = int(np.argmax(probs))
    if target == "pred":
        return predicted, "pred"
    if target == "label":
        index = data.resolve_label(video.label, names) if video.label else None
        if index is not None:
            return index, "label"
        if video.label and video.label != video.name and not names[0].startswith("class "):
            close = data.close_labels(video.label, names)
            hint = f" (close: {', '.join(close)})" if close else ""
            warnings.warn(f"video {video.name!r}: label {video.label!r} is not a class of the label "
                          f"set{hint}; explaining the prediction {names[predicted]!r}", stacklevel=2)
        return predicted, "pred"
    return named_target(target, names), "given"


def named_target(target: str, names: Sequence[str]) -> int:
    """The index of a class given by name (or index); checked when a request is resolved, before
    any model loads.

    Raises:
      ArgumentError: ``target`` is neither a class name nor a class index (with close names as hints).
    """
    index = data.resolve_label(target, names)
    if index is None and target.isdigit() and int(target) < len(names):
        index = int(target)
    if index is None:
        close = data.close_labels(target, names)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ArgumentError("target", f"{target!r} is not a class name, 'label' or 'pred'{hint}")
    return index
