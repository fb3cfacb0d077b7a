"""mxgen: fast generative models on Apache MXNet Gluon.

mxgen logs through the ``mxgen`` logger (``logging``) and prints nothing
unless the program asks: ``logging.basicConfig(level=logging.INFO)`` shows
the training log; the ``mxgen`` command installs its own handler.
"""
import logging

from . import _env

_env.configure_threads()
_env.configure_onednn()
_env.quiet_mxnet_warnings()

__version__ = "0.1.0"

logging.getLogger("mxgen").addHandler(logging.NullHandler())

from .errors import MXGenError  # noqa: E402

__all__ = ["__version__", "MXGenError"]
