// One copy of mxgen's kernels for one instruction set.  CMakeLists.txt
// compiles this file five times:
//   MXGEN_ISA_NS=amx_bf16    MXGEN_ISA_LEVEL=4  (the AVX512_BF16 set + AMX-TILE, AMX-BF16)
//   MXGEN_ISA_NS=avx512_bf16 MXGEN_ISA_LEVEL=3  (the AVX-512 set + AVX512_BF16)
//   MXGEN_ISA_NS=avx512  MXGEN_ISA_LEVEL=2  (AVX-512 F/BW/DQ/VL + AVX2 + FMA)
//   MXGEN_ISA_NS=avx2    MXGEN_ISA_LEVEL=1  (AVX2 + FMA)
//   MXGEN_ISA_NS=generic MXGEN_ISA_LEVEL=0  (the baseline x86-64 ISA)
// The instruction set is switched on with `#pragma GCC target` after the
// standard headers, so only this file's own functions (in their own
// namespace) use it: template code from the standard library stays at the
// baseline ISA, and the linker cannot hand one copy's wider code to another.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "dispatch.h"

#if MXGEN_ISA_LEVEL == 4
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,amx-tile,amx-bf16")
#elif MXGEN_ISA_LEVEL == 3
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")
#elif MXGEN_ISA_LEVEL == 2
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")
#elif MXGEN_ISA_LEVEL == 1
#pragma GCC target("avx2,fma,f16c")
#endif

#include "dropout.h"
#include "gemm.h"
#include "generate.h"
#include "gru.h"
#include "lstm.h"
#include "optimizer.h"
#include "sampler.h"

namespace mxgen {
namespace MXGEN_ISA_NS {
namespace {

void sgemm_plain(int M, int N, int K, const float* A, const float* B, float* C) {
  sgemm(false, false, M, N, K, A, K, B, N, 0.f, C, N);
}

void sgemm_plain_bf16(int M, int N, int K, const float* A, const float* B, float* C) {
  sgemm_bf16(M, N, K, A, K, B, N, C, N);
}

}  // namespace

extern const Kernels kTable;
const Kernels kTable = {
    static_cast<Isa>(MXGEN_ISA_LEVEL),
    lstm_forward,
    lstm_backward,
    gru_forward,
    gru_backward,
    dropout_forward,
    sample_rows,
    char_rnn_generate,
    sgemm_plain,
    sgemm_plain_bf16,
    adam_update,
};

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
