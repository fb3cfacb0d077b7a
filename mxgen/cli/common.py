"""Command-line flags generated from training config dataclasses."""
import dataclasses
import typing

__all__ = ["add_config_args", "config_from_args"]

_GROUP_TITLES = {"model": "model", "training": "training", "run": "run"}


def _base_type(annotation):
    """``Optional[int]`` -> int; ``int`` -> int."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def _flag(name):
    return "--" + name.replace("_", "-")


def add_config_args(parser, config_cls):
    """Add one flag per field of ``config_cls`` (help, choices and groups from
    the field metadata, the real default shown).  Every flag defaults to
    ``None`` so that :func:`config_from_args` knows which the user gave."""
    groups = {name: parser.add_argument_group(title) for name, title in _GROUP_TITLES.items()}
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        group_name = meta.get("group", "training")
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(_GROUP_TITLES.get(group_name,
                                                                             group_name))
        group = groups[group_name]
        help_text = meta.get("help", "")
        kind = _base_type(f.type)
        if kind is bool:
            if f.default:        # on by default: the flag turns it off
                group.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name,
                                   action="store_false", default=None,
                                   help="no %s (default: on)" % help_text)
            else:
                group.add_argument(_flag(f.name), dest=f.name, action="store_true",
                                   default=None, help=help_text)
            continue
        shown = "none" if f.default is None else f.default
        group.add_argument(_flag(f.name), dest=f.name, type=kind, default=None,
                           choices=meta.get("choices"), metavar=None if meta.get("choices")
                           else f.name.upper(),
                           help="%s (default: %s)" % (help_text, shown))
    return parser


def config_from_args(config_cls, args):
    """``(config, explicit)``: the config with every flag the user gave, and
    the names of those fields."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
             if getattr(args, f.name, None) is not None}
    return config_cls(**given), set(given) - {"progress"}
