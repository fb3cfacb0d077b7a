"""Config dataclass fields that carry their own help text.

One source of truth per option: every config dataclass (a training
command's, generation's, an export's, ...) declares each setting's default,
help and choices with :func:`field`, and ``mxgen.cli.common.add_config_args``
turns every field into a command-line flag that shows the real default.
"""
import dataclasses

from .errors import MXGenError

__all__ = ["field", "check_ranges", "AT_LEAST_1", "AT_LEAST_0", "POSITIVE",
           "FRACTION", "PRECISIONS"]

AT_LEAST_1 = (lambda v: v >= 1, ">= 1")
AT_LEAST_0 = (lambda v: v >= 0, ">= 0")
POSITIVE = (lambda v: v > 0, "> 0")
FRACTION = (lambda v: 0 <= v < 1, "in [0, 1)")
# every --dtype's choices (see mxgen.nn.precision)
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def field(default, help, group="training", choices=None, flags=None, positional=False,
          required=False, exclusive=None):
    """A dataclass field with its command-line form as metadata: ``help``, a
    ``group`` of the ``--help`` listing, optional ``choices``, other option
    strings (``flags``, e.g. ``("-n", "--num-workers")``), ``positional``
    (a trailing list, e.g. a command line), ``required``, and ``exclusive``:
    fields naming the same group are mutually exclusive (one of them
    required when any of them is ``required``)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "group": group, "choices": choices, "flags": flags,
        "positional": positional, "required": required, "exclusive": exclusive})


def check_ranges(cfg, rules):
    """Raise MXGenError naming the flag and the value for the first field of
    ``rules`` (``{name: (predicate, description)}``) out of range; ``None``
    (an unset optional) passes."""
    for name, (ok, what) in rules.items():
        value = getattr(cfg, name)
        if value is None:
            continue
        try:
            good = ok(value) and value == value          # NaN is never in range
        except TypeError:
            good = False
        if not good:
            raise MXGenError("--%s must be %s, got %r" % (name.replace("_", "-"), what, value))
