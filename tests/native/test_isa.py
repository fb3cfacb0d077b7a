"""Which kernel path runs: chosen once at load from the CPU and MXGEN_ISA,
reported by `mxgen info`, never wider than the CPU; the library's wide
instructions live only in the code of their own path; GEMM per path."""
import os
import re
import shutil
import subprocess
from collections import Counter

import numpy as np
import pytest

from mxgen import _native

from ..conftest import run_cli
from .conftest import gemm_case


def test_best_path_is_the_default_and_lower_paths_can_be_chosen():
    info = _native.build_info()
    assert info["cpu_best"] == _native.supported_isas()[0]
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if " avx512bw" in flags and " avx512vl" in flags:
        if " avx512_bf16" not in flags:
            assert info["cpu_best"] == "avx512"
        elif " amx_bf16" in flags and " amx_tile" in flags:   # (and the OS lets us use AMX)
            assert info["cpu_best"] in ("amx_bf16", "avx512_bf16")
        else:
            assert info["cpu_best"] == "avx512_bf16"
    elif " avx2" in flags and " fma" in flags:
        assert info["cpu_best"] == "avx2"
    assert "mxnet 1.9.1" in info["build"] and "cuda" in info["build"]
    for isa in _native.supported_isas():
        previous = _native.set_isa(isa)
        assert _native.isa() == isa
        _native.set_isa(previous)


def test_set_isa_refuses_unknown_or_unsupported_paths():
    from mxgen.errors import MXGenError
    with pytest.raises(MXGenError, match="not available on this CPU"):
        _native.set_isa("sse9")
    unsupported = [isa for isa in _native.ISAS if isa not in _native.supported_isas()]
    for isa in unsupported:
        with pytest.raises(MXGenError, match="not available on this CPU"):
            _native.set_isa(isa)


@pytest.mark.parametrize("value,expect", [
    ("generic", r"native isa\s+generic \(this CPU runs"),
    ("avx9", r"native isa\s+\w+ .*MXGEN_ISA=avx9 is not one of amx_bf16, avx512_bf16, avx512,"
             r" avx2, generic"),
])
def test_mxgen_isa_environment_variable_and_info(value, expect):
    env_before = os.environ.get("MXGEN_ISA")
    os.environ["MXGEN_ISA"] = value
    try:
        proc = run_cli("info")
    finally:
        if env_before is None:
            del os.environ["MXGEN_ISA"]
        else:
            os.environ["MXGEN_ISA"] = env_before
    assert proc.returncode == 0, proc.stderr
    assert re.search(expect, proc.stdout), proc.stdout
    assert re.search(r"native build\s+mxnet 1\.9\.1, (no cuda|cuda [\d.]+), GNU", proc.stdout)
    for op in _native.OPS:
        assert op in proc.stdout


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 3), (37, 100, 129), (64, 1024, 256),
                                   (6, 16, 300), (200, 33, 17)])
def test_gemm_matches_numpy(isa, shape):
    a, b, c = gemm_case(shape)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=0,
                               atol=1e-4 * np.sqrt(shape[2]))


def _functions_with(lib_path):
    """{function: Counter of 'zmm' / 'avx' instruction kinds} from objdump."""
    out = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", lib_path],
                         capture_output=True, text=True, check=True).stdout
    found, func = {}, None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            func = m.group(1)
            continue
        if func is None or "\t" not in line:
            continue
        kinds = Counter()
        if "zmm" in line or re.search(r"%k[1-7]\b", line):
            kinds["avx512"] += 1
        elif "ymm" in line or re.search(r"\tv?fn?m(add|sub)", line):
            kinds["avx"] += 1
        if kinds:
            found.setdefault(func, Counter()).update(kinds)
    return found


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) not installed")
def test_wide_instructions_only_in_their_own_paths():
    """A CPU without AVX-512 (or AVX2) must never reach such instructions
    outside the copy of the kernels compiled for them: no shared helper,
    no standard-library template, no OpenMP region may carry them."""
    found = _functions_with(_native.status()[0])

    def path_of(func):
        head = re.split(r"[<(]", func, 1)[0]
        m = re.search(r"mxgen::(amx_bf16|avx512_bf16|avx512|avx2|generic)::", head)
        return m.group(1) if m else None

    wide = ("amx_bf16", "avx512_bf16", "avx512")
    assert any(path_of(f) == "avx512" and k["avx512"] for f, k in found.items()), \
        "no AVX-512 code found: is this an x86-64 build?"
    wrong = [(path_of(f), f[:120]) for f, k in found.items()
             if (k["avx512"] and path_of(f) not in wide)
             or (k["avx"] and path_of(f) not in wide + ("avx2",))]
    assert not wrong, wrong
