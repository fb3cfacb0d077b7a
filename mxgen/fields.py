"""Config dataclass fields that carry their own help text.

One source of truth per option: a training config's fields declare their
default, help and choices here, and ``mxgen.cli.common.add_config_args``
turns every field into a command-line flag that shows the real default.
"""
import dataclasses

from .errors import MXGenError

__all__ = ["field", "help_of", "check_ranges", "AT_LEAST_1", "AT_LEAST_0", "POSITIVE",
           "FRACTION"]

AT_LEAST_1 = (lambda v: v >= 1, ">= 1")
AT_LEAST_0 = (lambda v: v >= 0, ">= 0")
POSITIVE = (lambda v: v > 0, "> 0")
FRACTION = (lambda v: 0 <= v < 1, "in [0, 1)")


def field(default, help, group="training", choices=None):
    """A dataclass field with ``help``, a ``group`` of the ``--help`` listing
    and optional ``choices`` as metadata."""
    return dataclasses.field(default=default,
                             metadata={"help": help, "group": group, "choices": choices})


def help_of(config_cls, name):
    """The help text of one field (empty if it has none)."""
    for f in dataclasses.fields(config_cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)


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
