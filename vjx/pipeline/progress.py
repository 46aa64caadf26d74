"""Progress bars for long attribution calls, driven by the methods' ``progress(done, total)``."""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator


@contextlib.contextmanager
def progress_bar(desc: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar on stderr; yields ``update(done, total)``, the ``progress=`` callback every
    vjx.attribution method takes (iterations, path-point chunks, or ``(1, 1)`` for one-step methods)."""
    from tqdm import tqdm

    bar = tqdm(total=None, desc=desc, unit="it", disable=not enabled, file=sys.stderr, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
