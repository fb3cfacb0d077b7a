"""The matrix-multiply peak every fraction of peak in a run divides by,
measured in the same run: oneDNN's FullyConnected (held to
DNNL_MAX_CPU_ISA when set), numpy's BLAS, and mxgen's GEMM on each kernel
path this CPU runs (benchmarks/gemm_peak.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import cpu_model, native_isa  # noqa: E402
from gemm_peak import measure, peaks  # noqa: E402


def test_gemm_peak(benchmark, quick):
    results = measure(repeats=3 if quick else 8)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    info = benchmark.extra_info
    info.update({"unit": "GFLOP/s", "device": "cpu (%s)" % cpu_model(),
                 "native_isa": native_isa(),
                 "onednn_max_isa": os.environ.get("DNNL_MAX_CPU_ISA", "all")})
    for name, value in results.items():
        info[name] = round(value, 1)
    f32, bf16 = peaks(results)
    info["peak"] = round(f32, 1)
    if bf16 is not None:
        info["bf16_peak"] = round(bf16, 1)
