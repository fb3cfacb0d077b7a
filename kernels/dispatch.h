// The kernels mxgen's operators call, one table per instruction set.
//
// kernels_isa.cc compiles the kernel headers five times (AMX with
// AVX512_BF16, AVX-512 with AVX512_BF16, AVX-512, AVX2+FMA, portable
// x86-64), each copy in its own namespace with its own table; dispatch.cc
// picks one table when the library loads: the best the CPU (and the OS, for
// AMX) runs, or a lower one named by
// MXGEN_ISA=amx_bf16|avx512_bf16|avx512|avx2|generic.  The float32 kernels
// are the same from avx512 up; the bfloat16 GEMMs (the layers' `bf16`
// shapes) run on AMX tiles in amx_bf16, on VDPBF16PS in avx512_bf16, and are
// emulated with float32 FMAs below.  The operator glue
// (kernels/ops/*.cc) calls only through kernels(), so every op follows the
// one choice.  The types here are plain structs shared by all copies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>

namespace mxgen {

enum class Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Bf16 = 3, kAmxBf16 = 4 };

// bf16: the layer's GEMMs multiply bfloat16 operands (float32 accumulation);
// everything else stays float32.
struct LstmShape {
  int T, N, I, H;
  bool bf16;
};
struct GruShape {
  int T, N, I, H;
  bool bf16;
};

// One Adam update (optimizer.h): lr with the bias corrections folded in;
// clip_gradient < 0 is off.
struct AdamArgs {
  float lr, beta1, beta2, epsilon, wd, rescale_grad, clip_gradient;
};

struct Sampling {
  float temperature;   // 0 = greedy (arg-max, first of ties)
  int top_k;           // 0 = off
  float top_p;         // 1 = off
};

enum RnnMode { kRnnRelu = 0, kRnnTanh = 1, kGru = 2, kLstm = 3 };

// One call of mxgen_char_rnn_generate: `length` steps of embedding -> layers
// -> decoder -> sampler for N rows.  ids_in (N, prompt), row-major, are
// valid ids (checked by the caller): the first prompt - 1 columns are fed
// without sampling (priming the states; no decoder runs for them), the
// last is the first input of the `length` sampled steps.  states
// (num_states arrays of (N, H)) are updated in place.
struct GenArgs {
  RnnMode mode;
  int layers, per_layer, gates, N, E, H, V, length;
  bool bf16;                        // bfloat16 products (weights converted once per call)
  Sampling sampling;
  const int* ids_in;
  float* const* states;
  const float* embed;               // (V, E)
  const float* const* layer_w;      // fused per-layer vectors
  const float* dec_w;               // (V, H)
  const float* dec_b;               // (V,)
  std::mt19937* rng;
  float* ids_out;                   // (N, length)
  int prompt = 1;                   // columns of ids_in
};

struct Kernels {
  Isa isa;
  // training layers (lstm.h, gru.h); ws null = inference, nothing saved
  void (*lstm_forward)(const LstmShape&, const float* x, const float* h0, const float* c0,
                       const float* w, float* y, float* hT, float* cT, float* ws);
  void (*lstm_backward)(const LstmShape&, const float* dy, const float* dhT, const float* dcT,
                        const float* x, const float* h0, const float* c0, const float* w,
                        const float* y, const float* ws, float* dx, float* dh0, float* dc0,
                        float* dw);
  void (*gru_forward)(const GruShape&, const float* x, const float* h0, const float* w,
                      float* y, float* hT, float* ws);
  void (*gru_backward)(const GruShape&, const float* dy, const float* dhT, const float* x,
                       const float* h0, const float* w, const float* y, const float* ws,
                       float* dx, float* dh0, float* dw);
  // dropout.h: y = x * mask(key, salt), p in (0, 1)
  void (*dropout)(size_t n, const float* x, float* y, float p, uint64_t key, uint32_t salt);
  // sampler.h: one id per row of logits (N, V), written as float
  void (*sample)(const float* logits, int N, int V, const Sampling& s, std::mt19937* rng,
                 float* ids_out);
  // generate.h
  void (*char_rnn_generate)(const GenArgs& args);
  // gemm.h, for tests: C (M, N) = A (M, K) B (K, N), row-major, plain operands;
  // bf16: through the bfloat16 GEMM (operands rounded, float32 accumulation)
  void (*sgemm)(int M, int N, int K, const float* A, const float* B, float* C);
  void (*sgemm_bf16)(int M, int N, int K, const float* A, const float* B, float* C);
  // optimizer.h: w, mean, var updated in place from grad (n floats each)
  void (*adam_update)(size_t n, float* w, const float* grad, float* mean, float* var,
                      const AdamArgs& args);
};

namespace generic { extern const Kernels kTable; }
namespace avx2 { extern const Kernels kTable; }
namespace avx512 { extern const Kernels kTable; }
namespace avx512_bf16 { extern const Kernels kTable; }
namespace amx_bf16 { extern const Kernels kTable; }

// The table in use (chosen once at load; see dispatch.cc).
const Kernels& kernels();
const char* isa_name(Isa isa);

}  // namespace mxgen
