"""Class names of the label sets: shipped with vjx, or read from the original toolkit's label files.

vjx ships the class lists (``vjx/assets/<label set>_classes.json``: Kinetics-400's 400 names,
EPIC-Kitchens-55's 352 noun and 125 verb class keys, each a JSON list in logit order), so a fresh
installation names real classes. A directory in the original toolkit's layout replaces them::

    <labels dir>/kinetics/classes.json                          a JSON list of 400 names
    <labels dir>/epic-kitchens-noun/EPIC_noun_classes.csv       noun_id,class_key,...
    <labels dir>/epic-kitchens-verb/EPIC_verb_classes.csv       verb_id,class_key,...

given as the ``labels_dir`` argument, else as the ``VJX_LABELS_DIR`` environment variable. A
directory named that way is the only place searched, so a wrong one is an error rather than a
silent fallback to the shipped lists.

Heads whose size comes from a checkpoint (VGG16-LSTM: ``ucf101-24``, ``ucf101``, or ``<N>-classes``
for any other size) ship no names: their classes are ``class 0`` ... unless the directory holds
``<label set>/classes.json`` (a JSON list of names in logit order).
"""
from __future__ import annotations

import csv
import difflib
import functools
import json
import os
import pathlib
import re

from vjx.errors import VjxError

LABEL_SETS: dict[str, int] = {"kinetics400": 400, "epic-kitchens-noun": 352, "epic-kitchens-verb": 125,
                              "ucf101-24": 24, "ucf101": 101}
LABEL_FILES: dict[str, str] = {
    "kinetics400": "kinetics/classes.json",
    "epic-kitchens-noun": "epic-kitchens-noun/EPIC_noun_classes.csv",
    "epic-kitchens-verb": "epic-kitchens-verb/EPIC_verb_classes.csv",
}
UNNAMED = re.compile(r"([1-9][0-9]*)-classes")      # a head of any size, e.g. "51-classes"


def head_label_set(num_classes: int) -> str:
    """The label set of a head read from a checkpoint: ``ucf101-24``, ``ucf101``, else ``<N>-classes``."""
    return {24: "ucf101-24", 101: "ucf101"}.get(num_classes, f"{num_classes}-classes")
ENV_VAR = "VJX_LABELS_DIR"
_SHIPPED = pathlib.Path(__file__).resolve().parents[1] / "assets"


def _check_name(label_set: str) -> None:
    if label_set not in LABEL_SETS and not UNNAMED.fullmatch(label_set):
        raise VjxError(f"unknown label set {label_set!r}; choose one of {', '.join(LABEL_SETS)}.")


def label_set_size(label_set: str) -> int:
    """Number of classes of a label set (no file needed)."""
    _check_name(label_set)
    unnamed = UNNAMED.fullmatch(label_set)
    return int(unnamed.group(1)) if unnamed else LABEL_SETS[label_set]


def label_file(label_set: str, labels_dir: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The file the class names of ``label_set`` are read from (see the module docstring).

    Raises:
      VjxError: unknown label set, or the named directory lacks the file (the message says where
        to put it).
    """
    _check_name(label_set)
    shipped = _SHIPPED / f"{label_set}_classes.json"
    relative = LABEL_FILES.get(label_set, f"{label_set}/classes.json")
    if labels_dir is None and not os.environ.get(ENV_VAR):
        return shipped if shipped.is_file() else None
    directory = pathlib.Path(labels_dir if labels_dir is not None else os.environ[ENV_VAR])
    if label_set not in LABEL_FILES and not (directory / relative).is_file():
        return None
    if not (directory / relative).is_file():
        named, default = (("labels_dir", "pass labels_dir=None") if labels_dir is not None
                          else (ENV_VAR, f"unset {ENV_VAR}"))
        raise VjxError(f"label file {relative!r} of {label_set!r} not found in {named} {str(directory)!r}; put "
                       f"the original toolkit's file at {directory / relative}, or {default} to use the class "
                       "names shipped with vjx.")
    return (directory / relative).resolve()


def load_labels(label_set: str, labels_dir: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The class names of a label set, in logit order (cached per file).

    Args:
      label_set: ``"kinetics400"``, ``"epic-kitchens-noun"`` or ``"epic-kitchens-verb"``.
      labels_dir: a directory in the original toolkit's layout to read instead of the shipped lists.

    Raises:
      VjxError: unknown label set, missing file, or a file that does not hold the expected classes.
    """
    path = label_file(label_set, labels_dir)
    if path is None:
        return tuple(f"class {i}" for i in range(label_set_size(label_set)))
    return _read(label_set, path)


@functools.lru_cache(maxsize=None)
def _read(label_set: str, path: pathlib.Path) -> tuple[str, ...]:
    expected = label_set_size(label_set)
    try:
        if path.suffix == ".json":
            names = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError("expected a JSON list of class names")
        else:
            names = _read_epic_csv(path)
    except (OSError, ValueError, KeyError, csv.Error) as e:
        raise VjxError(f"label file {str(path)!r} is not a valid {label_set} file ({e}); replace it with "
                       "the original toolkit's.") from e
    if len(names) != expected:
        raise VjxError(f"label file {str(path)!r} lists {len(names)} classes but {label_set} has "
                       f"{expected}; replace it with the original toolkit's.")
    return tuple(names)


def _read_epic_csv(path: pathlib.Path) -> list[str]:
    """``<noun|verb>_id,class_key,...`` rows -> class keys ordered by id (ids must be 0..N-1)."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        id_column = next((c for c in reader.fieldnames or () if c.endswith("_id")), None)
        if id_column is None or "class_key" not in reader.fieldnames:
            raise ValueError("expected columns <noun|verb>_id and class_key")
        rows = {int(row[id_column]): row["class_key"] for row in reader}
    if sorted(rows) != list(range(len(rows))):
        raise ValueError(f"{id_column} values are not 0..{len(rows) - 1}")
    return [rows[i] for i in range(len(rows))]


def _key(name: str) -> str:
    """Case-, underscore- and space-insensitive form of a class name."""
    return re.sub(r"[\s_]+", "", name.lower())


def resolve_label(name: str, labels: tuple[str, ...] | list[str]) -> int | None:
    """Index of the class matching ``name`` ("Air_Drumming" matches "air drumming"), or ``None``."""
    key = _key(name)
    return next((i for i, label in enumerate(labels) if _key(label) == key), None)


def close_labels(name: str, labels: tuple[str, ...] | list[str], n: int = 3) -> list[str]:
    """Up to ``n`` class names that look like ``name`` (difflib), for "did you mean" messages."""
    by_key = {_key(label): label for label in labels}
    return [by_key[k] for k in difflib.get_close_matches(_key(name), list(by_key), n=n, cutoff=0.6)]
