"""A class hierarchy read from a CSV file: one row per leaf class, its ancestors to the right.

    Apply Eye Makeup,Self-grooming,Human-Object Interaction,Root
    Apply Lipstick,Self-grooming,Human-Object Interaction,Root

Every row has the same number of columns (at least two: class, parent). A last column that holds one
name on every row (HIPE's ``Root``) is the root and is dropped: a level with one class explains
nothing. Blank lines and lines starting with ``#`` are skipped. Level 0 is the leaves (the labels of the
clips), level 1 their parents, and so on.
"""
from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from vjx.errors import VjxError


def name_key(name: str) -> str:
    """How clip labels meet hierarchy names: case, spaces, ``_`` and ``-`` ignored
    (``"ApplyEyeMakeup"``, ``"apply_eye_makeup"`` and ``"Apply Eye Makeup"`` are one class)."""
    return "".join(c for c in name.lower() if c not in " _-")


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """Classes at every level and the ancestors of every leaf.

    Attributes:
      levels: ``L`` tuples of class names; ``levels[0]`` are the leaves, ``levels[-1]`` the top.
      ancestors: int ``C0 x L``: column ``l`` is each leaf's class index at level ``l`` (column 0 is
        ``arange(C0)``).
      source: the file it was read from (for messages).
    """

    levels: tuple[tuple[str, ...], ...]
    ancestors: np.ndarray
    source: str = "<hierarchy>"

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of classes at each level."""
        return tuple(len(level) for level in self.levels)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Index of each level's first class in the concatenation of all levels' classes."""
        return tuple(int(x) for x in np.cumsum((0,) + self.sizes[:-1]))

    def all_names(self) -> tuple[str, ...]:
        """Every class of every level, leaves first (the order of class embeddings and prototypes)."""
        return tuple(name for level in self.levels for name in level)

    def leaf_index(self, label: str, where: str) -> int:
        """The leaf class of a clip label (see :func:`name_key`); a VjxError naming ``where`` if none."""
        keys = {name_key(name): i for i, name in enumerate(self.levels[0])}
        if name_key(label) not in keys:
            raise VjxError(f"{where}: label {label!r} is not a class of the hierarchy {self.source!r}; "
                           f"add a row for it or remove the clip")
        return keys[name_key(label)]

    def level_labels(self, leaves: np.ndarray) -> np.ndarray:
        """int leaf indices ``N`` -> their classes at every level, ``N x L``."""
        return self.ancestors[np.asarray(leaves)]


def read_hierarchy(path: str | os.PathLike) -> Hierarchy:
    """Reads and checks a hierarchy CSV (see the module docstring).

    Raises:
      VjxError naming the file and row for: rows of different lengths, fewer than two levels, an empty
      name, a class with two parents, a name on two levels or a cycle, a leaf listed twice.
    """
    path = os.fspath(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), 1)
                    if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise VjxError(f"hierarchy {path!r} could not be read: {e}") from None
    if not rows:
        raise VjxError(f"hierarchy {path!r} has no rows; write one line per class: class,parent[,grandparent...]")
    width = len(rows[0][1])
    for n, row in rows:
        if len(row) != width:
            raise VjxError(f"hierarchy {path!r} row {n} has {len(row)} columns, row {rows[0][0]} has {width}; "
                           "give every class the same number of ancestors")
        if not all(row):
            raise VjxError(f"hierarchy {path!r} row {n} has an empty name")
    if width > 2 and len({row[-1] for _, row in rows}) == 1:
        rows = [(n, row[:-1]) for n, row in rows]  # the root
        width -= 1
    if width < 2:
        raise VjxError(f"hierarchy {path!r} has one level; give every class at least a parent (class,parent)")
    parent: dict[str, tuple[str, int]] = {}
    level_of: dict[str, tuple[int, int]] = {}
    for n, row in rows:
        for level, name in enumerate(row):
            if name in level_of and level_of[name][0] != level:
                raise VjxError(f"hierarchy {path!r} row {n}: {name!r} is on level {level} here and on level "
                               f"{level_of[name][0]} in row {level_of[name][1]} (a cycle or a repeated name); "
                               "give each class one place")
            level_of.setdefault(name, (level, n))
        for child, up in zip(row[:-1], row[1:]):
            if child in parent and parent[child][0] != up:
                raise VjxError(f"hierarchy {path!r} row {n}: {child!r} has parent {up!r} here and "
                               f"{parent[child][0]!r} in row {parent[child][1]}; a class has one parent")
            parent.setdefault(child, (up, n))
    seen: dict[str, int] = {}
    for n, row in rows:
        if row[0] in seen:
            raise VjxError(f"hierarchy {path!r} row {n}: class {row[0]!r} is listed again (first in row {seen[row[0]]})")
        seen[row[0]] = n
    levels = tuple(tuple(dict.fromkeys(row[level] for _, row in rows)) for level in range(width))
    index = [{name: i for i, name in enumerate(level)} for level in levels]
    ancestors = np.array([[index[level][row[level]] for level in range(width)] for _, row in rows], np.int32)
    return Hierarchy(levels=levels, ancestors=ancestors, source=path)
