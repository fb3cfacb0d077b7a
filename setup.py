"""mxgen: fast generative models on Apache MXNet Gluon.

All runtime pins live here so that ONE ``pip install`` resolves them together:
mxnet 1.9.1 needs numpy < 1.24 (it uses ``np.bool``), and a later pip call
without that pin would upgrade numpy and break mxnet.  GPU users install the
matching ``mxnet-cuXXX==1.9.1`` wheel instead of ``mxnet`` (see README).
"""
import os

from setuptools import find_packages, setup

# MXGEN_MXNET_PACKAGE=mxnet-cu117 swaps the CPU wheel for a CUDA build.
MXNET = os.environ.get("MXGEN_MXNET_PACKAGE", "mxnet") + "==1.9.1"

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
    ],
    extras_require={
        "test": ["pytest", "pytest-benchmark"],
    },
    entry_points={"console_scripts": ["mxgen=mxgen.cli:main"]},
)
