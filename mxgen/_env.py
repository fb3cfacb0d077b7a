"""Process-level settings that must happen before ``import mxnet``.

MXNet's OpenMP pool starts with one thread on small machines unless
``OMP_NUM_THREADS`` is set, which halves throughput on a 2-core box.  We set
it to the number of usable cores when the user has not chosen a value.  This
only has an effect if it runs before mxnet is first imported, which is why
``mxgen/__init__.py`` calls it first thing.
"""
import os
import warnings

__all__ = ["configure_threads", "quiet_mxnet_warnings", "num_threads", "cpu_model",
           "cpu_vector_isa", "child_env"]


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def configure_threads():
    """Default ``OMP_NUM_THREADS`` to the usable core count (never overrides)."""
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(_usable_cores())
        os.environ["MXGEN_THREADS_DEFAULTED"] = "1"


def num_threads():
    """The OpenMP thread count MXNet will use (as configured by the env)."""
    return int(os.environ.get("OMP_NUM_THREADS", "1"))


def quiet_mxnet_warnings():
    """Hide the DeprecationWarnings mxnet 1.9 emits against numpy/distutils."""
    for module in ("mxnet", "gluoncv", r"mxnet\..*", r"gluoncv\..*"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
    warnings.filterwarnings("ignore", message=".*np\\.bool.*")
    warnings.filterwarnings("ignore", message=".*distutils.*")
    warnings.filterwarnings("ignore", message=".*LooseVersion.*")


def _cpuinfo_field(name):
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model():
    """The CPU's model name (Linux's /proc/cpuinfo; the platform's guess elsewhere)."""
    import platform
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_vector_isa():
    """The widest x86 vector extension the CPU reports: avx512f, avx2+fma, or
    'no avx2' (None where /proc/cpuinfo is missing)."""
    flags = _cpuinfo_field("flags")
    if flags is None:
        return None
    flags = set(flags.split())
    return "avx512f" if "avx512f" in flags else "avx2+fma" if {"avx2", "fma"} <= flags \
        else "no avx2"


def child_env(env=None, prepend=None):
    """An environment for a Python child process that imports nothing from
    its working folder: ``PYTHONPATH`` keeps only absolute entries (an empty
    or relative one, such as the empty tail of ``"/a:"``, means the current
    folder); ``prepend`` goes first."""
    env = dict(os.environ if env is None else env)
    parts = ([prepend] if prepend else []) + env.get("PYTHONPATH", "").split(os.pathsep)
    kept = [p for p in parts if p and os.path.isabs(p)]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        env.pop("PYTHONPATH", None)
    return env
