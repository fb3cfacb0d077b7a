"""Print versions, threads, devices, MXNet runtime features, and which
native kernels run (instruction set, build)."""
import os
import platform
from dataclasses import dataclass

from .common import add_config_args


@dataclass
class InfoCommand:
    """``mxgen info`` has no settings of its own."""


CONFIG = InfoCommand


def get_parser(parser):
    return add_config_args(parser, CONFIG)


def main(args):
    import mxnet as mx
    import numpy as np

    from .. import __version__
    from .._env import cpu_model, cpu_vector_isa, num_threads
    from ..utils.context import num_gpus

    rows = [
        ("mxgen", __version__),
        ("python", platform.python_version()),
        ("mxnet", mx.__version__),
        ("numpy", np.__version__),
    ]
    try:
        import gluoncv
        rows.append(("gluoncv", gluoncv.__version__))
    except Exception as err:  # optional at run time
        rows.append(("gluoncv", "not importable (%s)" % type(err).__name__))
    rows += [
        ("OMP_NUM_THREADS", "%d%s" % (num_threads(), "" if "MXGEN_THREADS_DEFAULTED" not in
                                      os.environ else " (mxgen default)")),
        ("cpu", "%s (%s)" % (cpu_model(), cpu_vector_isa() or "isa unknown")),
        ("cpu cores", str(os.cpu_count())),
        ("gpus", str(num_gpus())),
    ]
    features = mx.runtime.Features()
    enabled = sorted(name for name in features.keys() if features.is_enabled(name))
    rows.append(("mxnet features", ", ".join(enabled)))
    from .. import _native
    path, ops, error = _native.status()
    rows.append(("native ops", ", ".join(ops) if ops else "none (%s)" % error))
    if path:
        rows.append(("native library", path))
        info = _native.build_info()
        rows.append(("native isa", "%s (this CPU runs %s)%s" % (
            info["isa"], ", ".join(_native.supported_isas()),
            "; " + info["note"] if info["note"] else "")))
        rows.append(("native build", info["build"]))
    from .._env import onednn_isa
    from ..nn.precision import bf16_cpu
    why_not = bf16_cpu()
    rows.append(("bfloat16", "no: %s" % why_not if why_not else "oneDNN %s%s" % (
        "with AMX (mxgen enabled it)" if os.environ.get("MXGEN_ONEDNN_AMX") == "1" else
        "isa %s" % onednn_isa(), "; native %s" % ("in hardware" if _native.available() and
                                                  _native.bf16_hardware() else "emulated"))))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print("%s  %s" % (key.ljust(width), value))
    return 0
