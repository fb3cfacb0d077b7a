"""Loading mxgen's native operators (``kernels/``, built with CMake).

The library is looked for, in order: ``$MXGEN_KERNELS_LIB``, next to this file
(where ``pip install -e .`` builds it), and ``build/`` at the repository root
(a manual ``cmake -S . -B build && cmake --build build``).  It is loaded once;
if it is missing or fails to load, one warning says why and mxgen uses its
pure-MXNet code.  ``MXGEN_NATIVE=0`` turns the native ops off (for
comparisons).  ``mxgen info`` reports what loaded and from where.

The library holds its kernels five times, for AMX (bfloat16 tiles),
AVX-512 with AVX512_BF16, AVX-512, AVX2+FMA and the baseline x86-64 ISA,
and uses the best one the CPU runs (``isa()``); ``MXGEN_ISA=avx512_bf16``,
``avx512``, ``avx2`` or ``generic`` (set before the library loads) forces a
lower one, so every path can be tested and timed on one machine.
"""
import glob
import os
import warnings

__all__ = ["load", "available", "status", "OPS", "ISAS", "BF16_ISAS", "disabled", "isa",
           "build_info", "set_isa", "supported_isas", "bf16_hardware"]

OPS = ("mxgen_sample", "mxgen_char_rnn_generate", "mxgen_lstm", "mxgen_gru", "mxgen_dropout",
       "mxgen_adam_update")
_HERE = os.path.dirname(os.path.abspath(__file__))
ISAS = ("amx_bf16", "avx512_bf16", "avx512", "avx2", "generic")   # best first
_state = {"tried": False, "path": None, "error": None, "ops": (), "cdll": None}


def disabled():
    return os.environ.get("MXGEN_NATIVE", "1").strip().lower() in ("0", "off", "false", "no")


def _candidates():
    env = os.environ.get("MXGEN_KERNELS_LIB")
    if env:
        yield env
    for pattern in (os.path.join(_HERE, "libmxgen_kernels*.so"),
                    os.path.join(os.path.dirname(_HERE), "build", "libmxgen_kernels.so")):
        yield from sorted(glob.glob(pattern))


def load(quiet=False):
    """Load the library once; returns True if its operators are available."""
    if _state["tried"]:
        return bool(_state["ops"])
    _state["tried"] = True
    if disabled():
        _state["error"] = "disabled by MXGEN_NATIVE=0"
        return False
    import mxnet as mx
    path = next(iter(_candidates()), None)
    if path is None:
        _state["error"] = ("library not built (pip install -e . builds it when CMake and a C++"
                           " compiler are present)")
    else:
        try:
            mx.library.load(os.path.abspath(path), verbose=False)
            _state["path"] = os.path.abspath(path)
            _state["ops"] = tuple(op for op in OPS if hasattr(mx.nd, op))
            if len(_state["ops"]) != len(OPS):
                _state["error"] = "library loaded but lacks %s" % (set(OPS) - set(_state["ops"]))
        except Exception as err:  # a broken or incompatible build
            from .errors import one_line
            _state["error"] = "failed to load %s: %s" % (path, one_line(err))
    if _state["error"] and not quiet and not disabled():
        warnings.warn("mxgen native kernels unavailable (%s); using pure MXNet"
                      % _state["error"], stacklevel=2)
    return len(_state["ops"]) == len(OPS)


def _lib():
    """The loaded library's plain C entry points (ctypes), or None."""
    if not load(quiet=True) or _state["path"] is None:
        return None
    if _state["cdll"] is None:
        import ctypes
        lib = ctypes.CDLL(_state["path"])   # the handle mx.library.load opened
        for name in ("mxgen_isa", "mxgen_isa_best", "mxgen_isa_note", "mxgen_build_info"):
            getattr(lib, name).restype = ctypes.c_char_p
        lib.mxgen_set_isa.argtypes = [ctypes.c_char_p]
        _state["cdll"] = lib
    return _state["cdll"]


def isa():
    """The instruction set the native kernels run with (``avx512``, ``avx2``,
    ``generic``), or None when they are not loaded."""
    lib = _lib()
    return lib.mxgen_isa().decode() if lib else None


BF16_ISAS = ("amx_bf16", "avx512_bf16")   # paths that multiply bfloat16 in hardware


def bf16_hardware():
    """Whether the kernels in use multiply bfloat16 with hardware
    instructions (AMX tiles or VDPBF16PS) rather than emulating them."""
    return isa() in BF16_ISAS


def supported_isas():
    """The kernel paths this CPU can run, best first (empty if not loaded)."""
    lib = _lib()
    if lib is None:
        return ()
    best = lib.mxgen_isa_best().decode()
    return ISAS[ISAS.index(best):]


def build_info():
    """``{'isa', 'cpu_best', 'note', 'build'}`` of the loaded library, or None."""
    lib = _lib()
    if lib is None:
        return None
    return {"isa": lib.mxgen_isa().decode(), "cpu_best": lib.mxgen_isa_best().decode(),
            "note": lib.mxgen_isa_note().decode(), "build": lib.mxgen_build_info().decode()}


def set_isa(name):
    """Switch the kernels to a path this CPU supports (tests and benchmarks;
    users set ``MXGEN_ISA`` instead).  Returns the previous one."""
    from .errors import MXGenError
    lib = _lib()
    if lib is None:
        raise MXGenError("native kernels not loaded: %s" % (status()[2],))
    previous = isa()
    if lib.mxgen_set_isa(str(name).encode()) != 0:
        raise MXGenError("kernel ISA %r not available on this CPU (it runs %s)"
                         % (name, ", ".join(supported_isas())))
    return previous


def available(op=None):
    """True if the native ops (or one named op) are loaded and not disabled."""
    if disabled():
        return False
    load()
    return bool(_state["ops"]) if op is None else op in _state["ops"]


def status():
    """``(path or None, ops loaded, reason if not)`` for ``mxgen info``."""
    load(quiet=True)
    error = "disabled by MXGEN_NATIVE=0" if disabled() else _state["error"]
    return _state["path"], _state["ops"], error
