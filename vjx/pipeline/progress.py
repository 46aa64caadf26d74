"""What a run tells its user while it works: plain lines on stdout, phases with their time, and
progress bars on stderr whose estimates leave compilation out.

    say("Model: i3d with its pretrained kinetics400 weights", enabled)
    with phase("Loading the model", enabled):          # "Loading the model ... 12.3 s"
        model = load()
    with progress_bar("step i3d", enabled) as update:   # "(compiling...)" until the first update
        result = method(..., progress=update)
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator


def say(text: str, enabled: bool = True) -> None:
    """Prints one console line on stdout (flushed, so it shows before a long phase starts)."""
    if enabled:
        print(text, flush=True)


@contextlib.contextmanager
def phase(what: str, enabled: bool = True) -> Iterator[None]:
    """Prints ``what ...`` when a phase starts and its seconds on the same line when it ends."""
    if enabled:
        print(f"{what} ...", end="", flush=True)
    start = time.perf_counter()
    try:
        yield
    finally:
        if enabled:
            print(f" {time.perf_counter() - start:.1f} s", flush=True)


@contextlib.contextmanager
def progress_bar(desc: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar on stderr; yields ``update(done, total)``, the ``progress=`` callback every
    vjx.attribution method takes (iterations, path-point chunks, or ``(1, 1)`` for one-step methods).

    Until the first update the bar says ``compiling ...``: the first step includes XLA's compilation,
    so the bar restarts its clock there and its estimates come from the steps after it. After the
    last step it says ``scoring the results ...`` (extremal methods score their final masks). What
    the compilation, the steps and that last phase took is printed as a line when the bar closes.
    """
    from tqdm import tqdm

    bar = tqdm(total=None, desc=f"{desc} (compiling ...)", unit="it", disable=not enabled, file=sys.stderr,
               dynamic_ncols=True)
    times = {"start": time.perf_counter()}

    def update(done: int, total: int) -> None:
        now = time.perf_counter()
        if "first" not in times:
            times["first"] = now
            bar.reset(total)
            bar.set_description(desc)
            bar.initial = bar.n = bar.last_print_n = done       # the rate counts from here on
            bar.refresh()
            if done >= total:
                times["last"] = now
            return
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        if done >= total and "last" not in times:
            times["last"] = now
            bar.set_description(f"{desc} (scoring the results ...)")

    try:
        yield update
    finally:
        bar.close()
        if enabled and "first" in times:
            end = time.perf_counter()
            last = times.get("last", end)
            parts = [f"compiling and the first step {times['first'] - times['start']:.1f} s"]
            if last > times["first"]:
                parts.append(f"the other steps {last - times['first']:.1f} s")
            if end - last >= 0.05:
                parts.append(f"scoring the results {end - last:.1f} s")
            print(f"{desc}: {', '.join(parts)}", file=sys.stderr, flush=True)
