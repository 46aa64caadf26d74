"""The exceptions vjx raises for user mistakes.

Every message names the thing at fault (a file, an argument) and says what to do, so the
command-line scripts can print it as one line and exit with code 2. A bad value of one library
argument is an :class:`ArgumentError`, which knows the argument's name: the scripts print their own
flag name in its place (``areas`` becomes ``--perturb_area``), so the library never speaks of flags.
"""


class VjxError(Exception):
    """Bad input to vjx: a missing file, an unknown name, a shape that does not fit."""


class ArgumentError(VjxError):
    """A bad value of one named library argument.

    ``str(error)`` is ``"<argument> <problem>"``, e.g. ``"areas 1.5 is outside (0, 1); ..."``.

    Attributes:
      argument: the library argument's name (a :class:`vjx.pipeline.request.Request` field, say).
      problem: the rest of the sentence: what is wrong and what to do. Other arguments it names are
        ``{0}``, ``{1}``, ... placeholders for ``others``.
      others: the names of other arguments the problem mentions (renamed with the argument).
    """

    def __init__(self, argument: str, problem: str, others: tuple[str, ...] = ()):
        super().__init__(f"{argument} {problem.format(*others) if others else problem}")
        self.argument = argument
        self.problem = problem
        self.others = others

    def renamed(self, name: str, names: dict[str, str] | None = None) -> str:
        """The message with the argument called ``name`` and the others by ``names`` (command-line flags, say)."""
        if not self.others:
            return f"{name} {self.problem}"
        names = names or {}
        return f"{name} {self.problem.format(*(names.get(other, other) for other in self.others))}"
