// One LSTM layer over a whole sequence, forward and backward, for training.
//
// Same arithmetic and weight layout as MXNet's fused RNN operator for one
// unidirectional layer: w = [W_i2h (4H, I), W_h2h (4H, H), b_i2h (4H),
// b_h2h (4H)], gates i, f, g, o.  The work is the classic split:
//   * every GEMM that does not depend on the recurrence is a big GEMM: over
//     chunks of ~128 rows that stay in cache forward (x W_i2h^T), over all
//     T * N rows backward (dx, dW_i2h, dW_h2h; db summed while packing);
//   * the recurrence is T small GEMMs (N x H times H x 4H, and back) against
//     weights packed once per call, inside ONE OpenMP parallel region: two
//     barriers per step forward (threads split the GEMM by column panels and
//     the gate arithmetic by hidden units), one backward (each thread owns
//     whole panels of hidden units for both).
// The forward pass saves the activated gates and cells ("ws", (T, N, 5H)) for
// the backward pass.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "activations.h"
#include "gemm.h"
#include "rnn_grads.h"

namespace mxgen {

// Gate arithmetic for rows n, units [u0, u1): pre = x W_i2h^T + h W_h2h^T (no
// bias yet, 4H), writes h and ws = [i f g o c] (5H).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
inline void lstm_cell_forward(const float* pre, const float* bias, const float* c_prev,
                              float* h, float* ws, int H, int u0, int u1) {
#pragma omp simd
  for (int u = u0; u < u1; ++u) {
    const float ig = sigmoid(pre[u] + bias[u]);
    const float fg = sigmoid(pre[H + u] + bias[H + u]);
    const float gg = fast_tanh(pre[2 * H + u] + bias[2 * H + u]);
    const float og = sigmoid(pre[3 * H + u] + bias[3 * H + u]);
    const float c = fg * c_prev[u] + ig * gg;
    h[u] = og * fast_tanh(c);
    ws[u] = ig;
    ws[H + u] = fg;
    ws[2 * H + u] = gg;
    ws[3 * H + u] = og;
    ws[4 * H + u] = c;
  }
}

// Backward of one cell for units [u0, u1): dh (incoming), dc (in: from step
// t+1; out: to step t-1), writes the pre-activation gradient da (4H).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
inline void lstm_cell_backward(const float* ws, const float* c_prev, const float* dy,
                               const float* dh_next, float* dc, float* da, int H, int u0,
                               int u1) {
#pragma omp simd
  for (int u = u0; u < u1; ++u) {
    const float ig = ws[u], fg = ws[H + u], gg = ws[2 * H + u], og = ws[3 * H + u];
    const float tc = fast_tanh(ws[4 * H + u]);
    const float dh = dy[u] + dh_next[u];
    const float dcell = dc[u] + dh * og * (1.f - tc * tc);
    da[u] = dcell * gg * ig * (1.f - ig);
    da[H + u] = dcell * c_prev[u] * fg * (1.f - fg);
    da[2 * H + u] = dcell * ig * (1.f - gg * gg);
    da[3 * H + u] = dh * tc * og * (1.f - og);
    dc[u] = dcell * fg;
  }
}

struct LstmShape {
  int T, N, I, H;
  size_t weights() const { return 4ul * H * (I + H) + 8ul * H; }
};

// x (T, N, I), h0/c0 (N, H) -> y (T, N, H), hT/cT (N, H), ws (T, N, 5H).
inline void lstm_forward(const LstmShape& s, const float* x, const float* h0, const float* c0,
                         const float* w, float* y, float* hT, float* cT, float* ws) {
  const int T = s.T, N = s.N, I = s.I, H = s.H, G = 4 * H;
  const float* w_i2h = w;
  const float* w_h2h = w + static_cast<size_t>(G) * I;
  const float* b_i2h = w_h2h + static_cast<size_t>(G) * H;
  const float* b_h2h = b_i2h + G;
  std::vector<float> bias(G);
  for (int g = 0; g < G; ++g) bias[g] = b_i2h[g] + b_h2h[g];
  // The input projections x W_i2h^T are computed `chunk` steps at a time
  // (about 128 rows) into a buffer that stays in cache, not for all T*N rows
  // at once: the same GEMM work without streaming a (T*N, 4H) array through
  // memory twice.
  const int chunk = std::max(1, std::min(T, 128 / N));
  float* pre = scratch(2, static_cast<size_t>(chunk) * N * G).data();
  float* wi_packed = scratch(1, packed_b_size(I, G)).data();   // W_i2h^T, (I, G)
  float* w_packed = scratch(3, packed_b_size(H, G)).data();    // W_h2h^T, (H, G)
  const int pn = ceil_div(G, kNR), pm = ceil_div(N, kMR);
#pragma omp parallel
  {
    const int team = omp_team(), rank = omp_rank();
    int j0, j1, u0, u1;
    split_range(pn, team, rank, &j0, &j1);   // each thread packs the panels it multiplies by
    pack_b_panels(true, I, G, w_i2h, I, wi_packed, j0, j1);
    pack_b_panels(true, H, G, w_h2h, H, w_packed, j0, j1);
    split_vectors(H, team, rank, &u0, &u1);   // hidden units for the gate arithmetic
    for (int t = 0; t < T; ++t) {
      if (t % chunk == 0) {
        const int rows = std::min(chunk, T - t) * N;
        gemm_panels(rows, G, I, x + static_cast<size_t>(t) * N * I, I, wi_packed, 0,
                    ceil_div(rows, kMR), j0, j1, pre, G, false);
      }
      const float* h_prev = t == 0 ? h0 : y + static_cast<size_t>(t - 1) * N * H;
      float* pre_t = pre + static_cast<size_t>(t % chunk) * N * G;
      gemm_panels(N, G, H, h_prev, H, w_packed, 0, pm, j0, j1, pre_t, G, true);
#pragma omp barrier
      for (int n = 0; n < N; ++n) {
        const size_t row = static_cast<size_t>(t) * N + n;
        const float* c_prev = t == 0 ? c0 + static_cast<size_t>(n) * H
                                     : ws + (row - N) * 5 * H + 4 * H;
        lstm_cell_forward(pre_t + static_cast<size_t>(n) * G, bias.data(), c_prev,
                          y + row * H, ws + row * 5 * H, H, u0, u1);
      }
#pragma omp barrier
    }
  }
  const size_t last = static_cast<size_t>(T - 1) * N;
  std::memcpy(hT, y + last * H, sizeof(float) * N * H);
  for (int n = 0; n < N; ++n)
    std::memcpy(cT + static_cast<size_t>(n) * H, ws + (last + n) * 5 * H + 4 * H,
                sizeof(float) * H);
}

// Gradients of lstm_forward.  dy (T, N, H), dhT/dcT (N, H) -> dx (T, N, I),
// dh0/dc0 (N, H), dw (flat, like w).  Needs the forward's y and ws.
inline void lstm_backward(const LstmShape& s, const float* dy, const float* dhT,
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
  float* da = scratch(2, static_cast<size_t>(T) * N * G).data();   // (T*N, G)
  float* w_packed = scratch(3, packed_b_size(G, H)).data();       // W_h2h, (G, H)
  const int pn = ceil_div(H, kNR), pm = ceil_div(N, kMR);
  std::memcpy(dh0, dhT, sizeof(float) * N * H);   // dh0/dc0 carry dh/dc through the loop
  std::memcpy(dc0, dcT, sizeof(float) * N * H);
#pragma omp parallel
  {
    const int team = omp_team(), rank = omp_rank();
    int j0, j1, u0, u1;
    // each thread owns whole kNR-unit panels of h: their gate arithmetic and
    // their columns of dh, so only dA_t needs a barrier
    split_range(pn, team, rank, &j0, &j1);
    pack_b_panels(false, G, H, w_h2h, H, w_packed, j0, j1);
    u0 = std::min(H, j0 * kNR);
    u1 = std::min(H, j1 * kNR);
    for (int t = T - 1; t >= 0; --t) {
      float* da_t = da + static_cast<size_t>(t) * N * G;
      for (int n = 0; n < N; ++n) {
        const size_t row = static_cast<size_t>(t) * N + n;
        const float* c_prev = t == 0 ? c0 + static_cast<size_t>(n) * H
                                     : ws + (row - N) * 5 * H + 4 * H;
        lstm_cell_backward(ws + row * 5 * H, c_prev, dy + row * H, dh0 + static_cast<size_t>(n) * H,
                           dc0 + static_cast<size_t>(n) * H, da_t + static_cast<size_t>(n) * G,
                           H, u0, u1);
      }
#pragma omp barrier
      // dh for step t-1: da_t (N, G) W_h2h (G, H)
      gemm_panels(N, H, G, da_t, G, w_packed, 0, pm, j0, j1, dh0, H, false);
    }
  }
  sequence_grads(T, N, I, H, G, x, h0, y, w_i2h, da, da, dx, dw_i2h, dw_h2h, db_i2h, db_h2h);
}

}  // namespace mxgen
