// Host-side entry points of mxgen's CUDA kernels (kernels/cuda/gpu_kernels.cu).
//
// Plain C++ types only, so the MXNet operator wrappers in kernels/ops/
// (compiled by the host compiler) and the standalone CUDA test program share
// them.  All pointers are device pointers; every launch goes on `stream`
// (a cudaStream_t) and nothing synchronises with the host, except that
// char_rnn_generate reads its N input ids once to check them.  `rand_states`
// is an array of curandStatePhilox4_32_10_t (MXNet hands custom ops 32768 of
// them); row n uses state n, advanced in place, so N may not exceed
// num_states (two rows on one state would race and draw alike).
#pragma once

#include <cstddef>

namespace mxgen {
namespace gpu {

struct SamplingArgs {
  float temperature;   // 0 = greedy (arg-max, first of ties)
  int top_k;           // 0 = off
  float top_p;         // 1 = off
};

// Largest vocabulary the GPU sampler handles: its per-row work (12 bytes per
// id) lives in shared memory, which must stay under the 48 KB a kernel gets
// without opting in (with ~2 KB of static reductions beside it).
constexpr int kMaxVocab = 3072;
constexpr int kSamplerStaticShared = 2 * 1024 + 64;
static_assert(kMaxVocab * 12 + kSamplerStaticShared <= 48 * 1024,
              "the sampler's shared memory must fit in 48 KB");

// One draw per row of logits (N, V) -> ids (N,) as float.  Returns 0, or an
// error message.
const char* sample(const float* logits, int N, int V, SamplingArgs s, void* rand_states,
                   int num_states, float* ids_out, void* stream);

// Device-to-device copy on `stream`.
const char* copy(void* dst, const void* src, size_t bytes, void* stream);

// `length` steps of a CharRNN, as the CPU op mxgen_char_rnn_generate:
// mode 0 rnn_relu, 1 rnn_tanh, 2 gru, 3 lstm.  `states` holds num_layers *
// (lstm ? 2 : 1) arrays (N, H), updated in place; `layer_w` the fused
// per-layer weight vectors; ids_out (N, length).  `workspace` must hold
// workspace_floats(...) floats.
size_t workspace_floats(int N, int E, int H, int G, int V);
const char* char_rnn_generate(int mode, int num_layers, int N, int E, int H, int V, int length,
                              const float* ids_in, float* const* states,
                              const float* embed, const float* const* layer_w,
                              const float* dec_w, const float* dec_b, SamplingArgs s,
                              void* rand_states, int num_states, float* workspace,
                              float* ids_out, void* stream);

}  // namespace gpu
}  // namespace mxgen
