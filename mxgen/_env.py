"""Process-level settings that must happen before ``import mxnet``.

MXNet's OpenMP pool starts with one thread on small machines unless
``OMP_NUM_THREADS`` is set, which halves throughput on a 2-core box.  We set
it to the number of usable cores when the user has not chosen a value.  This
only has an effect if it runs before mxnet is first imported, which is why
``mxgen/__init__.py`` calls it first thing.
"""
import os
import sys
import warnings

__all__ = ["configure_threads", "configure_onednn", "onednn_isa", "quiet_mxnet_warnings",
           "num_threads", "cpu_model", "cpu_flags", "cpu_vector_isa", "child_env"]


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


def _request_amx():
    """Ask Linux (5.16+) for the AMX tile state; True when this process may use it."""
    import ctypes
    import platform
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        sys_arch_prctl, req_xcomp_perm, xfeature_xtiledata = 158, 0x1023, 18
        return libc.syscall(sys_arch_prctl, req_xcomp_perm, xfeature_xtiledata) == 0
    except (OSError, AttributeError):
        return False


def configure_onednn():
    """Let oneDNN use AMX where the CPU has it (never overrides the user).

    The oneDNN in MXNet 1.9 (v2.4) keeps its AMX kernels behind
    ``DNNL_MAX_CPU_ISA=AVX512_CORE_AMX``, and it does not ask Linux for the
    tile state, so turned on alone they die with SIGILL.  Where the CPU
    reports ``amx_bf16`` and the kernel grants this process the tile state,
    we set the variable; measured on a Sapphire Rapids class Xeon, bfloat16
    convolutions and matrix products then run ~3.7x faster than in float32
    (without it, bfloat16 is float32's speed).  float32 ops keep their
    AVX-512 kernels.  ``MXGEN_ONEDNN_AMX=0`` or a ``DNNL_MAX_CPU_ISA`` of
    your own leaves oneDNN as it is (one that allows AMX gets the tile
    state asked for, which oneDNN 2.4 does not do).
    """
    chosen = os.environ.get("DNNL_MAX_CPU_ISA") or os.environ.get("MKLDNN_MAX_CPU_ISA")
    if chosen:
        # the user's choice (or an mxgen parent's, inherited): if it lets oneDNN use AMX,
        # this process needs the tile state too, or oneDNN's AMX kernels die with SIGILL
        if "AMX" in chosen.upper():
            _request_amx()
        return
    if os.environ.get("MXGEN_ONEDNN_AMX") == "0":
        return
    flags = cpu_flags() or set()
    if {"amx_bf16", "amx_tile"} <= flags and _request_amx():
        os.environ["DNNL_MAX_CPU_ISA"] = "AVX512_CORE_AMX"
        os.environ["MXGEN_ONEDNN_AMX"] = "1"


def onednn_isa():
    """What oneDNN may use: 'amx' when :func:`configure_onednn` (or the
    user) enabled AMX, the user's ``DNNL_MAX_CPU_ISA``, else 'default'."""
    chosen = os.environ.get("DNNL_MAX_CPU_ISA") or os.environ.get("MKLDNN_MAX_CPU_ISA")
    if not chosen:
        return "default"
    return "amx" if "AMX" in chosen.upper() else chosen.lower()


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


def cpu_flags():
    """The CPU's feature flags as a set (None where /proc/cpuinfo is missing)."""
    flags = _cpuinfo_field("flags")
    return None if flags is None else set(flags.split())


def cpu_vector_isa():
    """The widest x86 vector extension the CPU reports: avx512f, avx2+fma, or
    'no avx2' (None where /proc/cpuinfo is missing)."""
    flags = _cpuinfo_field("flags")
    if flags is None:
        return None
    flags = set(flags.split())
    return "avx512f" if "avx512f" in flags else "avx2+fma" if {"avx2", "fma"} <= flags \
        else "no avx2"


def python_command(code=None, module=None):
    """The start of a command line running this Python on ``code`` (``-c``)
    or ``module`` (``-m``) without the working folder on ``sys.path``, so
    that nothing there (a stray ``json.py``, say) is imported: ``-P`` on
    Python 3.11 and later; before, ``-c`` code drops that entry itself, and
    callers start ``-m`` children in a neutral folder."""
    head = [sys.executable, "-P"] if sys.version_info >= (3, 11) else [sys.executable]
    if code is None:
        return head + ["-m", module]
    if len(head) == 1:
        code = "import sys; sys.path[:1] == [''] and sys.path.pop(0); " + code
    return head + ["-c", code]


def child_env(env=None, prepend=None):
    """An environment for a Python child process that imports nothing from
    its working folder: ``PYTHONPATH`` keeps only absolute entries (an empty
    or relative one, such as the empty tail of ``"/a:"``, means the current
    folder); ``prepend`` goes first."""
    env = dict(os.environ if env is None else env)
    if env.get("MXGEN_ONEDNN_AMX") == "1":     # ours: each child asks Linux for itself
        for name in ("MXGEN_ONEDNN_AMX", "DNNL_MAX_CPU_ISA"):
            env.pop(name, None)
    parts = ([prepend] if prepend else []) + env.get("PYTHONPATH", "").split(os.pathsep)
    kept = [p for p in parts if p and os.path.isabs(p)]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        env.pop("PYTHONPATH", None)
    return env
