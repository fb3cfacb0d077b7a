"""mxgen: fast generative models on Apache MXNet Gluon.

All runtime pins live here so that ONE ``pip install`` resolves them together:
mxnet 1.9.1 needs numpy < 1.24 (it uses ``np.bool``), and a later pip call
without that pin would upgrade numpy and break mxnet.  GPU users install the
matching ``mxnet-cuXXX==1.9.1`` wheel instead of ``mxnet`` (see README).
"""
import os
import shutil
import subprocess
import sys
import tempfile

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:                 # setuptools < 70
    from wheel.bdist_wheel import bdist_wheel

# MXGEN_MXNET_PACKAGE=mxnet-cu117 swaps the CPU wheel for a CUDA build.
MXNET = os.environ.get("MXGEN_MXNET_PACKAGE", "mxnet") + "==1.9.1"

HERE = os.path.dirname(os.path.abspath(__file__))


class CMakeKernels(Extension):
    """The native operator library in kernels/, built by CMakeLists.txt."""

    def __init__(self, name):
        super().__init__(name, sources=[])


class BuildKernels(build_ext):
    """Builds kernels/ with CMake against the mxnet in this (build) environment.

    If CMake, a compiler or mxnet's headers are missing, the install still
    succeeds without the library and mxgen falls back to pure MXNet (with one
    warning at run time), unless MXGEN_REQUIRE_KERNELS=1 (how wheels meant
    for others are built: scripts/build-wheel.sh).
    """

    def run(self):
        for ext in self.extensions:
            self.build_kernels(ext)

    def build_kernels(self, ext):
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        build_dir = tempfile.mkdtemp(prefix="mxgen-kernels-")
        try:
            subprocess.check_call(["cmake", "-S", HERE, "-B", build_dir,
                                   "-DPython3_EXECUTABLE=" + sys.executable,
                                   "-DCMAKE_BUILD_TYPE=Release"])
            subprocess.check_call(["cmake", "--build", build_dir, "-j", "2"])
            shutil.copyfile(os.path.join(build_dir, "libmxgen_kernels.so"), target)
            print("mxgen: built native kernels -> %s" % target)
        except (OSError, subprocess.CalledProcessError) as err:
            if os.environ.get("MXGEN_REQUIRE_KERNELS", "0") == "1":
                raise RuntimeError("mxgen: native kernels not built (%s), and"
                                   " MXGEN_REQUIRE_KERNELS=1 asks for them" % err) from err
            print("mxgen: WARNING: native kernels not built (%s); mxgen will use pure MXNet"
                  % err, file=sys.stderr)
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)


class PlatformWheel(bdist_wheel):
    """The wheel holds a native library, so it is tagged for the platform;
    the library never links against Python (MXNet loads it), so one wheel
    serves every supported Python: py3-none-<platform>."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        return ("py3", "none") + super().get_tag()[2:]


# Name, version, licence, Python range, extras and the rest are in
# pyproject.toml; only what needs code is here: the runtime dependencies
# (MXGEN_MXNET_PACKAGE swaps the mxnet wheel), the native library's build,
# and the benchmark suite, shipped inside the package as mxgen.benchmarks so
# that `mxgen bench` runs from a wheel too.
setup(
    packages=find_packages(include=["mxgen", "mxgen.*"]) + ["mxgen.benchmarks"],
    package_dir={"mxgen.benchmarks": "benchmarks"},
    install_requires=[
        MXNET,
        "numpy<1.24",
        "gluoncv==0.10.5.post0",
        "scipy",          # mxgen.stylize (L-BFGS); also a dependency of gluoncv
        "tqdm",
        "pillow",
        "matplotlib",
        # the benchmark suite (`mxgen bench`) is part of the product
        "pytest",
        "pytest-benchmark",
    ],
    ext_modules=[CMakeKernels("mxgen.libmxgen_kernels")],
    cmdclass={"build_ext": BuildKernels, "bdist_wheel": PlatformWheel},
)
