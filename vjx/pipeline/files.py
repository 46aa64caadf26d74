"""Result files: written atomically, removed again if the run fails; npz, JSON and CSV as bytes.

    with OutputWriter("out") as writer:              # creates out/ (and its missing parents)
        writer.write("summary.json", json_bytes(summary))
    # an exception inside the block removes every file and directory the writer created

Every file goes to a temporary name in its directory and is renamed into place (``os.replace``),
so a reader never sees half a file and an interrupted run leaves no partial one behind. Final files
get the permissions a plain ``open(path, "w")`` would give them (``0o666`` less the umask), not
``mkstemp``'s private ``0o600``: results on a shared machine are readable by the lab.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pathlib
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np

from vjx.errors import ArgumentError


def _umask() -> int:
    """The process's umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class OutputWriter:
    """Writes files under a directory atomically and removes everything it created if the run fails.

    Use as a context manager; an exception inside the block (KeyboardInterrupt included) removes the
    files written so far and every directory the writer created.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = pathlib.Path(directory)
        self.created_files: list[pathlib.Path] = []
        self.created_dirs: list[pathlib.Path] = []

    def __enter__(self) -> "OutputWriter":
        missing = []
        d = self.directory.absolute()
        while not d.exists():
            missing.append(d)
            d = d.parent
        if not d.is_dir():
            raise ArgumentError("output_dir", f"{str(self.directory)!r} cannot be created: {str(d)!r} is not "
                                "a directory")
        try:
            for d in reversed(missing):
                self._make_dir(d)
        except OSError as e:
            self.rollback()
            raise ArgumentError("output_dir", f"{str(self.directory)!r} cannot be created: {e.strerror}") from e
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.rollback()

    def subdir(self, name: str) -> pathlib.Path:
        """Creates ``directory/name`` if missing; it is removed on rollback if this writer made it and it is empty."""
        path = self.directory / name
        if not path.is_dir():
            self._make_dir(path.absolute())
        return path

    def _make_dir(self, path: pathlib.Path) -> None:
        """Creates ``path``; one that another process created meanwhile is used but not owned (not rolled back)."""
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir():
                raise
            return
        self.created_dirs.append(path)

    def write(self, name: str, payload: bytes) -> pathlib.Path:
        """Writes ``payload`` to ``directory/name`` via a temporary file and ``os.replace``; the file
        gets the mode ``open()`` would give it (``0o666 & ~umask``)."""
        path = self.directory / name
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            existed = path.exists()
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if not existed:
            self.created_files.append(path)
        return path

    def rollback(self) -> None:
        """Removes the files written and the directories created (innermost first)."""
        for path in reversed(self.created_files):
            with contextlib.suppress(OSError):
                path.unlink()
        for d in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()
        self.created_files, self.created_dirs = [], []


def write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Writes ``obj`` as :func:`json_bytes` to ``path`` atomically (its folder is created if missing)."""
    path = pathlib.Path(path).absolute()
    with OutputWriter(path.parent) as writer:
        return writer.write(path.name, json_bytes(obj))


def file_stem(name: str) -> str:
    """A video name usable as a file name (path separators and leading dots replaced)."""
    cleaned = "".join(c if c.isalnum() or c in "-_.+=@," else "_" for c in name).lstrip(".")
    return cleaned or "video"


def npz_bytes(**arrays: Any) -> bytes:
    """``np.savez_compressed`` into bytes."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def json_bytes(obj: Any) -> bytes:
    """Pretty JSON of :func:`jsonable` ``obj`` as UTF-8 bytes."""
    return (json.dumps(jsonable(obj), indent=1, allow_nan=False) + "\n").encode()


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays as Python numbers/lists, tuples as lists, NaN and inf as None."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    return obj


def csv_bytes(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> bytes:
    """The rows as CSV with header ``columns`` (every row must have exactly those keys)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()
