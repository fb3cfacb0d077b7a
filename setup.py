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
    warning at run time).
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
            print("mxgen: WARNING: native kernels not built (%s); mxgen will use pure MXNet"
                  % err, file=sys.stderr)
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)


setup(
    name="mxgen",
    version="0.1.0",
    description="Fast generative models (char-RNN, DCGAN, style transfer) on MXNet Gluon",
    long_description=open(os.path.join(os.path.dirname(__file__), "README.md"),
                          encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.8",
    packages=find_packages(include=["mxgen", "mxgen.*"]),
    install_requires=[
        MXNET,
        "numpy<1.24",
        "gluoncv==0.10.5.post0",
        "tqdm",
        "pillow",
        "matplotlib",
        # the benchmark suite (`mxgen bench`) is part of the product
        "pytest",
        "pytest-benchmark",
    ],
    extras_require={
        # onnx 1.14 is the last with the onnx.mapping module mxnet 1.9's exporter imports
        "export": ["onnx==1.14.1"],
        "tensorboard": ["tensorboardX"],
        "test": ["pytest", "pytest-benchmark", "onnx==1.14.1", "tensorboardX"],
    },
    entry_points={"console_scripts": ["mxgen=mxgen.cli:main", "mxgen-launch=mxgen.cli:launch"]},
    ext_modules=[CMakeKernels("mxgen.libmxgen_kernels")],
    cmdclass={"build_ext": BuildKernels},
)
