#!/usr/bin/env bash
# One-shot GPU check, for a machine with an NVIDIA GPU (run from anywhere):
#
#   bash benchmarks/gpu/check.sh [OUT_DIR]
#
# 1. records the GPU and the CUDA compiler;
# 2. compiles kernels/cuda/test_gpu_kernels.cu (a standalone program, no
#    MXNet needed) for this GPU's architecture and runs it: mxgen's CUDA
#    sampler and generation kernels against a CPU reference;
# 3. where the Python given by $PYTHON (default python3) imports a CUDA build
#    of mxnet 1.9.1: builds mxgen's native library against THAT mxnet
#    (pip install --no-build-isolation -e .: pip's isolated build would use
#    the CPU wheel), prints `mxgen info` (does the library hold CUDA ops?),
#    and runs a GPU dry run of training and generation, in float32 and in
#    float16 (--dtype float16: half-precision cuDNN ops, loss scaling).
#
# Everything it prints goes to OUT_DIR (default gpu-check/) as well; a later
# session records those files in BENCHMARKS.md.  Exit status: 0 when every
# step that could run passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
status=0

echo "== GPU" | tee "$OUT/gpu.txt"
if ! nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv \
        2>&1 | tee -a "$OUT/gpu.txt"; then
    echo "no usable nvidia-smi: the kernel program below will report no CUDA device" \
        | tee -a "$OUT/gpu.txt"
fi
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -z "$NVCC" ]; then
    echo "no nvcc found: cannot build the CUDA kernels" | tee -a "$OUT/gpu.txt"
    exit 1
fi
"$NVCC" --version | tail -2 | tee -a "$OUT/gpu.txt"

# this GPU's architecture (e.g. 9.0 -> sm_90); sm_90 when it cannot be read
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
ARCH=sm_${CAP:-90}

echo "== standalone CUDA kernel test ($ARCH)" | tee "$OUT/test_gpu_kernels.txt"
if "$NVCC" -O2 -arch="$ARCH" -Werror all-warnings -o "$OUT/test_gpu_kernels" \
        kernels/cuda/test_gpu_kernels.cu kernels/cuda/gpu_kernels.cu \
        2>&1 | tee -a "$OUT/test_gpu_kernels.txt"; then
    "$OUT/test_gpu_kernels" 2>&1 | tee -a "$OUT/test_gpu_kernels.txt"
    rc=${PIPESTATUS[0]}
    if [ "$rc" = 3 ]; then
        echo "compiled; no CUDA device to run on" | tee -a "$OUT/test_gpu_kernels.txt"
    elif [ "$rc" != 0 ]; then
        status=1
    fi
else
    echo "compilation failed" | tee -a "$OUT/test_gpu_kernels.txt"
    status=1
fi

echo "== mxgen on a CUDA mxnet" | tee "$OUT/mxgen.txt"
if "$PY" -c "import mxnet, sys; sys.exit(0 if mxnet.runtime.Features().is_enabled('CUDA') else 1)" \
        >/dev/null 2>&1; then
    {
        "$PY" -m pip install -q --no-build-isolation -e . &&
        "$PY" -m mxgen info &&
        "$PY" -m mxgen train-text --ctx gpu:0 --dry-run --out "$OUT/text-gpu" --no-progress &&
        "$PY" -m mxgen generate --checkpoint "$OUT/text-gpu" --ctx gpu:0 --prompt "def " \
            --length 200 --seed 0 &&
        "$PY" -m mxgen train-gan --ctx gpu:0 --dry-run --out "$OUT/gan-gpu" --no-progress &&
        # float16: cuDNN's half RNN and convolutions between casts, dynamic loss scaling
        "$PY" -m mxgen train-text --ctx gpu:0 --dry-run --dtype float16 \
            --out "$OUT/text-gpu-fp16" --no-progress &&
        "$PY" -m mxgen train-gan --ctx gpu:0 --dry-run --dtype float16 \
            --out "$OUT/gan-gpu-fp16" --no-progress &&
        "$PY" -m mxgen sample-gan --checkpoint "$OUT/gan-gpu-fp16" --ctx gpu:0 --dtype float16 \
            --num 16 --grid "$OUT/gan-gpu-fp16/samples-fp16.png" &&
        "$PY" -m mxgen export --checkpoint "$OUT/gan-gpu-fp16" --dtype float16 \
            --out "$OUT/gan-gpu-fp16-export"
    } 2>&1 | tee -a "$OUT/mxgen.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
else
    echo "$PY has no CUDA build of mxnet: skipped (install mxnet-cu117==1.9.1 or another" \
         "mxnet-cuXXX 1.9.1 first)" | tee -a "$OUT/mxgen.txt"
fi
exit $status
