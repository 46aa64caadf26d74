"""The contract every experiment script shares: absl flags, and user mistakes as one line + exit 2.

    from experiments import _cli

    def main(argv): ...
    if __name__ == "__main__":
        _cli.run(main)

A :class:`vjx.VjxError` (raised by the library for a bad file, value or combination) and a flag that
does not parse both end the program with ONE line on stderr (``<script>: error: <what>``) and exit
code 2; the library has already removed whatever the failed run had written. ``--help`` exits with
0, and SIGTERM unwinds like Ctrl-C so an interrupted run removes what it wrote. The library names its
own arguments (``areas``); an :class:`~vjx.errors.ArgumentError` is printed with the script's flag
instead (``--perturb_area``), see :data:`FLAG_NAMES`.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Callable, Mapping, NoReturn, Sequence

from absl import app, flags

from vjx.errors import ArgumentError, VjxError

USAGE_ERROR = 2
# Library argument (a vjx.pipeline.request.Request field) -> the flag that sets it in the original's CLI.
FLAG_NAMES: dict[str, str] = {
    "videos": "--videos_dir", "model": "--model", "dataset": "--pretrain_dataset", "method": "--vis_method",
    "areas": "--perturb_area", "schedule": "--schedule", "num_iter": "--num_iter", "input_size": "--input_size",
    "polarity": "--polarity", "target": "--target", "checkpoint": "--checkpoint", "output_dir": "--output_dir",
    "seed": "--seed", "batch_size": "--batch_size", "path_batch": "--path_batch", "dtype": "--dtype",
    "random_weights": "--random_weights", "num_masks": "--num_masks", "batch": "--batch",
    "warm_start": "--warm_start",
}


def fail(message: str) -> NoReturn:
    """Prints ``message`` as one line on stderr and exits with :data:`USAGE_ERROR`."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "vjx"
    if program == "__main__.py" or program.endswith(".py"):
        program = program.removesuffix(".py")
    line = " ".join(str(message).split())
    sys.stderr.write(f"{program}: error: {line}\n")
    sys.stderr.flush()
    sys.exit(USAGE_ERROR)


# absl's help flags print the help and exit with status 1; asking for help is not an error.
HELP_FLAGS = ("-?", "--help", "--helpshort", "--helpfull", "--helpxml")


def _parse_flags(argv: Sequence[str]) -> list[str]:
    options = list(argv[1:argv.index("--")] if "--" in argv else argv[1:])
    try:
        return flags.FLAGS(list(argv))
    except flags.Error as e:
        fail(str(e))
    except SystemExit:
        if any(arg.split("=")[0] in HELP_FLAGS for arg in options):
            sys.exit(0)
        raise


def _exit_on_sigterm(signum, frame) -> NoReturn:
    """SIGTERM (``timeout``, a batch scheduler, ``kill``) unwinds like Ctrl-C, so the writers roll back."""
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def no_extra_arguments(argv: Sequence[str]) -> None:
    """Raises a VjxError if the command line has positional arguments besides the program name."""
    if len(argv) > 1:
        raise VjxError(f"unexpected argument {argv[1]!r}; every option is a --flag (see --help)")


def parse_areas(values: Sequence[str] | None, flag: str = "--perturb_area") -> tuple[float, ...] | None:
    """A comma-list flag's strings -> floats (None if the flag was not given); the library checks the range."""
    if values is None:
        return None
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise VjxError(f"{flag} {','.join(values)!r} is not a comma list of numbers in (0, 1)") from None


def run(main: Callable[[list[str]], object], flag_names: Mapping[str, str] = FLAG_NAMES) -> None:
    """``absl.app.run(main)`` that turns VjxErrors and flag errors into one line and exit code 2.

    Args:
      main: the script's ``main(argv)``.
      flag_names: library argument -> this script's flag, for ArgumentErrors' messages.
    """
    def guarded(argv: list[str]) -> None:
        try:
            main(argv)
        except ArgumentError as e:
            fail(e.renamed(flag_names.get(e.argument, e.argument), dict(flag_names)))
        except VjxError as e:
            fail(str(e))

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app.run(guarded, flags_parser=_parse_flags)
