// The structure lstm.h and gru.h share: the time loops (GEMMs against
// weights packed once per call, inside one OpenMP region) with the gate
// arithmetic passed in, and the part of the backward pass that does not
// depend on the recurrence.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "barrier.h"
#include "gemm.h"

#include "isa_namespace.h"

namespace mxgen {
namespace MXGEN_ISA_NS {

// The forward time loop.  Input projections x W_i2h^T are computed `chunk`
// steps (about 128 rows) at a time into a buffer that stays in cache, not for
// all T * N rows at once: the same GEMM work without streaming a (T*N, G)
// array through memory twice.  Each step multiplies h_{t-1} (h0, then y's
// rows) by W_h2h^T: added onto the projections when `hh` is null (LSTM), or
// into `hh` (N, G) (GRU, whose reset gate scales only the h2h part).  Then
// `cells(t, pre_t, u0, u1)` does the gate arithmetic of step t for hidden
// units [u0, u1) of every row and writes y's rows; pre_t (N, G) holds the
// projections (plus h W_h2h^T when hh is null).  Threads split the GEMMs by
// column panels and the cells by units: two barriers per step.  P is the
// precision of the GEMMs (gemm.h's F32 or BF16).
template <typename P, typename Cells>
inline void recurrent_forward(int T, int N, int I, int H, int G, const float* x, const float* h0,
                              const float* w_i2h, const float* w_h2h, float* y, float* hh,
                              Cells cells) {
  const int chunk = std::max(1, std::min(T, 128 / N));
  float* pre = scratch(2, static_cast<size_t>(chunk) * N * G).data();
  typename P::Packed* wi_packed = P::b_buffer(1, P::b_size(I, G));   // W_i2h^T, (I, G)
  typename P::Packed* w_packed = P::b_buffer(3, P::b_size(H, G));    // W_h2h^T, (H, G)
  const int pn = ceil_div(G, kNR), pm = ceil_div(N, kMR);
  TeamBarrier step_barrier;
#pragma omp parallel
  {
    const int team = omp_team(), rank = omp_rank();
    int j0, j1, u0, u1;
    split_range(pn, team, rank, &j0, &j1);   // each thread packs the panels it multiplies by
    P::pack_b(true, I, G, w_i2h, I, wi_packed, j0, j1);
    P::pack_b(true, H, G, w_h2h, H, w_packed, j0, j1);
    split_vectors(H, team, rank, &u0, &u1);   // hidden units for the gate arithmetic
    for (int t = 0; t < T; ++t) {
      if (t % chunk == 0) {
        const int rows = std::min(chunk, T - t) * N;
        P::gemm(rows, G, I, x + static_cast<size_t>(t) * N * I, I, wi_packed, 0,
                ceil_div(rows, kMR), j0, j1, pre, G, false);
      }
      const float* h_prev = t == 0 ? h0 : y + static_cast<size_t>(t - 1) * N * H;
      float* pre_t = pre + static_cast<size_t>(t % chunk) * N * G;
      P::gemm(N, G, H, h_prev, H, w_packed, 0, pm, j0, j1, hh ? hh : pre_t, G, !hh);
      step_barrier.wait(team);
      cells(t, static_cast<const float*>(pre_t), u0, u1);
      step_barrier.wait(team);   // h_t complete before any thread multiplies by it
    }
  }
}

// The backward time loop, t = T-1 .. 0: `cells(row, u0, u1)` turns the
// incoming gradient of each row of step t into pre-activation gradients for
// hidden units [u0, u1), writing da_h's rows (the gradient w.r.t. h W_h2h^T,
// in P's Act type, row stride ld; the bias gradients summed on the way) and
// dh (N, H) (the h_prev gradient's direct part, or nothing to keep); then
// dh = (accumulate ? dh : 0) + da_h_t W_h2h.  Each thread owns whole
// kNR-unit panels of h, for the cells and for its columns of dh, so only
// da_h_t needs a barrier.
template <typename P, typename Cells>
inline void recurrent_backward(int T, int N, int H, int G, const float* w_h2h,
                               const typename P::Act* da_h, int ld, float* dh, bool accumulate,
                               Cells cells) {
  typename P::Packed* w_packed = P::b_buffer(3, P::b_size(G, H));   // W_h2h, (G, H)
  const int pn = ceil_div(H, kNR), pm = ceil_div(N, kMR);
  TeamBarrier step_barrier;
#pragma omp parallel
  {
    const int team = omp_team();
    int j0, j1;
    split_range(pn, team, omp_rank(), &j0, &j1);
    P::pack_b(false, G, H, w_h2h, H, w_packed, j0, j1);
    const int u0 = std::min(H, j0 * kNR), u1 = std::min(H, j1 * kNR);
    for (int t = T - 1; t >= 0; --t) {
      const size_t first = static_cast<size_t>(t) * N;
      for (int n = 0; n < N; ++n) cells(first + n, u0, u1);
      step_barrier.wait(team);   // da_h_t complete: every thread's dh needs all of it
      P::gemm_act(N, H, G, da_h + first * ld, ld, w_packed, 0, pm, j0, j1, dh, H, accumulate);
    }
  }
}

// dst (cols, rows) = src (rows, cols)^T for dst rows [c0, c1), in tiles of
// kTile x kTile: read column by column, a (rows, cols) array of 1,024
// columns touched a new page per element (4 KB rows).
constexpr int kTile = 16;

#if MXGEN_ISA_LEVEL >= 2
// One whole 16 x 16 tile in registers: out row j = column j of the 16 rows
// in.  Pairs of rows interleaved (unpack), then groups of four (shuffle_ps:
// each 128-bit lane then holds one column's 4 values of 4 rows), then the
// 4 x 4 transpose of 128-bit lanes (two rounds of shuffle_f32x4).
inline void transpose16x16(const float* in, size_t ld_in, float* out, size_t ld_out) {
  __m512 r[16], u[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(in + i * ld_in);
  for (int i = 0; i < 16; i += 2) {
    u[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    u[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 16; g += 4) {   // t[g + k], lane L: column 4 L + k of rows g..g + 3
    t[g] = _mm512_shuffle_ps(u[g], u[g + 2], 0x44);
    t[g + 1] = _mm512_shuffle_ps(u[g], u[g + 2], 0xee);
    t[g + 2] = _mm512_shuffle_ps(u[g + 1], u[g + 3], 0x44);
    t[g + 3] = _mm512_shuffle_ps(u[g + 1], u[g + 3], 0xee);
  }
  for (int k = 0; k < 4; ++k) {   // column 4 L + k = lane L of t[k], t[4 + k], t[8 + k], t[12 + k]
    const __m512 ab02 = _mm512_shuffle_f32x4(t[k], t[4 + k], 0x88);
    const __m512 ab13 = _mm512_shuffle_f32x4(t[k], t[4 + k], 0xdd);
    const __m512 cd02 = _mm512_shuffle_f32x4(t[8 + k], t[12 + k], 0x88);
    const __m512 cd13 = _mm512_shuffle_f32x4(t[8 + k], t[12 + k], 0xdd);
    _mm512_storeu_ps(out + k * ld_out, _mm512_shuffle_f32x4(ab02, cd02, 0x88));
    _mm512_storeu_ps(out + (4 + k) * ld_out, _mm512_shuffle_f32x4(ab13, cd13, 0x88));
    _mm512_storeu_ps(out + (8 + k) * ld_out, _mm512_shuffle_f32x4(ab02, cd02, 0xdd));
    _mm512_storeu_ps(out + (12 + k) * ld_out, _mm512_shuffle_f32x4(ab13, cd13, 0xdd));
  }
}
#endif

inline void transpose_tiles(const float* src, int rows, int cols, float* dst, int c0, int c1) {
  for (int cb = c0; cb < c1; cb += kTile) {
    const int ce = std::min(c1, cb + kTile);
    for (int rb = 0; rb < rows; rb += kTile) {
      const int re = std::min(rows, rb + kTile);
#if MXGEN_ISA_LEVEL >= 2
      if (ce - cb == kTile && re - rb == kTile) {
        transpose16x16(src + static_cast<size_t>(rb) * cols + cb, cols,
                       dst + static_cast<size_t>(cb) * rows + rb, rows);
        continue;
      }
#endif
      for (int c = cb; c < ce; ++c)
        for (int r = rb; r < re; ++r)
          dst[static_cast<size_t>(c) * rows + r] = src[static_cast<size_t>(r) * cols + c];
    }
  }
}

// da_i / da_h (T*N rows of stride ld, P's Act type): gradients of the i2h
// and h2h pre-activations (the same array for LSTM; GRU's differ in the
// candidate block).  x (T*N, I) the layer input, h0 (N, H) and y (T*N, H) its
// states, so h_prev of row r is h0 for the first N rows and y[r - N] after.
// Writes dw_i2h (G, I), dw_h2h (G, H) and dx = da_i W_i2h (the bias
// gradients are summed by the time loop's cells).
//
// The weight gradients are dW^T = Z^T dA, accumulated over blocks of kKC
// rows: each block of dA is packed (as the B operand) and used while it is
// still in cache, by dW^T and by the block's rows of dx, so dA is read from
// memory once.
template <typename P>
inline void sequence_grads(int T, int N, int I, int H, int G, const float* x, const float* h0,
                           const float* y, const float* w_i2h, const typename P::Act* da_i,
                           const typename P::Act* da_h, int ld, float* dx, float* dw_i2h,
                           float* dw_h2h) {
  using Packed = typename P::Packed;
  const int rows = T * N;
  const bool shared = da_i == da_h;
  Packed* dai_block = P::b_buffer(3, P::b_size(kKC, G));
  Packed* dah_block = shared ? dai_block : P::b_buffer(5, P::b_size(kKC, G));
  Packed* xt_block = P::a_buffer(P::a_size(I, kKC) + P::a_size(H, kKC));
  Packed* ht_block = xt_block + P::a_size(I, kKC);
  Packed* wi_packed = P::b_buffer(6, P::b_size(G, I));   // W_i2h, (G, I)
  // [dW_i2h^T; dW_h2h^T]: a reused buffer (a fresh 1 MB+ allocation costs a
  // page fault per 4 KB inside the GEMM)
  float* dwt = scratch(1, static_cast<size_t>(I + H) * G).data();
  const int pi = ceil_div(I, kMR), ph = ceil_div(H, kMR), pg = ceil_div(G, kNR);
  const int pni = ceil_div(I, kNR);
  TeamBarrier block_barrier;
#pragma omp parallel
  {
    const int team = omp_team(), rank = omp_rank();
    int jlo, jhi, lo, hi;
    split_range(pg, team, rank, &jlo, &jhi);   // this thread's dA column panels
    split_range(pni, team, rank, &lo, &hi);
    P::pack_b(false, G, I, w_i2h, I, wi_packed, lo, hi);
    for (int r0 = 0; r0 < rows; r0 += kKC) {
      const int kc = std::min(kKC, rows - r0);
      P::pack_act(kc, G, da_i + static_cast<size_t>(r0) * ld, ld, dai_block, jlo, jhi);
      if (!shared)
        P::pack_act(kc, G, da_h + static_cast<size_t>(r0) * ld, ld, dah_block, jlo, jhi);
      // Z^T for rows [r0, r0 + kc): x, and h_prev = h0 for the first N rows, y after
      split_range(pi, team, rank, &lo, &hi);
      P::pack_at(x + static_cast<size_t>(r0) * I, I, I, kc, 0, kc, xt_block, lo, hi);
      const int from_h0 = std::max(0, std::min(kc, N - r0));
      split_range(ph, team, rank, &lo, &hi);
      if (from_h0 > 0)
        P::pack_at(h0 + static_cast<size_t>(r0) * H, H, H, kc, 0, from_h0, ht_block, lo, hi);
      if (kc > from_h0)
        P::pack_at(y + static_cast<size_t>(r0 + from_h0 - N) * H, H, H, kc, from_h0,
                   kc - from_h0, ht_block, lo, hi);
      block_barrier.wait(team);   // the Z^T block and W_i2h are complete
      P::gemm_packed(I, G, kc, xt_block, dai_block, 0, pi, jlo, jhi, dwt, G, r0 > 0);
      P::gemm_packed(H, G, kc, ht_block, dah_block, 0, ph, jlo, jhi,
                     dwt + static_cast<size_t>(I) * G, G, r0 > 0);
      split_range(ceil_div(kc, kMR), team, rank, &lo, &hi);
      P::gemm_act(kc, I, G, da_i + static_cast<size_t>(r0) * ld, ld, wi_packed, lo, hi, 0, pni,
                  dx + static_cast<size_t>(r0) * I, I, false);
      block_barrier.wait(team);   // before the next block overwrites the Z^T block
    }
    // transpose into MXNet's (G, I) and (G, H) blocks
    split_range(ceil_div(G, kTile), team, rank, &lo, &hi);
    transpose_tiles(dwt, I, G, dw_i2h, lo * kTile, std::min(G, hi * kTile));
    transpose_tiles(dwt + static_cast<size_t>(I) * G, H, G, dw_h2h, lo * kTile,
                    std::min(G, hi * kTile));
  }
}

// P's Act buffer `slot` (0 or 1) for the dA of T*N rows, row stride
// P::act_ld(G), with the pad columns past G zeroed and 32 rows of slack (the
// AMX GEMM reads rows in blocks of 32).
template <typename P>
inline typename P::Act* act_rows(int slot, int rows, int G) {
  const int ld = P::act_ld(G);
  typename P::Act* da = P::act_buffer(slot, (static_cast<size_t>(rows) + 32) * ld);
  if (ld > G)
    for (int r = 0; r < rows; ++r)
      std::fill(da + static_cast<size_t>(r) * ld + G, da + static_cast<size_t>(r + 1) * ld,
                typename P::Act{0});
  return da;
}

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
