"""Shared machinery for the benchmark suite (pytest-benchmark).

Each case times a baseline and a candidate in the same process and records
both throughputs and their ratio in ``benchmark.extra_info``; the candidate is
what pytest-benchmark itself times.  Every timed call ends with
``mx.nd.waitall()`` so no number counts queued, unfinished work, and warm-up
calls (graph building, memory planning) are never timed.

Quick mode (``--quick`` or ``MXGEN_BENCH_QUICK=1``) uses fewer rounds and
smaller workloads so CI can afford it; its numbers are for smoke, not records.
"""
import os
import resource
import time

import pytest

import mxgen  # noqa: F401  (thread defaults before mxnet)
from mxgen._env import cpu_model  # noqa: F401  (also used by test_peak.py)
import mxnet as mx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("MXGEN_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="small, fast benchmark settings")


@pytest.fixture(scope="session")
def quick(request):
    return request.config.getoption("--quick") or os.environ.get("MXGEN_BENCH_QUICK") == "1"


@pytest.fixture(scope="session")
def text_corpus():
    """Real text if ../shared/data is present, else this Python's stdlib sources."""
    path = os.path.join(DATA, "text", "nietzsche.txt")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    from mxgen.data.corpus import load_text
    return load_text("stdlib", max_chars=600000)


def native_isa():
    from mxgen import _native
    return _native.isa() if _native.available() else "none"


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synced(fn):
    def call():
        out = fn()
        mx.nd.waitall()
        return out
    return call


def interleaved_medians(fns, rounds, warmup):
    """Median wall time of each function (synced), timed round-robin so that
    drift in machine speed affects all of them alike; warm-up calls untimed."""
    fns = {name: synced(fn) for name, fn in fns.items()}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def nearby_peak(repeats=3):
    """The matrix-multiply peak now (GFLOP/s, fastest of a few 2048^3 oneDNN
    FullyConnected calls): measured beside a case, so its fraction of peak
    is taken in the same phase of a machine whose speed drifts."""
    n = 2048
    a = mx.nd.random.normal(shape=(n, n))
    b = mx.nd.random.normal(shape=(n, n))
    fc = synced(lambda: mx.nd.FullyConnected(a, b, no_bias=True, num_hidden=n))
    fc()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fc()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best / 1e9


def record_compute(benchmark, per_s, flops_per_unit):
    """GFLOP/s of the candidate and its fraction of the peak measured now."""
    info = benchmark.extra_info
    gflops = per_s * flops_per_unit / 1e9
    peak = nearby_peak()
    info["gflop_per_s"] = round(gflops, 1)
    info["peak_gflop_per_s_nearby"] = round(peak, 1)
    info["fraction_of_peak"] = round(gflops / peak, 3)


def compare(benchmark, candidate, baselines, work, unit, rounds, warmup, config):
    """Time ``candidate`` against each baseline, interleaved, in this process.

    ``work`` is the amount processed per call (tokens, images, chars...), so
    throughput = work / median seconds.  Records throughputs, ratios (candidate
    over each baseline), memory and configuration in ``extra_info``; the
    candidate is also timed by pytest-benchmark itself for its statistics.
    """
    medians = interleaved_medians(dict(baselines, _candidate=candidate), rounds, warmup)
    cand = work / medians.pop("_candidate")
    base = {name: work / seconds for name, seconds in medians.items()}
    benchmark.pedantic(synced(candidate), rounds=max(2, rounds // 3), iterations=1)
    info = benchmark.extra_info
    info["unit"] = unit
    info["candidate_per_s"] = round(cand, 1)
    for name, value in base.items():
        info["baseline_%s_per_s" % name] = round(value, 1)
        info["ratio_vs_%s" % name] = round(cand / value, 3)
    info["rss_mb"] = round(rss_mb(), 1)
    info["peak_rss_mb"] = round(peak_rss_mb(), 1)
    info["threads"] = int(os.environ.get("OMP_NUM_THREADS", "1"))
    info["device"] = "cpu (%s)" % cpu_model()
    info["native_isa"] = native_isa()
    info["onednn_max_isa"] = os.environ.get("DNNL_MAX_CPU_ISA", "all")
    info.update(config)
    return cand, base
