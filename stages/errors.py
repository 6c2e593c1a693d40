"""The one exception type a stage raises for bad input; the CLI prints it as one line and exits non-zero."""


class StageError(Exception):
    """A user-fixable problem: the message names the file/line/field and what to do."""

    exit_code = 2
