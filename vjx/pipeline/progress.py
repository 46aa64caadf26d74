"""Progress bars for long compiled calls, advanced from inside them (thread-safe)."""
from __future__ import annotations

import contextlib
import sys
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """A tqdm bar on stderr; yields ``tick()``, which advances it by one (capped at ``total``) and may
    be called from any thread (``jax.debug.callback`` runs it on the runtime's)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="it", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
    lock = threading.Lock()

    def tick() -> None:
        with lock:
            if bar.n < total:
                bar.update(1)

    try:
        yield tick
    finally:
        bar.close()
