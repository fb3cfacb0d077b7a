// mxgen_char_rnn_generate's loop: `length` steps of a CharRNN (embedding ->
// fused-layout layers -> decoder -> sampler) for N rows in one call, with
// the training kernels' gate arithmetic (lstm.h, gru.h) and GEMM (gemm.h).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "dispatch.h"
#include "gemm.h"
#include "gru.h"
#include "isa_namespace.h"
#include "lstm.h"
#include "sampler.h"

namespace mxgen {
namespace MXGEN_ISA_NS {

// Below this batch a step's products are mat-vecs: one pass over each
// weight row per input row beats packing the weights for a GEMM.
constexpr int kGemmMinBatch = 8;

// Y (N, rows) = (accumulate ? Y : bias) + X (N, cols) W^T, one pass over W's
// rows per input row (small N).  W row-major (rows, cols), as MXNet stores it.
// Four rows at a time: four independent vector sums per pass over x, where
// one would wait on its own adds.
inline void matvec_rows(const float* W, const float* X, const float* bias, int rows, int cols,
                        int N, float* Y, bool accumulate) {
  const int groups = ceil_div(rows, 4);
#pragma omp parallel for schedule(static) if (static_cast<long>(rows) * cols * N > 32768)
  for (int g = 0; g < groups; ++g) {
    const int r0 = 4 * g, nr = std::min(4, rows - r0);
    const float* w0 = W + static_cast<size_t>(r0) * cols;
    const float* w1 = nr > 1 ? w0 + cols : w0;   // past the last row: recompute row r0
    const float* w2 = nr > 2 ? w1 + cols : w0;
    const float* w3 = nr > 3 ? w2 + cols : w0;
    for (int n = 0; n < N; ++n) {
      const float* x = X + static_cast<size_t>(n) * cols;
      float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
      for (int k = 0; k < cols; ++k) {
        a0 += w0[k] * x[k];
        a1 += w1[k] * x[k];
        a2 += w2[k] * x[k];
        a3 += w3[k] * x[k];
      }
      const float sums[4] = {a0, a1, a2, a3};
      float* y = Y + static_cast<size_t>(n) * rows + r0;
      for (int i = 0; i < nr; ++i)
        y[i] = (accumulate ? y[i] : (bias ? bias[r0 + i] : 0.f)) + sums[i];
    }
  }
}

// matvec_rows with bfloat16 weights and inputs (rows of even_up(cols)
// values, the pad zero) and float32 sums: half the bytes of weights to
// stream per step, which is what a batch-1 step waits on.
inline void matvec_rows_bf16(const bf16_t* W, const bf16_t* X, const float* bias, int rows,
                             int cols, int N, float* Y, bool accumulate) {
  const int cp = even_up(cols), groups = ceil_div(rows, 4);
#pragma omp parallel for schedule(static) if (static_cast<long>(rows) * cols * N > 32768)
  for (int g = 0; g < groups; ++g) {
    const int r0 = 4 * g, nr = std::min(4, rows - r0);
    const bf16_t* w[4];
    for (int i = 0; i < 4; ++i) w[i] = W + static_cast<size_t>(r0 + (i < nr ? i : 0)) * cp;
    for (int n = 0; n < N; ++n) {
      const bf16_t* x = X + static_cast<size_t>(n) * cp;
      float sums[4];
#if MXGEN_ISA_LEVEL >= 3
      __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps()};
      for (int k = 0; k < cp; k += 32) {      // 16 K pairs a vector
        const int left = (cp - k) / 2;
        const __mmask16 m = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
        const __m512i xv = _mm512_maskz_loadu_epi32(m, x + k);
        for (int i = 0; i < 4; ++i) {
          const __m512i wv = _mm512_maskz_loadu_epi32(m, w[i] + k);
          acc[i] = _mm512_dpbf16_ps(acc[i], reinterpret_cast<const __m512bh&>(wv),
                                    reinterpret_cast<const __m512bh&>(xv));
        }
      }
      for (int i = 0; i < 4; ++i) sums[i] = _mm512_reduce_add_ps(acc[i]);
#else
      for (int i = 0; i < 4; ++i) {
        float a = 0.f;
        for (int k = 0; k < cp; ++k) a += from_bf16(w[i][k]) * from_bf16(x[k]);
        sums[i] = a;
      }
#endif
      float* y = Y + static_cast<size_t>(n) * rows + r0;
      for (int i = 0; i < nr; ++i)
        y[i] = (accumulate ? y[i] : (bias ? bias[r0 + i] : 0.f)) + sums[i];
    }
  }
}

// A weight matrix used at every generation step.  At a batch worth a GEMM,
// W^T is packed once (first use) and each step runs gemm.h's kernel on it;
// below, a mat-vec per input row.  With bf16, the weights are converted once
// (first use) and the products are bfloat16 (float32 sums).
struct Linear {
  const float* W;
  int rows, cols;
  bool bf16;
  std::vector<float> packed;
  std::vector<bf16_t> w16, x16;

  void apply(const float* X, int N, const float* bias, float* Y, bool accumulate) {
    if (N < kGemmMinBatch) {
      if (!bf16) {
        matvec_rows(W, X, bias, rows, cols, N, Y, accumulate);
        return;
      }
      const int cp = even_up(cols);
      if (w16.empty()) {
        w16.resize(static_cast<size_t>(rows) * cp);
        rows_to_bf16(W, cols, cols, 0, rows, w16.data(), cp);
      }
      x16.resize(static_cast<size_t>(N) * cp);
      rows_to_bf16(X, cols, cols, 0, N, x16.data(), cp);
      matvec_rows_bf16(w16.data(), x16.data(), bias, rows, cols, N, Y, accumulate);
      return;
    }
    const int pn = ceil_div(rows, kNR), pm = ceil_div(N, kMR);
    if (packed.empty()) {
      if (bf16) {
        packed.resize((packed_b_size_bf16(cols, rows) + 1) / 2);
        pack_b_panels_bf16(true, cols, rows, W, cols, reinterpret_cast<bf16_t*>(packed.data()),
                           0, pn);
      } else {
        packed.resize(packed_b_size(cols, rows));
        pack_b_panels(true, cols, rows, W, cols, packed.data(), 0, pn);
      }
    }
    if (!accumulate) {
      for (int n = 0; n < N; ++n) {
        float* y = Y + static_cast<size_t>(n) * rows;
        for (int r = 0; r < rows; ++r) y[r] = bias ? bias[r] : 0.f;
      }
    }
#pragma omp parallel if (static_cast<long>(N) * rows * cols > 200000)
    {
      int lo, hi;
      split_range(pn, omp_team(), omp_rank(), &lo, &hi);
      if (bf16)
        BF16::gemm(N, rows, cols, X, cols, reinterpret_cast<const bf16_t*>(packed.data()), 0,
                   pm, lo, hi, Y, rows, true);
      else
        gemm_panels(N, rows, cols, X, cols, packed.data(), 0, pm, lo, hi, Y, rows, true);
    }
  }
};

inline void char_rnn_generate(const GenArgs& a) {
  const int N = a.N, E = a.E, H = a.H, V = a.V, L = a.layers, GH = a.gates * H;
  const size_t NH = static_cast<size_t>(N) * H;
  std::vector<Linear> lin_i2h, lin_h2h;
  std::vector<std::vector<float>> bias(L);   // lstm/rnn: b_i2h + b_h2h, one add per step saved
  for (int l = 0; l < L; ++l) {
    const int in_l = l == 0 ? E : H;
    const float* w = a.layer_w[l];
    const float* b_i2h = w + static_cast<size_t>(GH) * (in_l + H);
    lin_i2h.push_back(Linear{w, GH, in_l, a.bf16, {}, {}, {}});
    lin_h2h.push_back(Linear{w + static_cast<size_t>(GH) * in_l, GH, H, a.bf16, {}, {}, {}});
    bias[l].resize(GH);
    for (int g = 0; g < GH; ++g) bias[l][g] = b_i2h[g] + b_i2h[GH + g];
  }
  Linear lin_dec{a.dec_w, V, H, a.bf16, {}, {}, {}};
  std::vector<int> ids(a.ids_in, a.ids_in + N);
  std::vector<float> pre(static_cast<size_t>(N) * GH), hh(static_cast<size_t>(N) * GH);
  std::vector<float> logits(static_cast<size_t>(N) * V), next(N);
  std::vector<float> x(static_cast<size_t>(N) * std::max(E, H));
  const bool parallel_rows = N >= kGemmMinBatch;

  for (int t = 0; t < a.length; ++t) {
    for (int n = 0; n < N; ++n)                                  // embedding lookup
      std::memcpy(x.data() + static_cast<size_t>(n) * E,
                  a.embed + static_cast<size_t>(ids[n]) * E, sizeof(float) * E);
    int in_size = E;
    for (int l = 0; l < L; ++l) {
      const float* b_i2h = a.layer_w[l] + static_cast<size_t>(GH) * (in_size + H);
      const float* b_h2h = b_i2h + GH;
      float* h = a.states[l * a.per_layer];                      // (N, H), updated in place
      if (a.mode == kGru) {   // the reset gate scales only the h2h term: keep it apart
        lin_i2h[l].apply(x.data(), N, nullptr, pre.data(), false);
        lin_h2h[l].apply(h, N, nullptr, hh.data(), false);
      } else {
        lin_i2h[l].apply(x.data(), N, nullptr, pre.data(), false);
        lin_h2h[l].apply(h, N, nullptr, pre.data(), true);
      }
#pragma omp parallel for schedule(static) if (parallel_rows)
      for (int n = 0; n < N; ++n) {
        const float* pre_n = pre.data() + static_cast<size_t>(n) * GH;
        float* h_n = h + static_cast<size_t>(n) * H;
        if (a.mode == kLstm) {
          float* c_n = a.states[l * 2 + 1] + static_cast<size_t>(n) * H;
          lstm_cell_forward<false>(pre_n, bias[l].data(), c_n, c_n, h_n, nullptr, H, 0, H);
        } else if (a.mode == kGru) {
          gru_cell_forward<false>(pre_n, hh.data() + static_cast<size_t>(n) * GH, b_i2h, b_h2h,
                                  h_n, h_n, nullptr, H, 0, H);
        } else {
          for (int j = 0; j < H; ++j) {
            const float v = pre_n[j] + bias[l][j];
            h_n[j] = a.mode == kRnnTanh ? std::tanh(v) : std::max(v, 0.f);
          }
        }
      }
      std::memcpy(x.data(), h, sizeof(float) * NH);              // next layer's input
      in_size = H;
    }
    lin_dec.apply(x.data(), N, a.dec_b, logits.data(), false);
    sample_rows(logits.data(), N, V, a.sampling, a.rng, next.data());
    for (int n = 0; n < N; ++n) {
      a.ids_out[static_cast<size_t>(n) * a.length + t] = next[n];
      ids[n] = static_cast<int>(next[n]);
    }
  }
}

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
