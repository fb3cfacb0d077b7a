"""Fixtures for the native-kernel tests: skipped, with the reason, when the
library is not built (CI builds it through ``pip install -e .``), and run
under every kernel path this CPU supports (``isa``)."""
import ctypes

import numpy as np
import pytest

from mxgen import _native
from mxgen.data.vocab import Vocab

# Text for vocabularies and prompts, written for these tests.
TEXT = ("Supposing that the kernels are fast, what then? Is there not ground, Then, for "
        "suspecting that every CPU, old or new, wants its own path -- AVX-512, AVX2, or "
        "none at all; and that a benchmark measured on one machine says little about "
        "another (1, 2, 3...)!\n")

SUPPORTED = _native.supported_isas() if _native.available() else ()


def pytest_collection_modifyitems(config, items):
    if _native.available():
        return
    skip = pytest.mark.skip(reason="native kernels unavailable: %s" % (_native.status()[2],))
    for item in items:
        if "/native/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(params=SUPPORTED or ["none"])
def isa(request):
    """Runs the test with the kernels switched to each path the CPU supports."""
    if request.param == "none":
        pytest.skip("native kernels unavailable: %s" % (_native.status()[2],))
    previous = _native.set_isa(request.param)
    yield request.param
    _native.set_isa(previous)


def gemm_case(shape, entry="mxgen_sgemm"):
    """Seeded operands ``(a, b)`` of ``shape`` (M, N, K) and what the
    library's C entry ``entry`` makes of them (C = A B, row-major)."""
    M, N, K = shape
    rng = np.random.RandomState(M + N + K)
    a = rng.normal(size=(M, K)).astype(np.float32)
    b = rng.normal(size=(K, N)).astype(np.float32)
    c = np.full((M, N), np.nan, np.float32)
    ptr = lambda x: x.ctypes.data_as(ctypes.c_void_p)
    getattr(ctypes.CDLL(_native.status()[0]), entry)(M, N, K, ptr(a), ptr(b), ptr(c))
    return a, b, c


def bf16_round(x):
    """float32 -> bfloat16 -> float32, round to nearest even (NumPy)."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return (bits.astype(np.uint32) << 16).view(np.float32)


@pytest.fixture(scope="session")
def vocab():
    return Vocab.from_text(TEXT)
