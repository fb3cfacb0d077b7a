"""The one exception type that the CLI turns into a one-line error."""

__all__ = ["MXGenError", "one_line"]


class MXGenError(Exception):
    """A user-facing error: bad input, bad checkpoint, bad device.

    The message names the problem (file, line, value) and is printed as-is by
    the CLI, without a traceback.
    """


def one_line(err, limit=300):
    """The line of an exception's message that says what went wrong.

    MXNet's errors carry a C++ traceback ("Traceback (most recent call
    last):", "  File ...", then "MXNetError: Check failed: ..."); the last
    line that is not part of it is the reason."""
    lines = [line.strip() for line in str(err).strip().splitlines()
             if line.strip() and not line.startswith(("Traceback", "  File", "    "))]
    text = lines[-1] if lines else type(err).__name__
    for prefix in ("MXNetError: ", "Check failed: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text[:limit]
