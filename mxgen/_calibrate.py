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

__all__ = ["Decision", "decide", "cache_file", "machine_key", "interleaved_ms", "run_measure",
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
    from . import _native
    from ._env import cpu_model, num_threads
    path = _native.status()[0]
    if path not in _LIB_DIGEST:
        with open(path, "rb") as f:
            _LIB_DIGEST[path] = hashlib.sha256(f.read()).hexdigest()[:16]
    return "|".join([cpu_model(), "isa=%s" % _native.isa(), "lib=%s" % _LIB_DIGEST[path],
                     "mxnet=%s" % mx.__version__, "threads=%d" % num_threads()])


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


def interleaved_ms(fns, rounds=7, warmup=2):
    """Fastest ms of each zero-argument function, run round-robin: a busy
    neighbour or a slow phase of the machine only ever adds time, and hits
    the candidates alike.  Each function must block until done."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [min(t) * 1e3 for t in times]


def run_measure(target, kwargs, timeout=300):
    """``target`` ("module:function") called with ``kwargs`` in a child
    process; returns what it returns (a JSON-able value)."""
    from . import _native
    from ._env import child_env
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = child_env(prepend=root)
    if _native.isa():
        env["MXGEN_ISA"] = _native.isa()   # the path in use here, even if set_isa chose it
    # -P and a neutral working folder: nothing in the caller's current folder
    # (a stray json.py, say) is imported by the child
    proc = subprocess.run([sys.executable, "-P", "-m", "mxgen._calibrate", target,
                           json.dumps(kwargs)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=os.path.abspath(os.sep))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
        raise RuntimeError(tail)
    return json.loads(lines[-1])


def decide(kind, shape, target, native_name, fallback_name, fallback):
    """Choose ``'native'`` or ``fallback`` for ``kind`` on ``shape`` (a dict).

    ``target`` ("module:function", called with ``shape`` as keyword
    arguments, in a child process) returns ``(native_ms, fallback_ms)``; it
    runs only when the cache has no answer for this machine and shape.
    """
    from . import _native
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
    reason = ("%s (%s kernels) %s than %s here (%.1f vs %.1f ms, %s)"
              % (native_name, _native.isa(), verdict, fallback_name, native_ms, fallback_ms,
                 "cached, measured %s" % record.get("measured", "?") if cached
                 else "measured now"))
    decision = Decision(impl, native_ms, fallback_ms, cached, reason)
    _DECIDED[(path, key)] = decision._replace(
        cached=True, reason=reason.replace("measured now",
                                           "cached, measured %s" % record.get("measured", "?")))
    return decision


def _main(argv):
    module, func = argv[0].split(":")
    import mxgen  # noqa: F401  (threads before mxnet, as in the parent)
    from mxgen import _native
    if not _native.load(quiet=True):
        raise SystemExit("native kernels unavailable: %s" % (_native.status()[2],))
    result = getattr(importlib.import_module(module), func)(**json.loads(argv[1]))
    print(json.dumps(list(result)))


if __name__ == "__main__":
    _main(sys.argv[1:])
