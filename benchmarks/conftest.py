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
import platform
import resource
import time

import pytest

import mxgen  # noqa: F401  (thread defaults before mxnet)
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


def median_seconds(fn, rounds, warmup):
    """Median wall time of ``fn`` (synced), after ``warmup`` untimed calls."""
    fn = synced(fn)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def compare(benchmark, candidate, baselines, work, unit, rounds, warmup, config):
    """Time ``candidate`` with pytest-benchmark and each baseline by hand.

    ``work`` is the amount processed per call (tokens, images, chars...), so
    throughput = work / median seconds.  Records throughputs, ratios (candidate
    over each baseline), memory and configuration in ``extra_info``.
    """
    base = {name: work / median_seconds(fn, rounds, warmup) for name, fn in baselines.items()}
    benchmark.pedantic(synced(candidate), rounds=rounds, warmup_rounds=warmup, iterations=1)
    cand = work / benchmark.stats.stats.median
    info = benchmark.extra_info
    info["unit"] = unit
    info["candidate_per_s"] = round(cand, 1)
    for name, value in base.items():
        info["baseline_%s_per_s" % name] = round(value, 1)
        info["ratio_vs_%s" % name] = round(cand / value, 3)
    info["rss_mb"] = round(rss_mb(), 1)
    info["peak_rss_mb"] = round(peak_rss_mb(), 1)
    info["threads"] = int(os.environ.get("OMP_NUM_THREADS", "1"))
    info["device"] = "cpu (%s)" % platform.processor() or platform.machine()
    info.update(config)
    return cand, base
