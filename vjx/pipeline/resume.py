"""Finished work of a resumable run: one JSON file of rows per unit (a video, a method on a video).

    payload = rows_bytes(fingerprint, rows)          # written atomically when the unit is done
    rows = finished_rows(path, fingerprint)          # None: not done yet (or an unreadable leftover)

A file holds the run's *fingerprint* (everything that must match for its rows to be reused) and
the rows. A rerun skips the units whose file exists with the same fingerprint; a file of another
configuration is an error rather than being silently mixed in or overwritten.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping

from vjx.errors import ArgumentError
from vjx.pipeline.files import json_bytes


def rows_bytes(fingerprint: Mapping[str, Any], rows: list[dict[str, Any]]) -> bytes:
    """A unit's file: its fingerprint and rows as JSON."""
    return json_bytes({"fingerprint": fingerprint, "rows": rows})


def finished_rows(path: str | os.PathLike, fingerprint: Mapping[str, Any],
                  output_dir: str | os.PathLike) -> list[dict[str, Any]] | None:
    """The rows of a finished unit, or None if it is not done.

    Args:
      path: the unit's file.
      fingerprint: what the run expects (compared after a JSON round trip).
      output_dir: the run's output directory, named in the error.
    Raises:
      ArgumentError: of ``output_dir``: the file holds results of another configuration.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
        stored_print, rows = stored["fingerprint"], stored["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None                    # unreadable leftovers are recomputed and replaced
    if stored_print != json.loads(json_bytes(fingerprint)):
        raise ArgumentError("output_dir", f"{str(output_dir)!r} holds results of another configuration "
                            f"({path.relative_to(output_dir) if path.is_relative_to(output_dir) else path}); "
                            "choose a new one or delete it")
    return rows
