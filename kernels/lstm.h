// One LSTM layer over a whole sequence, forward and backward, for training.
//
// Same arithmetic and weight layout as MXNet's fused RNN operator for one
// unidirectional layer: w = [W_i2h (4H, I), W_h2h (4H, H), b_i2h (4H),
// b_h2h (4H)], gates i, f, g, o.  The time loops and the gradients after them
// are recurrent.h's (shared with the GRU): every GEMM that does not depend on
// the recurrence is a big one (input projections in cache-sized chunks
// forward; dx, dW and db in 256-row blocks backward), the recurrence is T
// small GEMMs against weights packed once per call.  This file holds the
// LSTM's gate arithmetic.  The forward pass saves the activated gates and
// cells ("ws", (T, N, 5H): per row the gates [i f g o], in float32 (4H) or,
// for bfloat16 layers, bfloat16 (the first 2H floats), then the float32 cell
// at 4H) for the backward pass.
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

// Gate arithmetic for one row, units [u0, u1): pre = x W_i2h^T + h W_h2h^T
// (no bias yet, 4H); writes h and c.  Training (kSave) also saves the gates
// [i f g o] (4H, float32 or bfloat16) in `gates`.
template <bool kSave, typename Saved = float>
inline void lstm_cell_forward(const float* pre, const float* bias, const float* c_prev,
                              float* c, float* h, Saved* gates, int H, int u0, int u1) {
#if MXGEN_ISA_LEVEL >= 2
  for (int u = u0; u < u1; u += 16) {   // activations.h's 16-wide functions
    const __mmask16 m = lanes16(u1 - u);
    auto in = [&](int gate) {
      const int at = gate * H + u;
      return _mm512_add_ps(_mm512_maskz_loadu_ps(m, pre + at), _mm512_maskz_loadu_ps(m, bias + at));
    };
    const __m512 ig = sigmoid16(in(0)), fg = sigmoid16(in(1)), gg = tanh16(in(2));
    const __m512 og = sigmoid16(in(3));
    const __m512 cell = _mm512_fmadd_ps(fg, _mm512_maskz_loadu_ps(m, c_prev + u),
                                        _mm512_mul_ps(ig, gg));
    _mm512_mask_storeu_ps(h + u, m, _mm512_mul_ps(og, tanh16(cell)));
    _mm512_mask_storeu_ps(c + u, m, cell);
    if (kSave) store16_blocks(gates, H, u, m, ig, fg, gg, og);
  }
#else
#pragma omp simd
  for (int u = u0; u < u1; ++u) {
    const float ig = sigmoid(pre[u] + bias[u]);
    const float fg = sigmoid(pre[H + u] + bias[H + u]);
    const float gg = fast_tanh(pre[2 * H + u] + bias[2 * H + u]);
    const float og = sigmoid(pre[3 * H + u] + bias[3 * H + u]);
    const float cell = fg * c_prev[u] + ig * gg;
    h[u] = og * fast_tanh(cell);
    c[u] = cell;
    if (kSave) {
      store_as(gates + u, ig);
      store_as(gates + H + u, fg);
      store_as(gates + 2 * H + u, gg);
      store_as(gates + 3 * H + u, og);
    }
  }
#endif
}

// Backward of one cell for units [u0, u1): the saved gates (4H, P's Act
// type) and cell c (H), dh (incoming), dc (in: from step t+1; out: to step
// t-1); writes the pre-activation gradient da (4H, P's Act type) and adds it
// to the bias gradient db (4H, float32).
template <typename P>
inline void lstm_cell_backward(const typename P::Act* gates, const float* c,
                               const float* c_prev, const float* dy, const float* dh_next,
                               float* dc, typename P::Act* da, float* db, int H, int u0, int u1) {
#if MXGEN_ISA_LEVEL >= 2
  const __m512 one = _mm512_set1_ps(1.f);
  for (int u = u0; u < u1; u += 16) {   // the loop below, 16 units at a time
    const __mmask16 m = lanes16(u1 - u);
    auto ld = [&](const float* p) { return _mm512_maskz_loadu_ps(m, p + u); };
    const __m512 ig = load16_as(gates + u, m), fg = load16_as(gates + H + u, m);
    const __m512 gg = load16_as(gates + 2 * H + u, m), og = load16_as(gates + 3 * H + u, m);
    const __m512 tc = tanh16(ld(c));
    const __m512 dh = _mm512_add_ps(ld(dy), ld(dh_next));
    const __m512 dcell = _mm512_fmadd_ps(_mm512_mul_ps(dh, og), _mm512_fnmadd_ps(tc, tc, one),
                                         ld(dc));
    // products in the scalar loop's order
    const __m512 di = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dcell, gg), ig),
                                    _mm512_sub_ps(one, ig));
    const __m512 df = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dcell, ld(c_prev)), fg),
                                    _mm512_sub_ps(one, fg));
    const __m512 dg = _mm512_mul_ps(_mm512_mul_ps(dcell, ig), _mm512_fnmadd_ps(gg, gg, one));
    const __m512 d_o = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dh, tc), og),
                                     _mm512_sub_ps(one, og));
    const __m512 d[4] = {di, df, dg, d_o};
    for (int q = 0; q < 4; ++q) {
      store16_as(da + q * H + u, d[q], m);
      float* b = db + q * H + u;
      _mm512_mask_storeu_ps(b, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, b), d[q]));
    }
    _mm512_mask_storeu_ps(dc + u, m, _mm512_mul_ps(dcell, fg));
  }
#else
#pragma omp simd
  for (int u = u0; u < u1; ++u) {
    const float ig = load_as(gates + u), fg = load_as(gates + H + u);
    const float gg = load_as(gates + 2 * H + u), og = load_as(gates + 3 * H + u);
    const float tc = fast_tanh(c[u]);
    const float dh = dy[u] + dh_next[u];
    const float dcell = dc[u] + dh * og * (1.f - tc * tc);
    const float di = dcell * gg * ig * (1.f - ig);
    const float df = dcell * c_prev[u] * fg * (1.f - fg);
    const float dg = dcell * ig * (1.f - gg * gg);
    const float d_o = dh * tc * og * (1.f - og);
    da[u] = P::act(di);
    da[H + u] = P::act(df);
    da[2 * H + u] = P::act(dg);
    da[3 * H + u] = P::act(d_o);
    db[u] += di;
    db[H + u] += df;
    db[2 * H + u] += dg;
    db[3 * H + u] += d_o;
    dc[u] = dcell * fg;
  }
#endif
}

// x (T, N, I), h0/c0 (N, H) -> y (T, N, H), hT/cT (N, H), and for training
// ws (T, N, 5H).  ws null: inference (priming, validation), nothing saved;
// the cells live in two (N, H) buffers used in turn.
template <typename P>
inline void lstm_forward_p(const LstmShape& s, const float* x, const float* h0, const float* c0,
                         const float* w, float* y, float* hT, float* cT, float* ws) {
  const int T = s.T, N = s.N, I = s.I, H = s.H, G = 4 * H;
  const float* w_i2h = w;
  const float* w_h2h = w + static_cast<size_t>(G) * I;
  const float* b_i2h = w_h2h + static_cast<size_t>(G) * H;
  const float* b_h2h = b_i2h + G;
  std::vector<float> bias(G);
  for (int g = 0; g < G; ++g) bias[g] = b_i2h[g] + b_h2h[g];
  const size_t NH = static_cast<size_t>(N) * H;
  float* cells = ws ? nullptr : scratch(7, 2 * NH).data();
  // the cells of step t: ws's c block in training, else buffer t % 2 (row stride H)
  auto cell_of = [&](int t, int n) -> float* {
    const size_t row = static_cast<size_t>(t) * N + n;
    return ws ? ws + row * 5 * H + 4 * H : cells + (t % 2) * NH + static_cast<size_t>(n) * H;
  };
  recurrent_forward<P>(T, N, I, H, G, x, h0, w_i2h, w_h2h, y, nullptr,
                    [&](int t, const float* pre_t, int u0, int u1) {
    for (int n = 0; n < N; ++n) {
      const size_t row = static_cast<size_t>(t) * N + n;
      const float* c_prev = t == 0 ? c0 + static_cast<size_t>(n) * H : cell_of(t - 1, n);
      const float* pre_n = pre_t + static_cast<size_t>(n) * G;
      if (ws)   // the row's gates, then its cell at 4H (the cell is float32 in both)
        lstm_cell_forward<true>(pre_n, bias.data(), c_prev, cell_of(t, n), y + row * H,
                                reinterpret_cast<typename P::Act*>(ws + row * 5 * H), H, u0,
                                u1);
      else
        lstm_cell_forward<false, float>(pre_n, bias.data(), c_prev, cell_of(t, n),
                                        y + row * H, nullptr, H, u0, u1);
    }
  });
  std::memcpy(hT, y + static_cast<size_t>(T - 1) * NH, sizeof(float) * NH);
  for (int n = 0; n < N; ++n)
    std::memcpy(cT + static_cast<size_t>(n) * H, cell_of(T - 1, n), sizeof(float) * H);
}

// Gradients of lstm_forward.  dy (T, N, H), dhT/dcT (N, H) -> dx (T, N, I),
// dh0/dc0 (N, H), dw (flat, like w).  Needs the forward's y and ws.
template <typename P>
inline void lstm_backward_p(const LstmShape& s, const float* dy, const float* dhT,
                          const float* dcT, const float* x, const float* h0, const float* c0,
                          const float* w, const float* y, const float* ws, float* dx,
                          float* dh0, float* dc0, float* dw) {
  const int T = s.T, N = s.N, I = s.I, H = s.H, G = 4 * H;
  const float* w_i2h = w;
  const float* w_h2h = w + static_cast<size_t>(G) * I;
  float* dw_i2h = dw;
  float* dw_h2h = dw + static_cast<size_t>(G) * I;
  float* db_i2h = dw_h2h + static_cast<size_t>(G) * H;
  float* db_h2h = db_i2h + G;
  const int ld = P::act_ld(G);
  typename P::Act* da = act_rows<P>(0, T * N, G);   // (T*N, G), row stride ld
  std::memcpy(dh0, dhT, sizeof(float) * N * H);   // dh0/dc0 carry dh/dc through the loop
  std::memcpy(dc0, dcT, sizeof(float) * N * H);
  std::fill(db_i2h, db_i2h + G, 0.f);
  recurrent_backward<P>(T, N, H, G, w_h2h, da, ld, dh0, false,
                        [&](size_t row, int u0, int u1) {
    const size_t n = row % N;
    const float* c_prev = row < static_cast<size_t>(N) ? c0 + n * H
                                                       : ws + (row - N) * 5 * H + 4 * H;
    const float* ws_row = ws + row * 5 * H;
    lstm_cell_backward<P>(reinterpret_cast<const typename P::Act*>(ws_row), ws_row + 4 * H,
                          c_prev, dy + row * H, dh0 + n * H, dc0 + n * H, da + row * ld, db_i2h,
                          H, u0, u1);
  });
  std::copy(db_i2h, db_i2h + G, db_h2h);   // one pre-activation, two biases
  sequence_grads<P>(T, N, I, H, G, x, h0, y, w_i2h, da, da, ld, dx, dw_i2h, dw_h2h);
}

// The float32 or the bfloat16 GEMMs, as the shape says.
inline void lstm_forward(const LstmShape& s, const float* x, const float* h0, const float* c0,
                         const float* w, float* y, float* hT, float* cT, float* ws) {
  if (s.bf16)
    lstm_forward_p<BF16>(s, x, h0, c0, w, y, hT, cT, ws);
  else
    lstm_forward_p<F32>(s, x, h0, c0, w, y, hT, cT, ws);
}

inline void lstm_backward(const LstmShape& s, const float* dy, const float* dhT,
                          const float* dcT, const float* x, const float* h0, const float* c0,
                          const float* w, const float* y, const float* ws, float* dx,
                          float* dh0, float* dc0, float* dw) {
  if (s.bf16)
    lstm_backward_p<BF16>(s, dy, dhT, dcT, x, h0, c0, w, y, ws, dx, dh0, dc0, dw);
  else
    lstm_backward_p<F32>(s, dy, dhT, dcT, x, h0, c0, w, y, ws, dx, dh0, dc0, dw);
}

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
