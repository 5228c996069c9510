"""Error kinds that decide a command's exit code.

`InputError` is bad input or configuration (exit 2): the user must fix a file or a value, and
its message names which and what was expected. Anything else that stops a stage is a failure
of the stage itself (exit 1).
"""


class InputError(ValueError):
    """Bad params, data, checkpoint or model file; the message names it."""


class ResourceError(RuntimeError):
    """A stage that ran out of a resource it cannot make more of (GPU memory): exit 1 with one
    message saying what to change, no traceback."""
