// One GRU layer over a whole sequence, forward and backward, for training.
//
// Same arithmetic and weight layout as MXNet's fused RNN operator for one
// unidirectional GRU layer: w = [W_i2h (3H, I), W_h2h (3H, H), b_i2h (3H),
// b_h2h (3H)], gates r (reset), z (update), n (candidate):
//   r = sigmoid(xW_r + b_ir + hW_r + b_hr)      z likewise
//   n = tanh(xW_n + b_in + r * (hW_n + b_hn))   (r scales the h2h term, bias included)
//   h' = (1 - z) * n + z * h
// The time loops and the gradients after them are recurrent.h's, shared with
// the LSTM.  Because r multiplies only the h2h part of the candidate, the
// per-step GEMM writes its own buffer instead of adding onto the input
// projections, and the backward pass has two pre-activation gradients (i2h
// and h2h) that differ in the candidate block.  The forward pass saves
// ws = [r z n hn] (T, N, 4H), hn = hW_n + b_hn (for bfloat16 layers in
// bfloat16: the first 2H floats of each row).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "activations.h"
#include "dispatch.h"
#include "gemm.h"
#include "recurrent.h"

#include "isa_namespace.h"

namespace mxgen {
namespace MXGEN_ISA_NS {

// Gate arithmetic for one row, units [u0, u1): pre = x W_i2h^T (3H), hh =
// h_prev W_h2h^T (3H), biases b_i2h / b_h2h; writes h, and for training
// (kSave) saves [r z n hn] (4H, float32 or bfloat16) in `saved`.
template <bool kSave, typename Saved = float>
inline void gru_cell_forward(const float* pre, const float* hh, const float* b_i,
                             const float* b_h, const float* h_prev, float* h, Saved* saved,
                             int H, int u0, int u1) {
#if MXGEN_ISA_LEVEL >= 2
  for (int u = u0; u < u1; u += 16) {   // activations.h's 16-wide functions
    const __mmask16 m = lanes16(u1 - u);
    auto ld = [&](const float* p, int gate) { return _mm512_maskz_loadu_ps(m, p + gate * H + u); };
    const __m512 r = sigmoid16(_mm512_add_ps(_mm512_add_ps(ld(pre, 0), ld(b_i, 0)),
                                             _mm512_add_ps(ld(hh, 0), ld(b_h, 0))));
    const __m512 z = sigmoid16(_mm512_add_ps(_mm512_add_ps(ld(pre, 1), ld(b_i, 1)),
                                             _mm512_add_ps(ld(hh, 1), ld(b_h, 1))));
    const __m512 hn = _mm512_add_ps(ld(hh, 2), ld(b_h, 2));
    const __m512 n = tanh16(_mm512_fmadd_ps(r, hn, _mm512_add_ps(ld(pre, 2), ld(b_i, 2))));
    // (1 - z) n + z h_prev
    const __m512 keep = _mm512_mul_ps(z, ld(h_prev, 0));
    _mm512_mask_storeu_ps(h + u, m, _mm512_fnmadd_ps(z, n, _mm512_add_ps(n, keep)));
    if (kSave) store16_blocks(saved, H, u, m, r, z, n, hn);
  }
#else
#pragma omp simd
  for (int u = u0; u < u1; ++u) {
    const float r = sigmoid(pre[u] + b_i[u] + hh[u] + b_h[u]);
    const float z = sigmoid(pre[H + u] + b_i[H + u] + hh[H + u] + b_h[H + u]);
    const float hn = hh[2 * H + u] + b_h[2 * H + u];
    const float n = fast_tanh(pre[2 * H + u] + b_i[2 * H + u] + r * hn);
    h[u] = (1.f - z) * n + z * h_prev[u];
    if (kSave) {
      store_as(saved + u, r);
      store_as(saved + H + u, z);
      store_as(saved + 2 * H + u, n);
      store_as(saved + 3 * H + u, hn);
    }
  }
#endif
}

// Backward of one row for units [u0, u1): dh_next (in: from step t+1; out:
// the direct part dh * z of the gradient for h_prev, to which the caller
// adds da_h W_h2h), writes da_i and da_h (3H each, P's Act type) and adds
// them to the bias gradients db_i and db_h (3H each, float32).
template <typename P>
inline void gru_cell_backward(const typename P::Act* saved, const float* h_prev, const float* dy,
                              float* dh_next, typename P::Act* da_i, typename P::Act* da_h,
                              float* db_i, float* db_h, int H, int u0, int u1) {
#pragma omp simd
  for (int u = u0; u < u1; ++u) {
    const float r = load_as(saved + u), z = load_as(saved + H + u);
    const float n = load_as(saved + 2 * H + u), hn = load_as(saved + 3 * H + u);
    const float dh = dy[u] + dh_next[u];
    const float dn = dh * (1.f - z) * (1.f - n * n);
    const float dr = dn * hn * r * (1.f - r);
    const float dz = dh * (h_prev[u] - n) * z * (1.f - z);
    const float dnr = dn * r;
    da_i[u] = da_h[u] = P::act(dr);
    da_i[H + u] = da_h[H + u] = P::act(dz);
    da_i[2 * H + u] = P::act(dn);
    da_h[2 * H + u] = P::act(dnr);
    db_i[u] += dr;
    db_i[H + u] += dz;
    db_i[2 * H + u] += dn;
    db_h[u] += dr;
    db_h[H + u] += dz;
    db_h[2 * H + u] += dnr;
    dh_next[u] = dh * z;
  }
}

// x (T, N, I), h0 (N, H) -> y (T, N, H), hT (N, H), and for training ws
// (T, N, 4H) (null: inference, nothing saved).
template <typename P>
inline void gru_forward_p(const GruShape& s, const float* x, const float* h0, const float* w,
                        float* y, float* hT, float* ws) {
  const int T = s.T, N = s.N, I = s.I, H = s.H, G = 3 * H;
  const float* w_i2h = w;
  const float* w_h2h = w + static_cast<size_t>(G) * I;
  const float* b_i2h = w_h2h + static_cast<size_t>(G) * H;
  const float* b_h2h = b_i2h + G;
  std::vector<float> hh(static_cast<size_t>(N) * G);   // h_prev W_h2h^T of one step
  recurrent_forward<P>(T, N, I, H, G, x, h0, w_i2h, w_h2h, y, hh.data(),
                    [&](int t, const float* pre_t, int u0, int u1) {
    const float* h_prev = t == 0 ? h0 : y + static_cast<size_t>(t - 1) * N * H;
    for (int n = 0; n < N; ++n) {
      const size_t row = static_cast<size_t>(t) * N + n;
      const float* pre_n = pre_t + static_cast<size_t>(n) * G;
      const float* hh_n = hh.data() + static_cast<size_t>(n) * G;
      const float* h_prev_n = h_prev + static_cast<size_t>(n) * H;
      if (ws)
        gru_cell_forward<true>(pre_n, hh_n, b_i2h, b_h2h, h_prev_n, y + row * H,
                               reinterpret_cast<typename P::Act*>(ws + row * 4 * H), H, u0, u1);
      else
        gru_cell_forward<false, float>(pre_n, hh_n, b_i2h, b_h2h, h_prev_n, y + row * H,
                                       nullptr, H, u0, u1);
    }
  });
  std::memcpy(hT, y + static_cast<size_t>(T - 1) * N * H, sizeof(float) * N * H);
}

// Gradients of gru_forward.  dy (T, N, H), dhT (N, H) -> dx (T, N, I), dh0
// (N, H), dw (flat, like w).  Needs the forward's y and ws.
template <typename P>
inline void gru_backward_p(const GruShape& s, const float* dy, const float* dhT, const float* x,
                         const float* h0, const float* w, const float* y, const float* ws,
                         float* dx, float* dh0, float* dw) {
  const int T = s.T, N = s.N, I = s.I, H = s.H, G = 3 * H;
  const float* w_i2h = w;
  const float* w_h2h = w + static_cast<size_t>(G) * I;
  float* dw_i2h = dw;
  float* dw_h2h = dw + static_cast<size_t>(G) * I;
  float* db_i2h = dw_h2h + static_cast<size_t>(G) * H;
  float* db_h2h = db_i2h + G;
  const int ld = P::act_ld(G);
  typename P::Act* da_i = act_rows<P>(0, T * N, G);   // (T*N, G), row stride ld
  typename P::Act* da_h = act_rows<P>(1, T * N, G);
  std::memcpy(dh0, dhT, sizeof(float) * N * H);   // dh0 carries dh through the loop
  std::fill(db_i2h, db_i2h + 2 * G, 0.f);         // db_h2h follows db_i2h
  // each row leaves dh * z in dh0; the loop adds da_h_t W_h2h
  recurrent_backward<P>(T, N, H, G, w_h2h, da_h, ld, dh0, true,
                        [&](size_t row, int u0, int u1) {
    const size_t n = row % N;
    const float* h_prev = row < static_cast<size_t>(N) ? h0 + n * H : y + (row - N) * H;
    gru_cell_backward<P>(reinterpret_cast<const typename P::Act*>(ws + row * 4 * H), h_prev,
                         dy + row * H, dh0 + n * H, da_i + row * ld, da_h + row * ld, db_i2h,
                         db_h2h, H, u0, u1);
  });
  sequence_grads<P>(T, N, I, H, G, x, h0, y, w_i2h, da_i, da_h, ld, dx, dw_i2h, dw_h2h);
}

// The float32 or the bfloat16 GEMMs, as the shape says.
inline void gru_forward(const GruShape& s, const float* x, const float* h0, const float* w,
                        float* y, float* hT, float* ws) {
  if (s.bf16)
    gru_forward_p<BF16>(s, x, h0, w, y, hT, ws);
  else
    gru_forward_p<F32>(s, x, h0, w, y, hT, ws);
}

inline void gru_backward(const GruShape& s, const float* dy, const float* dhT, const float* x,
                         const float* h0, const float* w, const float* y, const float* ws,
                         float* dx, float* dh0, float* dw) {
  if (s.bf16)
    gru_backward_p<BF16>(s, dy, dhT, x, h0, w, y, ws, dx, dh0, dw);
  else
    gru_backward_p<F32>(s, dy, dhT, x, h0, w, y, ws, dx, dh0, dw);
}

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
