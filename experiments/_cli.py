"""The contract every experiment script shares: absl flags, and user mistakes as one line + exit 2.

    from experiments import _cli

    def main(argv): ...
    if __name__ == "__main__":
        _cli.run(main)

A :class:`vjx.VjxError` (raised by the library for a bad file, flag or combination) and a flag that
does not parse both end the program with ONE line on stderr (``<script>: error: <what>``) and exit
code 2; the library has already removed whatever the failed run had written.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn, Sequence

from absl import app, flags

from vjx.errors import VjxError

USAGE_ERROR = 2


def fail(message: str) -> NoReturn:
    """Prints ``message`` as one line on stderr and exits with :data:`USAGE_ERROR`."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "vjx"
    if program == "__main__.py" or program.endswith(".py"):
        program = program.removesuffix(".py")
    line = " ".join(str(message).split())
    sys.stderr.write(f"{program}: error: {line}\n")
    sys.stderr.flush()
    sys.exit(USAGE_ERROR)


def _parse_flags(argv: Sequence[str]) -> list[str]:
    try:
        return flags.FLAGS(list(argv))
    except flags.Error as e:
        fail(str(e))


def no_extra_arguments(argv: Sequence[str]) -> None:
    """Raises a VjxError if the command line has positional arguments besides the program name."""
    if len(argv) > 1:
        raise VjxError(f"unexpected argument {argv[1]!r}; every option is a --flag (see --help)")


def run(main: Callable[[list[str]], object]) -> None:
    """``absl.app.run(main)`` that turns VjxErrors and flag errors into one line and exit code 2."""
    def guarded(argv: list[str]) -> None:
        try:
            main(argv)
        except VjxError as e:
            fail(str(e))

    app.run(guarded, flags_parser=_parse_flags)
