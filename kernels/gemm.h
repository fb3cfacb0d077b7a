// A small single-precision GEMM for mxgen's recurrent kernels.
//
// Why not BLAS: the OpenBLAS inside the mxnet wheel has no AVX-512 kernels
// (it runs Haswell's AVX2 code on AVX-512 CPUs: about half the machine's
// peak), and the oneDNN inside libmxnet.so does not export its sgemm.  The
// recurrent loops also need a GEMM whose right-hand operand (the weights) is
// packed once per call and reused for every time step.
//
// Design (the usual one): op(B) is packed into NR-column panels, k-major and
// zero-padded; a plain A is read in place, row by row, and a transposed one
// is packed into MR-row panels first; an MR x NR register-blocked
// micro-kernel walks K in KC chunks so a B panel chunk stays in L1.  This
// header is compiled once per ISA (kernels_isa.cc): the micro-kernel is the
// AVX-512 one, the AVX2+FMA one or the portable one, fixed at compile time;
// dispatch.cc picks which copy runs.
//
//   sgemm(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc)
//       C (M x N, row-major) = beta * C + op(A) op(B), beta in {0, 1},
//       op(A)(m, k) = ta ? A[k * lda + m] : A[m * lda + k], likewise B.
//       Threads over the OpenMP team.
//
// The lower-level pieces (pack_b_panels, pack_at_rows, gemm_panels) let a
// caller that runs its own parallel region (the LSTM time loop) reuse packed
// weights.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "isa_namespace.h"

namespace mxgen {
namespace MXGEN_ISA_NS {

// Register block (kMR x kNR) per ISA: AVX-512 holds an 8 x 32 tile in 16 of
// its 32 zmm registers; AVX2's 16 ymm registers hold 6 x 16 (12 accumulators,
// two B vectors, one broadcast: 12 independent FMA chains, enough for two
// FMA ports at latency 4-5).  The portable kernel keeps the 8 x 32 layout.
#if MXGEN_ISA_LEVEL == 1
constexpr int kMR = 6;
constexpr int kNR = 16;
#else
constexpr int kMR = 8;     // rows of the register block
constexpr int kNR = 32;    // columns: two 16-float vectors
#endif
constexpr int kKC = 256;   // K chunk: a B panel chunk (up to 32 KB) stays in L1

inline int omp_rank() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline int omp_team() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// [lo, hi) of `count` items for member `rank` of a team of `team`.
inline void split_range(int count, int team, int rank, int* lo, int* hi) {
  const int base = count / team, extra = count % team;
  *lo = rank * base + std::min(rank, extra);
  *hi = *lo + base + (rank < extra ? 1 : 0);
}

// The same for counts past 2^31 (element counts of large arrays).
inline void split_range_long(size_t count, int team, int rank, size_t* lo, size_t* hi) {
  const size_t base = count / team, extra = count % team, r = static_cast<size_t>(rank);
  *lo = r * base + std::min(r, extra);
  *hi = *lo + base + (r < extra ? 1 : 0);
}

// The same in whole vectors of 16 floats, so per-thread vector loops stay aligned.
inline void split_vectors(int count, int team, int rank, int* lo, int* hi) {
  split_range(ceil_div(count, 16), team, rank, lo, hi);
  *lo = std::min(count, *lo * 16);
  *hi = std::min(count, *hi * 16);
}

// ------------------------------------------------------------------ packing
// Panel j of op(B) (K x N): Bp[j * K * kNR + k * kNR + c] = op(B)(k, j * kNR + c).
inline void pack_b_panels(bool tb, int K, int N, const float* B, int ldb, float* Bp, int j0,
                          int j1) {
  for (int j = j0; j < j1; ++j) {
    float* dst = Bp + static_cast<size_t>(j) * K * kNR;
    const int n0 = j * kNR, nn = std::min(kNR, N - n0);
    if (!tb) {
      for (int k = 0; k < K; ++k) {
        float* d = dst + static_cast<size_t>(k) * kNR;
        std::memcpy(d, B + static_cast<size_t>(k) * ldb + n0, sizeof(float) * nn);
        for (int c = nn; c < kNR; ++c) d[c] = 0.f;
      }
    } else {
      for (int c = 0; c < kNR; ++c) {
        if (c < nn) {
          const float* src = B + static_cast<size_t>(n0 + c) * ldb;
          for (int k = 0; k < K; ++k) dst[static_cast<size_t>(k) * kNR + c] = src[k];
        } else {
          for (int k = 0; k < K; ++k) dst[static_cast<size_t>(k) * kNR + c] = 0.f;
        }
      }
    }
  }
}

// Rows [k_begin, k_begin + k_count) of a packed op(A) = S^T, where S is the
// (k_count x M) row-major block `S` with row stride lds: lets one packed
// operand gather its K rows from several arrays.
inline void pack_at_rows(const float* S, int lds, int M, int K, int k_begin, int k_count,
                         float* Ap, int i0, int i1) {
  for (int i = i0; i < i1; ++i) {
    float* dst = Ap + static_cast<size_t>(i) * K * kMR + static_cast<size_t>(k_begin) * kMR;
    const int m0 = i * kMR, mm = std::min(kMR, M - m0);
    for (int k = 0; k < k_count; ++k) {
      const float* src = S + static_cast<size_t>(k) * lds + m0;
      float* d = dst + static_cast<size_t>(k) * kMR;
      for (int r = 0; r < mm; ++r) d[r] = src[r];
      for (int r = mm; r < kMR; ++r) d[r] = 0.f;
    }
  }
}

// ------------------------------------------------------------ micro-kernels
// micro_kernel<kPacked>(K, A, lda, Bp, C, ldc, mm, nn, accumulate):
// C[mm x nn] (row stride ldc) = (accumulate ? C : 0) + A (mm x K) * Bp (K x kNR).
// A is either packed (element (r, k) at A[k * kMR + r], lda ignored) or plain
// row-major with row stride lda (kPacked false; rows past mm are never read).

#if MXGEN_ISA_LEVEL >= 2
// AVX-512: the whole 8 x 32 tile in 16 zmm accumulators.
template <bool kPacked>
void micro_kernel(int K, const float* A, int lda, const float* Bp, float* C, int ldc, int mm,
                  int nn, bool accumulate) {
  __m512 c0[kMR], c1[kMR];
  const float* row[kMR];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r) {
    c0[r] = _mm512_setzero_ps();
    c1[r] = _mm512_setzero_ps();
    row[r] = A + static_cast<size_t>(r < mm ? r : 0) * lda;
  }
  for (int k = 0; k < K; ++k) {
    const __m512 b0 = _mm512_loadu_ps(Bp + static_cast<size_t>(k) * kNR);
    const __m512 b1 = _mm512_loadu_ps(Bp + static_cast<size_t>(k) * kNR + 16);
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      const __m512 av = _mm512_set1_ps(kPacked ? A[static_cast<size_t>(k) * kMR + r] : row[r][k]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
  }
  const __mmask16 m0 = nn >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << nn) - 1);
  const __mmask16 m1 = nn >= 32 ? 0xFFFF
                       : nn <= 16 ? 0 : static_cast<__mmask16>((1u << (nn - 16)) - 1);
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r) {
    if (r >= mm) break;
    float* cr = C + static_cast<size_t>(r) * ldc;
    if (accumulate) {
      c0[r] = _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(m0, cr));
      c1[r] = _mm512_add_ps(c1[r], _mm512_maskz_loadu_ps(m1, cr + 16));
    }
    _mm512_mask_storeu_ps(cr, m0, c0[r]);
    _mm512_mask_storeu_ps(cr + 16, m1, c1[r]);
  }
}
#elif MXGEN_ISA_LEVEL == 1
// AVX2 + FMA: the 6 x 16 tile in 12 ymm accumulators.
template <bool kPacked>
void micro_kernel(int K, const float* A, int lda, const float* Bp, float* C, int ldc, int mm,
                  int nn, bool accumulate) {
  __m256 c0[kMR], c1[kMR];
  const float* row[kMR];
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) {
    c0[r] = _mm256_setzero_ps();
    c1[r] = _mm256_setzero_ps();
    row[r] = A + static_cast<size_t>(r < mm ? r : 0) * lda;
  }
  for (int k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_loadu_ps(Bp + static_cast<size_t>(k) * kNR);
    const __m256 b1 = _mm256_loadu_ps(Bp + static_cast<size_t>(k) * kNR + 8);
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      const __m256 av = _mm256_broadcast_ss(kPacked ? A + static_cast<size_t>(k) * kMR + r
                                                    : row[r] + k);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
  }
  // lane masks for a partial tile: lane c of half h is live iff 8 h + c < nn
  const __m256i lanes = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nn), lanes);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nn - 8), lanes);
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) {
    if (r >= mm) break;
    float* cr = C + static_cast<size_t>(r) * ldc;
    if (nn == kNR) {
      if (accumulate) {
        c0[r] = _mm256_add_ps(c0[r], _mm256_loadu_ps(cr));
        c1[r] = _mm256_add_ps(c1[r], _mm256_loadu_ps(cr + 8));
      }
      _mm256_storeu_ps(cr, c0[r]);
      _mm256_storeu_ps(cr + 8, c1[r]);
    } else {
      if (accumulate) {
        c0[r] = _mm256_add_ps(c0[r], _mm256_maskload_ps(cr, m0));
        c1[r] = _mm256_add_ps(c1[r], _mm256_maskload_ps(cr + 8, m1));
      }
      _mm256_maskstore_ps(cr, m0, c0[r]);
      _mm256_maskstore_ps(cr + 8, m1, c1[r]);
    }
  }
}
#else
// Portable kernel (any x86-64 or other CPU; vectorised by the compiler for
// the baseline ISA).
template <bool kPacked>
void micro_kernel(int K, const float* A, int lda, const float* Bp, float* C, int ldc, int mm,
                  int nn, bool accumulate) {
  float acc[kMR][kNR];
  for (int r = 0; r < kMR; ++r)
    for (int c = 0; c < kNR; ++c) acc[r][c] = 0.f;
  for (int k = 0; k < K; ++k) {
    const float* b = Bp + static_cast<size_t>(k) * kNR;
    for (int r = 0; r < mm; ++r) {
      const float av = kPacked ? A[static_cast<size_t>(k) * kMR + r]
                               : A[static_cast<size_t>(r) * lda + k];
#pragma omp simd
      for (int c = 0; c < kNR; ++c) acc[r][c] += av * b[c];
    }
  }
  for (int r = 0; r < mm; ++r) {
    float* cr = C + static_cast<size_t>(r) * ldc;
    for (int c = 0; c < nn; ++c) cr[c] = (accumulate ? cr[c] : 0.f) + acc[r][c];
  }
}
#endif

// C row panels [i0, i1) x column panels [j0, j1) of op(A) Bp, K in full.  A is
// packed (lda < 0: panel i at A + i * K * kMR) or row-major with row stride
// lda.  `accumulate` false overwrites C.  Single-threaded: callers split work.
inline void gemm_panels(int M, int N, int K, const float* A, int lda, const float* Bp, int i0,
                        int i1, int j0, int j1, float* C, int ldc, bool accumulate) {
  const bool packed = lda < 0;
  constexpr int kMC = 16;   // A panels per block: 128 rows x KC in L2
  for (int k0 = 0; k0 < K; k0 += kKC) {
    const int kc = std::min(kKC, K - k0);
    const bool acc = accumulate || k0 > 0;
    for (int ib = i0; ib < i1; ib += kMC) {
      const int ie = std::min(i1, ib + kMC);
      for (int j = j0; j < j1; ++j) {
        const float* b = Bp + static_cast<size_t>(j) * K * kNR + static_cast<size_t>(k0) * kNR;
        const int nn = std::min(kNR, N - j * kNR);
        for (int i = ib; i < ie; ++i) {
          const int mm = std::min(kMR, M - i * kMR);
          float* c = C + static_cast<size_t>(i) * kMR * ldc + j * kNR;
          if (packed)
            micro_kernel<true>(kc, A + static_cast<size_t>(i) * K * kMR + static_cast<size_t>(k0) * kMR,
                       0, b, c, ldc, mm, nn, acc);
          else
            micro_kernel<false>(kc, A + static_cast<size_t>(i) * kMR * lda + k0, lda, b, c, ldc, mm, nn,
                     acc);
        }
      }
    }
  }
}

inline size_t packed_b_size(int K, int N) { return static_cast<size_t>(ceil_div(N, kNR)) * K * kNR; }
inline size_t packed_a_size(int M, int K) { return static_cast<size_t>(ceil_div(M, kMR)) * K * kMR; }

// Reusable scratch (one set per calling thread of the operator).  Slots:
// 0 sgemm's packed A, sequence_grads' Z^T blocks; 1 sgemm's packed B, the
// forward passes' W_i2h^T, sequence_grads' dW^T; 2 the forward input
// projections, the backward dA (GRU: dA_i); 3 packed W_h2h, then
// sequence_grads' dA block; 4 GRU's dA_h; 5 its block; 6 sequence_grads' W_i2h;
// 7 the LSTM's cells in inference.
inline std::vector<float>& scratch(int slot, size_t n) {
  static thread_local std::vector<float> bufs[8];
  if (bufs[slot].size() < n) bufs[slot].resize(n);
  return bufs[slot];
}

// C = beta * C + op(A) op(B), beta 0 or 1, over the OpenMP team.
inline void sgemm(bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B,
                  int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (beta == 0.f)
      for (int m = 0; m < M; ++m) std::memset(C + static_cast<size_t>(m) * ldc, 0, sizeof(float) * N);
    return;
  }
  const int pm = ceil_div(M, kMR), pn = ceil_div(N, kNR);
  // a plain op(A) is read in place; a transposed one is packed first
  float* Ap = ta ? scratch(0, packed_a_size(M, K)).data() : nullptr;
  const float* a_src = ta ? Ap : A;
  const int a_ld = ta ? -1 : lda;
  float* Bp = scratch(1, packed_b_size(K, N)).data();
  const long work = static_cast<long>(M) * N * K;
#pragma omp parallel if (work > 200000)
  {
    const int team = omp_team(), rank = omp_rank();
    int lo, hi;
    if (ta) {
      split_range(pm, team, rank, &lo, &hi);
      pack_at_rows(A, lda, M, K, 0, K, Ap, lo, hi);
    }
    split_range(pn, team, rank, &lo, &hi);
    pack_b_panels(tb, K, N, B, ldb, Bp, lo, hi);
#pragma omp barrier
    // split the side with more panels, so every thread gets whole panels
    if (pn >= 2 * team || pn >= pm) {
      split_range(pn, team, rank, &lo, &hi);
      gemm_panels(M, N, K, a_src, a_ld, Bp, 0, pm, lo, hi, C, ldc, beta != 0.f);
    } else {
      split_range(pm, team, rank, &lo, &hi);
      gemm_panels(M, N, K, a_src, a_ld, Bp, lo, hi, 0, pn, C, ldc, beta != 0.f);
    }
  }
}

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
