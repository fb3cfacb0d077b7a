"""Command-line flags generated from config dataclasses.

Every command's settings are one config dataclass (its fields declared with
:func:`mxgen.fields.field`); this module turns each field into a flag whose
``--help`` shows the real default, and the parsed flags back into the
config.  ``--quiet`` / ``--verbose`` (:class:`OutputConfig`) come with every
command.
"""
import dataclasses
import logging
import sys
import typing
import warnings
from dataclasses import dataclass

from ..fields import field

__all__ = ["add_config_args", "config_from_args", "OutputConfig", "configure_logging"]

_GROUP_TITLES = {"model": "model", "training": "training", "run": "run"}


@dataclass
class OutputConfig:
    """What every command prints."""
    quiet: bool = field(False, "print only warnings and errors", group="output",
                        exclusive="verbosity")
    verbose: bool = field(False, "print debugging detail too", group="output",
                          exclusive="verbosity")


def configure_logging(args):
    """The CLI's handler for the ``mxgen`` logger: messages as they are, to
    standard output (warnings and errors to standard error)."""
    level = logging.WARNING if getattr(args, "quiet", None) else (
        logging.DEBUG if getattr(args, "verbose", None) else logging.INFO)
    logger = logging.getLogger("mxgen")
    for handler in list(logger.handlers):
        if getattr(handler, "_mxgen_cli", False):
            logger.removeHandler(handler)
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._mxgen_cli = True
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    # warnings (skipped images, an upscaled style image) as one plain line
    warnings.formatwarning = lambda message, *_args, **_kw: "mxgen: warning: %s\n" % message
    if level > logging.WARNING:
        warnings.simplefilter("ignore")
    return level


def _base_type(annotation):
    """``Optional[int]`` -> int; ``int`` -> int."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def _flags(f):
    return f.metadata.get("flags") or ("--" + f.name.replace("_", "-"),)


def add_config_args(parser, config_cls):
    """Add one flag per field of ``config_cls`` (help, choices, groups,
    option strings, positional and required fields, mutually exclusive
    groups, all from the field metadata; the real default shown).  Every
    flag defaults to ``None`` so that :func:`config_from_args` knows which
    the user gave."""
    groups, exclusive = {}, {}
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        help_text = meta.get("help", "")
        if meta.get("positional"):
            parser.add_argument(f.name, nargs="+", default=None, help=help_text)
            continue
        group_name = meta.get("group", "training")
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(_GROUP_TITLES.get(group_name,
                                                                             group_name))
        target = groups[group_name]
        if meta.get("exclusive"):
            key = meta["exclusive"]
            if key not in exclusive:
                required = any(g.metadata.get("exclusive") == key and g.metadata.get("required")
                               for g in dataclasses.fields(config_cls))
                exclusive[key] = target.add_mutually_exclusive_group(required=required)
            target = exclusive[key]
        kind = _base_type(f.type)
        if kind is bool:
            if f.default is None:    # unset: something else decides (e.g. a recipe)
                flag = "--" + f.name.replace("_", "-")
                target.add_argument(flag, dest=f.name, action="store_true", default=None,
                                    help=help_text)
                target.add_argument("--no-" + flag[2:], dest=f.name, action="store_false",
                                    default=None, help="turn %s off" % flag)
            elif f.default:        # on by default: the flag turns it off
                target.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name,
                                    action="store_false", default=None,
                                    help="no %s (default: on)" % help_text)
            else:
                target.add_argument(*_flags(f), dest=f.name, action="store_true",
                                    default=None, help=help_text)
            continue
        required = bool(meta.get("required")) and not meta.get("exclusive")
        shown = "" if required or meta.get("exclusive") or "default:" in help_text else \
            " (default: %s)" % ("none" if f.default is None else f.default)
        target.add_argument(*_flags(f), dest=f.name, type=kind, default=None,
                            required=required, choices=meta.get("choices"),
                            metavar=None if meta.get("choices") else f.name.upper(),
                            help=help_text + shown)
    return parser


def config_from_args(config_cls, args):
    """``(config, explicit)``: the config with every flag the user gave, and
    the names of those fields."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
             if getattr(args, f.name, None) is not None}
    return config_cls(**given), set(given) - {"progress"}
