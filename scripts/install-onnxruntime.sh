#!/usr/bin/env bash
# Install onnxruntime (to check ONNX exports) into the environment of the
# given pip (default: .venv/bin/pip) without touching numpy.  Its Python 3.11
# wheels declare numpy >= 1.24, but mxnet 1.9 needs numpy < 1.24 (np.bool);
# the wheel runs on numpy 1.23, so it goes in without its declared
# dependencies, and the others are installed by name.
set -euo pipefail
PIP="${1:-.venv/bin/pip}"
"$PIP" install -q coloredlogs flatbuffers packaging protobuf sympy
"$PIP" install -q --no-deps onnxruntime==1.16.3
