"""Matrix-multiply peak of this CPU per kernel path, the figure every
fraction of peak in BENCHMARKS.md divides by.

    python benchmarks/gemm_peak.py            # DNNL_MAX_CPU_ISA=AVX2 ... to hold oneDNN to a path

Times, fastest of several runs of a 2048^3 fp32 product: MXNet's
FullyConnected (oneDNN; honours DNNL_MAX_CPU_ISA set before mxnet loads),
numpy's BLAS, and mxgen's own GEMM (kernels/gemm.h) on each kernel path
this CPU runs (and the recurrent step's shape, 32 x 256 x 1024).  Where the
CPU has bfloat16 (AVX512_BF16 or AMX), the same products with bfloat16
operands and float32 sums ("..._bf16_..." entries): oneDNN's (AMX only when
mxgen enabled it, see mxgen/_env.py) and mxgen's.  The float32 peak is the
best float32 entry, the bfloat16 peak the best bfloat16 one.
"""
import argparse
import ctypes
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxgen  # noqa: E402,F401  (threads before mxnet)
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from mxgen import _native  # noqa: E402


def best_gflops(fn, flops, repeats):
    fn()
    best = min(_timed(fn) for _ in range(repeats))
    return flops / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def mxgen_gemm(M, N, K, entry="mxgen_sgemm"):
    """A call of the library's C entry ``entry`` on random M x K and K x N."""
    lib = ctypes.CDLL(_native.status()[0])
    a = np.random.rand(M, K).astype(np.float32)
    b = np.random.rand(K, N).astype(np.float32)
    c = np.empty((M, N), np.float32)
    ptr = lambda x: x.ctypes.data_as(ctypes.c_void_p)
    fn = getattr(lib, entry)
    return lambda: fn(M, N, K, ptr(a), ptr(b), ptr(c))


def mxgen_gemm_bf16(M, N, K):
    """The same with bfloat16 operands and float32 sums."""
    return mxgen_gemm(M, N, K, "mxgen_sgemm_bf16")


def peaks(results):
    """``(float32 peak, bfloat16 peak or None)`` of :func:`measure`'s results."""
    f32 = [v for k, v in results.items() if "_bf16_" not in k]
    bf16 = [v for k, v in results.items() if "_bf16_" in k]
    return max(f32), (max(bf16) if bf16 else None)


def measure(repeats=8):
    """{name: GFLOP/s} for every GEMM this machine offers."""
    n = 2048
    flops = 2.0 * n ** 3
    a = mx.nd.random.normal(shape=(n, n))
    b = mx.nd.random.normal(shape=(n, n))
    out = {"onednn_fc_2048": best_gflops(
        lambda: mx.nd.FullyConnected(a, b, no_bias=True, num_hidden=n).wait_to_read(),
        flops, repeats)}
    an, bn = a.asnumpy(), b.asnumpy()
    out["numpy_2048"] = best_gflops(lambda: an @ bn, flops, repeats)
    from mxgen.nn.precision import BFLOAT16, bf16_cpu
    if bf16_cpu() is None:
        a16, b16 = (mx.nd.amp_cast(x, dtype=BFLOAT16) for x in (a, b))
        out["onednn_fc_bf16_2048"] = best_gflops(
            lambda: mx.nd.FullyConnected(a16, b16, no_bias=True, num_hidden=n).wait_to_read(),
            flops, repeats)
    if _native.available():
        previous = _native.isa()
        for isa in _native.supported_isas():
            _native.set_isa(isa)
            out["mxgen_%s_2048" % isa] = best_gflops(mxgen_gemm(n, n, n), flops, repeats)
            out["mxgen_%s_32x1024x256" % isa] = best_gflops(
                mxgen_gemm(32, 1024, 256), 2.0 * 32 * 1024 * 256, 200)
            if isa in _native.BF16_ISAS:
                out["mxgen_%s_bf16_2048" % isa] = best_gflops(mxgen_gemm_bf16(n, n, n), flops,
                                                              repeats)
                out["mxgen_%s_bf16_32x1024x256" % isa] = best_gflops(
                    mxgen_gemm_bf16(32, 1024, 256), 2.0 * 32 * 1024 * 256, 200)
        _native.set_isa(previous)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    print("DNNL_MAX_CPU_ISA=%s OMP_NUM_THREADS=%s" % (os.environ.get("DNNL_MAX_CPU_ISA", "(all)"),
                                                    os.environ.get("OMP_NUM_THREADS")))
    results = measure(args.repeats)
    for name, value in results.items():
        print("%-30s %7.1f GFLOP/s" % (name, value))
    f32, bf16 = peaks(results)
    print("peak: float32 %.1f GFLOP/s%s" % (f32, "" if bf16 is None else
                                             ", bfloat16 %.1f GFLOP/s" % bf16))


if __name__ == "__main__":
    main()
