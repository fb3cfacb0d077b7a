"""``mxgen <command>``: one module per command, each with get_parser() and main(args)."""
import argparse
import importlib
import os
import sys

from .. import __version__
from ..errors import MXGenError, one_line
from .common import OutputConfig, add_config_args, configure_logging

__all__ = ["main", "launch", "COMMANDS"]

# command name -> module under mxgen.cli
COMMANDS = {
    "train-text": "train_text",
    "generate": "generate",
    "train-gan": "train_gan",
    "sample-gan": "sample_gan",
    "stylize": "stylize",
    "train-style": "train_style",
    "export": "export",
    "launch": "launch",
    "info": "info",
    "bench": "bench",
}


class _Parser(argparse.ArgumentParser):
    """Usage errors in the same one-line form as every other error (exit 2)."""

    def error(self, message):
        self.exit(2, "mxgen: error: %s (see: %s --help)\n" % (message, self.prog))


def _build_parser():
    parser = _Parser(prog="mxgen", description="Fast generative models on MXNet.")
    parser.add_argument("-V", "--version", action="version", version="mxgen " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True
    for name, module in COMMANDS.items():
        mod = importlib.import_module("mxgen.cli." + module)
        child = mod.get_parser(sub.add_parser(name, help=mod.__doc__.strip().splitlines()[0],
                                              description=mod.__doc__))
        add_config_args(child, OutputConfig)
        child.set_defaults(_main=mod.main)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["--version"], ["-V"]):   # answered without importing MXNet
        print("mxgen " + __version__)
        return 0
    from .launch import heartbeat
    heartbeat()              # a no-op unless started by `mxgen launch`
    parser = _build_parser()
    args = parser.parse_args(argv)
    configure_logging(args)
    try:
        return args._main(args) or 0
    except MXGenError as err:
        print("mxgen: error: %s" % err, file=sys.stderr)
        return _exit_worker(2)
    except KeyboardInterrupt:
        print("mxgen: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # not anticipated: keep it to one line where it says enough
        import mxnet as mx
        if isinstance(err, mx.base.MXNetError):
            print("mxgen: error: MXNet failed: %s" % one_line(err), file=sys.stderr)
            return _exit_worker(2)
        if isinstance(err, OSError):         # disk full, permissions, a vanished file
            where = " (%s)" % err.filename if getattr(err, "filename", None) else ""
            print("mxgen: error: %s%s" % (err.strerror or err, where), file=sys.stderr)
            return _exit_worker(2)
        if os.environ.get("DMLC_ROLE") == "worker":
            # a bug: show where, then leave at once, so that the launcher
            # stops the other processes instead of them waiting for this one
            import traceback
            traceback.print_exc()
            return _exit_worker(1)
        raise


def _exit_worker(code):
    """A failed worker of a distributed launch exits at once: at a normal exit
    MXNet waits in the kvstore's shutdown barrier for workers that will never
    get there, and the launcher would not see it die."""
    if os.environ.get("DMLC_ROLE") == "worker":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def launch(argv=None):
    """The ``mxgen-launch`` console script: ``mxgen launch`` under its own name."""
    return main(["launch"] + list(sys.argv[1:] if argv is None else argv))
