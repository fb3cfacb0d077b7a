#!/usr/bin/env bash
# Install Horovod with MXNet support into the environment of the given pip
# (default: .venv/bin/pip).  Horovod compiles against the mxnet already
# installed there, which pip's isolated build environment cannot see, so it
# builds without build isolation, after mxgen (and so mxnet) is installed.
# Gloo only (no MPI); about 1-3 minutes of g++ and CMake.
set -euo pipefail
PIP="${1:-.venv/bin/pip}"
"$PIP" install -q wheel
HOROVOD_WITH_MXNET=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 \
HOROVOD_WITHOUT_MPI=1 HOROVOD_WITH_GLOO=1 \
    "$PIP" install -q --no-build-isolation horovod==0.28.1
