"""mxgen: fast generative models on Apache MXNet Gluon."""
from . import _env

_env.configure_threads()
_env.quiet_mxnet_warnings()

__version__ = "0.1.0"

from .errors import MXGenError  # noqa: E402

__all__ = ["__version__", "MXGenError"]
