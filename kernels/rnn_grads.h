// The part of a recurrent layer's backward pass that does not depend on the
// recurrence, shared by lstm.h and gru.h: once the recurrence has produced
// the gradients of the pre-activations, every weight gradient, bias gradient
// and the input gradient is one big GEMM or reduction over all T * N rows.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "gemm.h"

namespace mxgen {

// Panels [j0, j1) of pack_b_panels(false, K, N, B, N, ...) for a row-major
// (K, N) B, and in the same pass the column sums of those panels' columns,
// each summed in row order: sum[n] = sum_k B[k][n].
inline void pack_rows_colsum(int K, int N, const float* B, float* Bp, float* sum, int j0,
                             int j1) {
  for (int j = j0; j < j1; ++j) {
    float* dst = Bp + static_cast<size_t>(j) * K * kNR;
    const int n0 = j * kNR, nn = std::min(kNR, N - n0);
    float acc[kNR] = {};
    for (int k = 0; k < K; ++k) {
      const float* src = B + static_cast<size_t>(k) * N + n0;
      float* d = dst + static_cast<size_t>(k) * kNR;
      if (nn == kNR) {
#pragma omp simd
        for (int c = 0; c < kNR; ++c) {
          d[c] = src[c];
          acc[c] += src[c];
        }
      } else {
        for (int c = 0; c < kNR; ++c) {
          const float v = c < nn ? src[c] : 0.f;
          d[c] = v;
          acc[c] += v;
        }
      }
    }
    std::copy(acc, acc + nn, sum + n0);
  }
}

// da_i / da_h (T*N, G): gradients of the i2h and h2h pre-activations (the same
// array for LSTM; GRU's differ in the candidate block).  x (T*N, I) the layer
// input, h0 (N, H) and y (T*N, H) its states, so h_prev of row r is h0 for the
// first N rows and y[r - N] after.  Writes dw_i2h (G, I), dw_h2h (G, H) and
// the bias gradients (column sums, taken while packing), and dx = da_i W_i2h.
//
// The weight gradients are computed as dW^T = Z^T dA, so that dA, the big
// operand, is packed ONCE (as B) for every product it takes part in.
inline void sequence_grads(int T, int N, int I, int H, int G, const float* x, const float* h0,
                           const float* y, const float* w_i2h, const float* da_i,
                           const float* da_h, float* dx, float* dw_i2h, float* dw_h2h,
                           float* db_i2h, float* db_h2h) {
  const int rows = T * N;
  const bool shared = da_i == da_h;
  float* dai_packed = scratch(3, packed_b_size(rows, G)).data();
  float* dah_packed = shared ? dai_packed : scratch(5, packed_b_size(rows, G)).data();
  float* xt_packed = scratch(0, packed_a_size(I, rows) + packed_a_size(H, rows)).data();
  float* ht_packed = xt_packed + packed_a_size(I, rows);
  std::vector<float> dwt(static_cast<size_t>(I + H) * G);   // [dW_i2h^T; dW_h2h^T]
  const int pi = ceil_div(I, kMR), ph = ceil_div(H, kMR), pg = ceil_div(G, kNR);
#pragma omp parallel
  {
    const int team = omp_team(), rank = omp_rank();
    int lo, hi;
    split_range(pg, team, rank, &lo, &hi);
    pack_rows_colsum(rows, G, da_i, dai_packed, db_i2h, lo, hi);
    if (shared && lo < hi)
      std::copy(db_i2h + lo * kNR, db_i2h + std::min(G, hi * kNR), db_h2h + lo * kNR);
    else if (!shared)
      pack_rows_colsum(rows, G, da_h, dah_packed, db_h2h, lo, hi);
    split_range(pi, team, rank, &lo, &hi);
    pack_at_rows(x, I, I, rows, 0, rows, xt_packed, lo, hi);
    split_range(ph, team, rank, &lo, &hi);
    pack_at_rows(h0, H, H, rows, 0, N, ht_packed, lo, hi);
    pack_at_rows(y, H, H, rows, N, rows - N, ht_packed, lo, hi);
#pragma omp barrier
    split_range(pg, team, rank, &lo, &hi);
    gemm_panels(I, G, rows, xt_packed, -1, dai_packed, 0, pi, lo, hi, dwt.data(), G, false);
    gemm_panels(H, G, rows, ht_packed, -1, dah_packed, 0, ph, lo, hi,
                dwt.data() + static_cast<size_t>(I) * G, G, false);
#pragma omp barrier
    // transpose into MXNet's (G, I) and (G, H) blocks
    split_range(G, team, rank, &lo, &hi);
    for (int g = lo; g < hi; ++g) {
      for (int i = 0; i < I; ++i)
        dw_i2h[static_cast<size_t>(g) * I + i] = dwt[static_cast<size_t>(i) * G + g];
      for (int h = 0; h < H; ++h)
        dw_h2h[static_cast<size_t>(g) * H + h] = dwt[static_cast<size_t>(I + h) * G + g];
    }
  }
  sgemm(false, false, rows, I, G, da_i, G, w_i2h, I, 0.f, dx, I);
}

}  // namespace mxgen
