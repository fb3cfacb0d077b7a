"""The CUDA kernels (kernels/cuda/) must keep compiling on machines without a
GPU, and pass their standalone checks where a GPU exists.

The pip mxnet here has no CUDA, so the GPU forwards are not built into the
library on such machines; these tests compile the sources with nvcc anyway
(skipped, with the reason, only when no nvcc is found) and run the
standalone test program when a CUDA device is present."""
import os
import shutil
import subprocess

import mxnet as mx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA = os.path.join(ROOT, "kernels", "cuda")


def _nvcc():
    return shutil.which("nvcc") or next(
        (p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None)


needs_nvcc = pytest.mark.skipif(_nvcc() is None, reason="no nvcc on this machine")


@needs_nvcc
def test_cuda_kernels_compile_and_pass_where_a_gpu_exists(tmp_path):
    exe = str(tmp_path / "test_gpu_kernels")
    build = subprocess.run(
        [_nvcc(), "-O2", "-arch=sm_90", "-Werror", "all-warnings", "-o", exe,
         os.path.join(CUDA, "test_gpu_kernels.cu"), os.path.join(CUDA, "gpu_kernels.cu")],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([exe], capture_output=True, text=True, timeout=600)
    if run.returncode == 3 and "no CUDA device" in run.stdout:
        return      # compiled; nothing to run it on here
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all checks passed" in run.stdout


@pytest.mark.parametrize("source", sorted(f for f in os.listdir(os.path.join(ROOT, "kernels",
                                                                             "ops"))
                                           if f.endswith(".cc")))
def test_gpu_registration_compiles(tmp_path, source):
    """Each op's glue with its GPU forwards enabled, against the wheel's lib_api.h."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    include = os.path.join(os.path.dirname(mx.__file__), "include")
    proc = subprocess.run(
        [cxx, "-std=c++14", "-fsyntax-only", "-fopenmp", "-Wall", "-DMXGEN_WITH_CUDA",
         "-I", include, "-I", os.path.join(ROOT, "kernels"),
         os.path.join(ROOT, "kernels", "ops", source)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
