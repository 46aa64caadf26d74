"""The one exception type vjx raises for user mistakes.

Every message names the thing at fault (a file, a flag, an argument) and says what to do, so the
command-line scripts can print it as one line and exit with code 2.
"""


class VjxError(Exception):
    """Bad input to vjx: a missing file, an unknown name, a shape that does not fit."""
