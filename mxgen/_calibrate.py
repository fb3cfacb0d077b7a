"""Measured kernel choices: what ``'auto'`` runs on this machine.

mxgen's native kernels beat MXNet's own operators on some CPUs and lose on
others (a portable build, an old CPU, a shape they were not tuned for), so
``'auto'`` does not trust that the library loaded: it times both kernels on
the shape about to be trained, a few seconds the first time, and keeps the
faster one.  The timing runs in a child process, so it never touches the
caller's random streams, memory or thread pools.  Ties (within ``MARGIN``) go to MXNet's own operator.  Results
are cached in ``$MXGEN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/mxgen`` or
``~/.cache/mxgen``), keyed by the CPU model, the kernel path, the library
build, mxnet's version, the thread count and the shape, so a new CPU, a
rebuilt library or another ``MXGEN_ISA`` measures again.  ``MXGEN_CALIBRATE=
refresh`` measures again regardless.  Every decision carries a one-line
reason for the training log.
"""
import hashlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

from . import _native

__all__ = ["Decision", "decide", "explain_impl", "cache_file", "machine_key", "run_measure",
           "MARGIN"]

MARGIN = 0.03          # native must be >= 3% faster to be chosen
Decision = namedtuple("Decision", "impl native_ms fallback_ms cached reason")


def cache_file():
    root = os.environ.get("MXGEN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "mxgen")
    return os.path.join(root, "kernel-choices.json")


_LIB_DIGEST = {}
_DECIDED = {}          # (cache file, key) -> Decision, for repeated questions in one process


def machine_key():
    """What a measurement depends on besides the shape."""
    import mxnet as mx
    from ._env import cpu_model, num_threads, onednn_isa
    path = _native.status()[0]
    if path and path not in _LIB_DIGEST:
        with open(path, "rb") as f:
            _LIB_DIGEST[path] = hashlib.sha256(f.read()).hexdigest()[:16]
    return "|".join([cpu_model(), "isa=%s" % _native.isa(), "lib=%s" % _LIB_DIGEST.get(path),
                     "mxnet=%s" % mx.__version__, "threads=%d" % num_threads(),
                     "onednn=%s" % onednn_isa()])


def _load(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}   # missing or damaged: measure again


def _store(path, key, record):
    """Add one record; written atomically, and a cache we cannot write is no error."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = _load(path)
        data[key] = record
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".choices-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def run_measure(target, kwargs, timeout=300):
    """``target`` ("module:function") called with ``kwargs`` in a child
    process; returns what it returns (a JSON-able value)."""
    from ._env import child_env, python_command
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = child_env(prepend=root)
    if _native.isa():
        env["MXGEN_ISA"] = _native.isa()   # the path in use here, even if set_isa chose it
    # -P (Python 3.11+) and a neutral working folder: nothing in the caller's
    # current folder (a stray json.py, say) is imported by the child
    proc = subprocess.run(python_command(module="mxgen._calibrate") + [target,
                          json.dumps(kwargs)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=os.path.abspath(os.sep))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
        raise RuntimeError(tail)
    return json.loads(lines[-1])


def explain_impl(setting, impl, choices, fallback, op, subject, contexts=None, why_not=None,
                 measure=None):
    """The rule every ``*_impl`` setting follows, with a one-line reason.

    ``fallback`` is MXNet's own operator; ``'native'`` is mxgen's ``op`` (CPU
    only, loaded); ``'auto'`` is native only where it can run AND measures
    faster here: ``measure`` is ``(kind, shape, target, native_name,
    fallback_name)`` for :func:`decide` (without it, ``'auto'`` keeps
    MXNet's operator).  ``subject`` names the native op(s) in messages;
    ``why_not`` is a reason the caller's model cannot use them at all.  An
    impossible ``'native'`` or an unknown value is an error.  Returns
    ``(impl, reason)``.
    """
    import mxnet as mx
    from .errors import MXGenError
    if impl not in choices:
        raise MXGenError("unknown %s %r; choose from %s" % (setting, impl, ", ".join(choices)))
    if impl == fallback:
        return fallback, "%s=%s given" % (setting, impl)
    why = why_not
    if why is None and not all(c.device_type == "cpu" for c in (contexts or [mx.cpu()])):
        why = "%s on CPU only" % subject
    elif why is None and not _native.available(op):
        why = _native.status()[2] or "%s not loaded" % op
    if why is not None:
        if impl == "native":
            raise MXGenError("%s='native' unavailable: %s" % (setting, why))
        return fallback, why
    if impl == "native":
        return "native", "%s=native given (%s kernels)" % (setting, _native.isa())
    if measure is None:
        raise ValueError("%s='auto' measures both kernels and needs the shape to time" % setting)
    kind, shape, target, native_name, fallback_name = measure
    decision = decide(kind, shape, target, native_name, fallback_name, fallback)
    return decision.impl, decision.reason


def decide(kind, shape, target, native_name, fallback_name, fallback, label=None):
    """Choose ``'native'`` or ``fallback`` for ``kind`` on ``shape`` (a dict).

    ``target`` ("module:function", called with ``shape`` as keyword
    arguments, in a child process) returns ``(native_ms, fallback_ms)``; it
    runs only when the cache has no answer for this machine and shape.
    ``label`` names what runs the first candidate in the reason (default:
    mxgen's kernel path).
    """
    key = machine_key() + "|%s|%s" % (kind, json.dumps(shape, sort_keys=True))
    path = cache_file()
    refresh = os.environ.get("MXGEN_CALIBRATE") == "refresh"
    if not refresh and (path, key) in _DECIDED:       # asked before in this process
        return _DECIDED[(path, key)]
    record = None if refresh else _load(path).get(key)
    cached = isinstance(record, dict) and {"native_ms", "fallback_ms"} <= set(record)
    if not cached:
        try:
            native_ms, fallback_ms = (float(v) for v in run_measure(target, shape))
            if not (0 < native_ms < float("inf") and 0 < fallback_ms < float("inf")):
                raise ValueError("timings %r, %r" % (native_ms, fallback_ms))
        except (RuntimeError, ValueError, TypeError, OSError, subprocess.TimeoutExpired) as err:
            return Decision(fallback, None, None, False,
                            "could not time %s against %s (%s); kept %s"
                            % (native_name, fallback_name, err, fallback_name))
        record = {"native_ms": round(native_ms, 3), "fallback_ms": round(fallback_ms, 3),
                  "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
        _store(path, key, record)
    native_ms, fallback_ms = float(record["native_ms"]), float(record["fallback_ms"])
    impl = "native" if native_ms < (1 - MARGIN) * fallback_ms else fallback
    ratio = fallback_ms / native_ms if native_ms > 0 else float("inf")
    verdict = ("%.2fx faster" % ratio if ratio >= 1 else "%.2fx slower" % (1 / ratio))
    reason = ("%s (%s) %s than %s here (%.1f vs %.1f ms, %s)"
              % (native_name, label or "%s kernels" % _native.isa(), verdict, fallback_name, native_ms, fallback_ms,
                 "cached, measured %s" % record.get("measured", "?") if cached
                 else "measured now"))
    decision = Decision(impl, native_ms, fallback_ms, cached, reason)
    _DECIDED[(path, key)] = decision._replace(
        cached=True, reason=reason.replace("measured now",
                                           "cached, measured %s" % record.get("measured", "?")))
    return decision


def _main(argv):
    module, func = argv[0].split(":")
    if not _native.load(quiet=True):
        raise SystemExit("native kernels unavailable: %s" % (_native.status()[2],))
    result = getattr(importlib.import_module(module), func)(**json.loads(argv[1]))
    print(json.dumps(list(result)))


if __name__ == "__main__":
    _main(sys.argv[1:])
