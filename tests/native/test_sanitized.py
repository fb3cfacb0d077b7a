"""The kernels under the undefined-behaviour sanitizer, on every path this
CPU runs: kernels/tests/check_kernels.cc (no MXNet) feeds them NaN, huge
and tiny values, odd shapes and tiny dropout rates; any undefined behaviour
(a NaN or out-of-range float cast to an integer, a negative shift, signed
overflow) aborts the program.  Needs only a C++ compiler."""
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNELS = os.path.join(REPO, "kernels")
FLAGS = ["-std=c++14", "-O1", "-g", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
         "-fsanitize=undefined,float-cast-overflow", "-fno-sanitize-recover=all"]


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler (g++) on this machine")
def test_kernels_have_no_undefined_behaviour_on_edge_inputs(tmp_path):
    isa_objects = [(name, level, str(tmp_path / ("isa_%s.o" % name)))
                   for name, level in (("amx_bf16", 4), ("avx512_bf16", 3), ("avx512", 2),
                                       ("avx2", 1), ("generic", 0))]
    jobs = [["g++"] + FLAGS + ["-DMXGEN_ISA_NS=%s" % name, "-DMXGEN_ISA_LEVEL=%d" % level,
                               "-c", os.path.join(KERNELS, "kernels_isa.cc"), "-o", obj]
            for name, level, obj in isa_objects]
    jobs.append(["g++"] + FLAGS + ["-DMXGEN_X86_ISAS", "-c", os.path.join(KERNELS, "dispatch.cc"),
                                   "-o", str(tmp_path / "dispatch.o")])
    jobs.append(["g++"] + FLAGS + ["-c", os.path.join(KERNELS, "tests", "check_kernels.cc"),
                                   "-o", str(tmp_path / "check.o")])
    with ThreadPoolExecutor(2) as pool:    # (bfloat16 paths included: LSTM, GRU, generation)
        for proc in pool.map(lambda cmd: subprocess.run(cmd, capture_output=True, text=True),
                             jobs):
            assert proc.returncode == 0, proc.stderr[-3000:]
    exe = str(tmp_path / "check_kernels")
    link = subprocess.run(["g++"] + FLAGS + [str(tmp_path / "check.o"),
                                             str(tmp_path / "dispatch.o")]
                          + [obj for _, _, obj in isa_objects] + ["-o", exe],
                          capture_output=True, text=True)
    assert link.returncode == 0, link.stderr[-3000:]
    env = dict(os.environ, UBSAN_OPTIONS="print_stacktrace=1")
    run = subprocess.run([exe], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0 and "ALL OK" in run.stdout, run.stdout + run.stderr[-3000:]
