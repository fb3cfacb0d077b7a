"""The one exception type that the CLI turns into a one-line error."""

__all__ = ["MXGenError"]


class MXGenError(Exception):
    """A user-facing error: bad input, bad checkpoint, bad device.

    The message names the problem (file, line, value) and is printed as-is by
    the CLI, without a traceback.
    """
