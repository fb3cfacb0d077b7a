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
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "buffer.h"
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
// Rows [0, mm) x columns [0, nn) of a kMR x 32 register block (c0: columns
// 0-15, c1: 16-31) into C (added to it when accumulating).  Always inlined,
// so the accumulators stay in registers.
__attribute__((always_inline)) inline void store_block(float* C, int ldc, int mm, int nn,
                                                       __m512* c0, __m512* c1, bool accumulate) {
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
  store_block(C, ldc, mm, nn, c0, c1, accumulate);
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
inline Buffer<float>& scratch(int slot, size_t n) {
  static thread_local Buffer<float> bufs[8];
  if (bufs[slot].size() < n) bufs[slot].resize(n);
  return bufs[slot];
}

// ===================================================================== bfloat16
// The same GEMM with bfloat16 operands and float32 accumulation (mixed
// precision: the callers keep float32 everywhere else).  A bfloat16 is the
// top half of a float (8 exponent bits, 8 significand bits), stored as
// uint16_t.  Both AVX512_BF16's VDPBF16PS and AMX's TDPBF16PS multiply
// pairs of them along K and add both products into a float32, so the packed
// B operand holds K pairs:
//
//   packed B panel j: Bp[j * Kp * kNR + kp * 2 * kNR + 2 * c + e]
//                     = bf16(op(B)(2 kp + e, j * kNR + c))
//
// with Kp = pad_k(K) (K rounded up to 2, or to 32 for AMX, the pad zero).
// The A operand: rows of Kp bfloat16 values (converted from float32 as they
// are multiplied), and for VDPBF16PS's packed form K pairs again:
//
//   packed A panel i: Ap[i * Kp * kMR + kp * 2 * kMR + 2 * r + e]
//                     = bf16(op(A)(i * kMR + r, 2 kp + e))
//
// (the AMX path packs A as plain rows instead: its tiles load 16 rows of 32
// values).  Below the avx512_bf16 level the micro-kernel widens the pairs to
// float32 and uses FMAs: the same numbers (a product of two bfloat16 is
// exact in float32), slower than float32 itself, so mxgen never chooses
// bfloat16 there by itself.
using bf16_t = uint16_t;

#if MXGEN_ISA_LEVEL >= 4
constexpr int kKPad = 32;      // a tile row of A: 32 bfloat16
constexpr int kAmxRows = 32;   // rows of C a block computes (two tiles)
#else
constexpr int kKPad = 2;
#endif

inline int even_up(int k) { return k + (k & 1); }
inline int pad_k(int k) { return ceil_div(k, kKPad) * kKPad; }

// float32 -> bfloat16, round to nearest even (NaN stays NaN).
inline bf16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<bf16_t>(bits >> 16);
}

inline float from_bf16(bf16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// One saved activation in float32 or bfloat16 (the recurrent layers keep
// their gates in P::Act, see the precision policies below).
inline void store_as(float* p, float v) { *p = v; }
inline void store_as(bf16_t* p, float v) { *p = to_bf16(v); }
inline float load_as(const float* p) { return *p; }
inline float load_as(const bf16_t* p) { return from_bf16(*p); }

#if MXGEN_ISA_LEVEL >= 2
// The same for lanes m of 16 (the cells' AVX-512 loops): bfloat16 rounded
// to nearest even as to_bf16 does (VCVTNEPS2BF16 where the CPU has it).
inline __m512 load16_as(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16_as(const bf16_t* p, __mmask16 m) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
inline void store16_as(float* p, __m512 v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
inline void store16_as(bf16_t* p, __m512 v, __mmask16 m) {
#if MXGEN_ISA_LEVEL >= 3
  const __m256bh h = _mm512_cvtneps_pbh(v);
  _mm256_mask_storeu_epi16(p, m, reinterpret_cast<const __m256i&>(h));
#else
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7f800000));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), odd);
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
  const __m512i out = _mm512_mask_blend_epi32(nan, _mm512_srli_epi32(rounded, 16), quiet);
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(out));
#endif
}
// A row's four saved blocks (H values apart) at unit u: a, b, c, d.
template <typename Saved>
inline void store16_blocks(Saved* p, int H, int u, __mmask16 m, __m512 a, __m512 b, __m512 c,
                           __m512 d) {
  store16_as(p + u, a, m);
  store16_as(p + H + u, b, m);
  store16_as(p + 2 * H + u, c, m);
  store16_as(p + 3 * H + u, d, m);
}
#endif

// n floats -> bfloat16.
inline void floats_to_bf16(const float* src, bf16_t* dst, int n) {
  int i = 0;
#if MXGEN_ISA_LEVEL >= 3
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16),
                                           _mm512_loadu_ps(src + i));
    _mm512_storeu_si512(dst + i, reinterpret_cast<const __m512i&>(v));
  }
#endif
  for (; i < n; ++i) dst[i] = to_bf16(src[i]);
}

// out[c] = bf16(r1[c]) << 16 | bf16(r0[c]) for c in [0, n): two rows of K
// interleaved into K-pair words (a null row is zeros: the pad of K).
inline void interleave_rows_bf16(const float* r0, const float* r1, int n, uint32_t* out) {
  if (!r0) {
    std::fill(out, out + n, 0u);
    return;
  }
  int c = 0;
#if MXGEN_ISA_LEVEL >= 3
  const __m512i pairs = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
  for (; c + 16 <= n; c += 16) {
    const __m512 hi = r1 ? _mm512_loadu_ps(r1 + c) : _mm512_setzero_ps();
    const __m512bh both = _mm512_cvtne2ps_pbh(hi, _mm512_loadu_ps(r0 + c));
    _mm512_storeu_si512(out + c, _mm512_permutexvar_epi16(
        pairs, reinterpret_cast<const __m512i&>(both)));
  }
  for (; c + 8 <= n; c += 8) {   // a kMR-row panel of a transposed A: 8 at a time
    const __m128bh lo = _mm256_cvtneps_pbh(_mm256_loadu_ps(r0 + c));
    const __m128bh hi = _mm256_cvtneps_pbh(r1 ? _mm256_loadu_ps(r1 + c) : _mm256_setzero_ps());
    const __m128i l = reinterpret_cast<const __m128i&>(lo);
    const __m128i h = reinterpret_cast<const __m128i&>(hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), _mm_unpacklo_epi16(l, h));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c + 4), _mm_unpackhi_epi16(l, h));
  }
#endif
  for (; c < n; ++c)
    out[c] = static_cast<uint32_t>(r1 ? to_bf16(r1[c]) : 0) << 16 | to_bf16(r0[c]);
}

inline size_t packed_b_size_bf16(int K, int N) {
  return static_cast<size_t>(ceil_div(N, kNR)) * pad_k(K) * kNR;
}
inline size_t packed_a_size_bf16(int M, int K) {
  // AMX reads rows in blocks of 32 from wherever a thread's rows begin: slack
  // so that a block past the last row is still in the buffer
  return (static_cast<size_t>(ceil_div(M, 32)) * 32 + 32) * pad_k(K);
}

// pack_b_panels for bfloat16: panels [j0, j1) of op(B) (K x N) in K pairs.
inline void pack_b_panels_bf16(bool tb, int K, int N, const float* B, int ldb, bf16_t* Bp,
                               int j0, int j1) {
  const int Kp = pad_k(K), KP = Kp / 2;
  std::vector<bf16_t> row(tb ? Kp : 0);
  for (int j = j0; j < j1; ++j) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(Bp + static_cast<size_t>(j) * Kp * kNR);
    const int n0 = j * kNR, nn = std::min(kNR, N - n0);
    if (tb) {   // column c of op(B) is row n0 + c of B: its K pairs are adjacent floats
      for (int c = 0; c < kNR; ++c) {
        if (c < nn) {
          floats_to_bf16(B + static_cast<size_t>(n0 + c) * ldb, row.data(), K);
          std::fill(row.begin() + K, row.end(), bf16_t{0});
        }
        const uint32_t* words = reinterpret_cast<const uint32_t*>(row.data());
        for (int kp = 0; kp < KP; ++kp)
          dst[static_cast<size_t>(kp) * kNR + c] = c < nn ? words[kp] : 0u;
      }
    } else {    // rows 2 kp and 2 kp + 1 of B, interleaved
      for (int kp = 0; kp < KP; ++kp) {
        const float* r0 = 2 * kp < K ? B + static_cast<size_t>(2 * kp) * ldb + n0 : nullptr;
        const float* r1 = 2 * kp + 1 < K ? r0 + ldb : nullptr;
        uint32_t* d = dst + static_cast<size_t>(kp) * kNR;
        interleave_rows_bf16(r0, r1, nn, d);
        for (int c = nn; c < kNR; ++c) d[c] = 0u;
      }
    }
  }
}

// Rows [m0, m1) of a float32 (M, K) A (row stride lda) as bfloat16 rows of
// ldd values in `dst` (row m at dst + (m - m0) * ldd), zero past K.
inline void rows_to_bf16(const float* A, int lda, int K, int m0, int m1, bf16_t* dst, int ldd) {
  for (int m = m0; m < m1; ++m) {
    bf16_t* d = dst + static_cast<size_t>(m - m0) * ldd;
    floats_to_bf16(A + static_cast<size_t>(m) * lda, d, K);
    std::fill(d + K, d + ldd, bf16_t{0});
  }
}

// Panels [j0, j1) of a row-major (K x N) B that is bfloat16 already (row
// stride ldb), in K pairs: what pack_b_panels_bf16(false, ...) makes of the
// same values in float32.
inline void pack_b_rows_bf16(int K, int N, const bf16_t* B, int ldb, bf16_t* Bp, int j0,
                             int j1) {
  const int KP = pad_k(K) / 2;
  for (int j = j0; j < j1; ++j) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(Bp + static_cast<size_t>(j) * 2 * KP * kNR);
    const int n0 = j * kNR, nn = std::min(kNR, N - n0);
    for (int kp = 0; kp < KP; ++kp) {
      uint32_t* d = dst + static_cast<size_t>(kp) * kNR;
      const bf16_t* r0 = B + static_cast<size_t>(2 * kp) * ldb + n0;
      if (2 * kp + 1 < K) {
        const bf16_t* r1 = r0 + ldb;
#pragma omp simd
        for (int c = 0; c < nn; ++c) d[c] = static_cast<uint32_t>(r1[c]) << 16 | r0[c];
      } else if (2 * kp < K) {
        for (int c = 0; c < nn; ++c) d[c] = r0[c];
      } else {
        std::fill(d, d + nn, 0u);
      }
      std::fill(d + nn, d + kNR, 0u);
    }
  }
}

// pack_at_rows for bfloat16: rows [k_begin, k_begin + k_count) of op(A) =
// S^T, panels [i0, i1); a block may start at an odd k.  Whoever writes row
// K - 1 also zeroes the pad past K.
#if MXGEN_ISA_LEVEL >= 4
// AMX: plain rows of Kp values (panel i's rows are rows i * kMR.. of one
// row-major matrix).
inline void pack_at_rows_bf16(const float* S, int lds, int M, int K, int k_begin, int k_count,
                              bf16_t* Ap, int i0, int i1) {
  const int Kp = pad_k(K);
  for (int i = i0; i < i1; ++i) {
    const int m0 = i * kMR, mm = std::min(kMR, M - m0);
    bf16_t* rows = Ap + static_cast<size_t>(m0) * Kp;
    for (int k = 0; k < k_count; ++k) {
      const float* src = S + static_cast<size_t>(k) * lds + m0;
      for (int r = 0; r < kMR; ++r)
        rows[static_cast<size_t>(r) * Kp + k_begin + k] = r < mm ? to_bf16(src[r]) : 0;
    }
    if (k_begin + k_count == K)
      for (int r = 0; r < kMR; ++r)
        std::fill(rows + static_cast<size_t>(r) * Kp + K, rows + static_cast<size_t>(r + 1) * Kp,
                  bf16_t{0});
  }
}
#else
inline void pack_at_rows_bf16(const float* S, int lds, int M, int K, int k_begin, int k_count,
                              bf16_t* Ap, int i0, int i1) {
  const int Kp = pad_k(K), k_end = k_begin + k_count;
  for (int i = i0; i < i1; ++i) {
    bf16_t* panel = Ap + static_cast<size_t>(i) * Kp * kMR;
    uint32_t* words = reinterpret_cast<uint32_t*>(panel);
    const int m0 = i * kMR, mm = std::min(kMR, M - m0);
    int kk = k_begin;
    if (kk & 1) {   // the odd half of a pair the previous block began
      bf16_t* d = panel + static_cast<size_t>(kk / 2) * 2 * kMR + 1;
      for (int r = 0; r < kMR; ++r) d[2 * r] = r < mm ? to_bf16(S[m0 + r]) : 0;
      ++kk;
    }
    for (; kk < k_end; kk += 2) {
      const float* r0 = S + static_cast<size_t>(kk - k_begin) * lds + m0;
      const float* r1 = kk + 1 < k_end ? r0 + lds : nullptr;
      uint32_t* d = words + static_cast<size_t>(kk / 2) * kMR;
      if (!r1 && kk + 1 < K) {   // the block ends inside a pair: leave its odd half
        for (int r = 0; r < kMR; ++r)
          panel[(static_cast<size_t>(kk / 2) * kMR + r) * 2] = r < mm ? to_bf16(r0[r]) : 0;
        continue;
      }
      interleave_rows_bf16(r0, r1, mm, d);
      for (int r = mm; r < kMR; ++r) d[r] = 0u;
    }
  }
}
#endif

// C[mm x nn] = (accumulate ? C : 0) + A (mm x 2 KP) Bp (2 KP x kNR), A in K
// pairs: packed (kPacked) or plain rows of lda bfloat16 values.
#if MXGEN_ISA_LEVEL >= 3
template <bool kPacked>
void micro_kernel_bf16(int KP, const bf16_t* A, int lda, const bf16_t* Bp, float* C, int ldc,
                       int mm, int nn, bool accumulate) {
  __m512 c0[kMR], c1[kMR];
  const uint32_t* row[kMR];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r) {
    c0[r] = _mm512_setzero_ps();
    c1[r] = _mm512_setzero_ps();
    row[r] = reinterpret_cast<const uint32_t*>(A + static_cast<size_t>(r < mm ? r : 0) * lda);
  }
  const uint32_t* ap = reinterpret_cast<const uint32_t*>(A);
  for (int kp = 0; kp < KP; ++kp) {
    const __m512i b0 = _mm512_loadu_si512(Bp + static_cast<size_t>(kp) * 2 * kNR);
    const __m512i b1 = _mm512_loadu_si512(Bp + static_cast<size_t>(kp) * 2 * kNR + 32);
    const __m512bh b0h = reinterpret_cast<const __m512bh&>(b0);
    const __m512bh b1h = reinterpret_cast<const __m512bh&>(b1);
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      const __m512i a = _mm512_set1_epi32(static_cast<int>(
          kPacked ? ap[static_cast<size_t>(kp) * kMR + r] : row[r][kp]));
      const __m512bh ah = reinterpret_cast<const __m512bh&>(a);
      c0[r] = _mm512_dpbf16_ps(c0[r], ah, b0h);
      c1[r] = _mm512_dpbf16_ps(c1[r], ah, b1h);
    }
  }
  store_block(C, ldc, mm, nn, c0, c1, accumulate);
}
#else
template <bool kPacked>
void micro_kernel_bf16(int KP, const bf16_t* A, int lda, const bf16_t* Bp, float* C, int ldc,
                       int mm, int nn, bool accumulate) {
  float acc[kMR][kNR];
  for (int r = 0; r < kMR; ++r)
    for (int c = 0; c < kNR; ++c) acc[r][c] = 0.f;
  for (int kp = 0; kp < KP; ++kp) {
    const bf16_t* b = Bp + static_cast<size_t>(kp) * 2 * kNR;
    float b0[kNR], b1[kNR];
    for (int c = 0; c < kNR; ++c) {
      b0[c] = from_bf16(b[2 * c]);
      b1[c] = from_bf16(b[2 * c + 1]);
    }
    for (int r = 0; r < mm; ++r) {
      const bf16_t* a = kPacked ? A + (static_cast<size_t>(kp) * kMR + r) * 2
                                : A + static_cast<size_t>(r) * lda + 2 * kp;
      const float a0 = from_bf16(a[0]), a1 = from_bf16(a[1]);
#pragma omp simd
      for (int c = 0; c < kNR; ++c) acc[r][c] += a0 * b0[c] + a1 * b1[c];
    }
  }
  for (int r = 0; r < mm; ++r) {
    float* cr = C + static_cast<size_t>(r) * ldc;
    for (int c = 0; c < nn; ++c) cr[c] = (accumulate ? cr[c] : 0.f) + acc[r][c];
  }
}
#endif

#if MXGEN_ISA_LEVEL >= 4
// AMX: C rows [r0, r1) x column panels [j0, j1) = (accumulate ? C : 0) + A
// Bp, A plain bfloat16 rows of stride lda (>= Kp; rows up to the next
// multiple of 32 past r1 must be readable: their results are dropped).  A
// block of 32 x 32 in four 16 x 16 float32 tiles, K in steps of 32.
struct TileConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

inline void gemm_amx(int N, int K, const bf16_t* A, int lda, const bf16_t* Bp, int r0, int r1,
                     int j0, int j1, float* C, int ldc, bool accumulate) {
  if (r1 <= r0 || j1 <= j0) return;
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) {     // C 0-3 (16 float32), A 4-5 (32 bf16), B 6-7 (16 pairs)
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  const int Kp = pad_k(K);
  alignas(64) float block[kAmxRows * 32];
  for (int j = j0; j < j1; ++j) {
    const bf16_t* b = Bp + static_cast<size_t>(j) * Kp * kNR;
    const int nn = std::min(kNR, N - j * kNR);
    for (int m = r0; m < r1; m += kAmxRows) {
      const int mm = std::min(kAmxRows, r1 - m);
      const bf16_t* a = A + static_cast<size_t>(m) * lda;
      _tile_zero(0);
      _tile_zero(1);
      if (mm > 16) {
        _tile_zero(2);
        _tile_zero(3);
      }
      for (int k = 0; k < Kp; k += 32) {
        const bf16_t* bk = b + static_cast<size_t>(k) * kNR;   // k / 2 pair rows of 2 kNR
        _tile_loadd(4, a + k, lda * 2);
        _tile_loadd(6, bk, 2 * kNR * 2);
        _tile_loadd(7, bk + 32, 2 * kNR * 2);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        if (mm > 16) {
          _tile_loadd(5, a + static_cast<size_t>(16) * lda + k, lda * 2);
          _tile_dpbf16ps(2, 5, 6);
          _tile_dpbf16ps(3, 5, 7);
        }
      }
      _tile_stored(0, block, 32 * 4);
      _tile_stored(1, block + 16, 32 * 4);
      if (mm > 16) {
        _tile_stored(2, block + 16 * 32, 32 * 4);
        _tile_stored(3, block + 16 * 32 + 16, 32 * 4);
      }
      const __mmask16 q0 = nn >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << nn) - 1);
      const __mmask16 q1 = nn >= 32 ? 0xFFFF
                           : nn <= 16 ? 0 : static_cast<__mmask16>((1u << (nn - 16)) - 1);
      for (int r = 0; r < mm; ++r) {
        float* cr = C + static_cast<size_t>(m + r) * ldc + j * kNR;
        __m512 v0 = _mm512_load_ps(block + r * 32), v1 = _mm512_load_ps(block + r * 32 + 16);
        if (accumulate) {
          v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(q0, cr));
          v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(q1, cr + 16));
        }
        _mm512_mask_storeu_ps(cr, q0, v0);
        _mm512_mask_storeu_ps(cr + 16, q1, v1);
      }
    }
  }
  _tile_release();
}
#endif

// gemm_panels with bfloat16 operands: A packed in pairs (lda < 0) or plain
// bfloat16 rows of stride lda (>= Kp), Bp from pack_b_panels_bf16.
inline void gemm_panels_bf16(int M, int N, int K, const bf16_t* A, int lda, const bf16_t* Bp,
                             int i0, int i1, int j0, int j1, float* C, int ldc, bool accumulate) {
  const int Kp = pad_k(K);
#if MXGEN_ISA_LEVEL >= 4
  // AMX: the packed A is plain rows too
  gemm_amx(N, K, A, lda < 0 ? Kp : lda, Bp, std::min(M, i0 * kMR), std::min(M, i1 * kMR), j0,
           j1, C, ldc, accumulate);
#else
  const bool packed = lda < 0;
  constexpr int kMC = 16;
  for (int k0 = 0; k0 < Kp; k0 += kKC) {          // kKC is even: chunks keep the pairs
    const int kc = std::min(kKC, Kp - k0);
    const bool acc = accumulate || k0 > 0;
    for (int ib = i0; ib < i1; ib += kMC) {
      const int ie = std::min(i1, ib + kMC);
      for (int j = j0; j < j1; ++j) {
        const bf16_t* b = Bp + static_cast<size_t>(j) * Kp * kNR + static_cast<size_t>(k0) * kNR;
        const int nn = std::min(kNR, N - j * kNR);
        for (int i = ib; i < ie; ++i) {
          const int mm = std::min(kMR, M - i * kMR);
          float* c = C + static_cast<size_t>(i) * kMR * ldc + j * kNR;
          if (packed)
            micro_kernel_bf16<true>(kc / 2, A + static_cast<size_t>(i) * Kp * kMR +
                                    static_cast<size_t>(k0) * kMR, 0, b, c, ldc, mm, nn, acc);
          else
            micro_kernel_bf16<false>(kc / 2, A + static_cast<size_t>(i) * kMR * lda + k0, lda, b,
                                     c, ldc, mm, nn, acc);
        }
      }
    }
  }
#endif
}

// A bfloat16 buffer of the calling thread (slot 0: plain A rows; 1: packed
// A blocks; 2 and 3: the backward passes' pre-activation gradients).
inline bf16_t* scratch_bf16(int slot, size_t n) {
  static thread_local Buffer<bf16_t> bufs[4];
  if (bufs[slot].size() < n) bufs[slot].resize(n);
  return bufs[slot].data();
}

// ------------------------------------------------------------ precision policy
// The recurrent loops (recurrent.h) are written once for both precisions:
// F32 multiplies float32 operands, BF16 converts them (weights packed once
// per call, activations and gradients as they are multiplied) and
// accumulates in float32.  Both take float32 in and give float32 out.
//
// Act is how the layers keep what they save for later: the activated gates
// (forward to backward) and the pre-activation gradients dA (from the
// backward time loop to the weight gradients).  float32 for F32; bfloat16
// for BF16, which halves that memory traffic: dA holds the values every
// GEMM would round it to anyway (rows of act_ld(K) values, pad zeroed), the
// gates lose what bfloat16 loses (8 significand bits, as in the products).
// act(v) stores one value.
struct F32 {
  using Packed = float;
  using Act = float;
  static int act_ld(int K) { return K; }
  static Act act(float v) { return v; }
  static Act* act_buffer(int slot, size_t n) { return scratch(slot == 0 ? 2 : 4, n).data(); }
  // panels [j0, j1) of a row-major (K, N) Act operand as the B side
  static void pack_act(int K, int N, const Act* B, int ldb, Packed* Bp, int j0, int j1) {
    pack_b_panels(false, K, N, B, ldb, Bp, j0, j1);
  }
  // C = (accumulate ? C : 0) + A Bp for Act rows A (stride lda), panels as in gemm
  static void gemm_act(int M, int N, int K, const Act* A, int lda, const Packed* Bp, int i0,
                       int i1, int j0, int j1, float* C, int ldc, bool accumulate) {
    gemm_panels(M, N, K, A, lda, Bp, i0, i1, j0, j1, C, ldc, accumulate);
  }
  static size_t b_size(int K, int N) { return packed_b_size(K, N); }
  static size_t a_size(int M, int K) { return packed_a_size(M, K); }
  static Packed* b_buffer(int slot, size_t n) { return scratch(slot, n).data(); }
  static Packed* a_buffer(size_t n) { return scratch(0, n).data(); }
  static void pack_b(bool tb, int K, int N, const float* B, int ldb, Packed* Bp, int j0, int j1) {
    pack_b_panels(tb, K, N, B, ldb, Bp, j0, j1);
  }
  static void pack_at(const float* S, int lds, int M, int K, int k_begin, int k_count,
                      Packed* Ap, int i0, int i1) {
    pack_at_rows(S, lds, M, K, k_begin, k_count, Ap, i0, i1);
  }
  // plain float32 A (rows of stride lda); rows of panels [i0, i1)
  static void gemm(int M, int N, int K, const float* A, int lda, const Packed* Bp, int i0, int i1,
                   int j0, int j1, float* C, int ldc, bool accumulate) {
    gemm_panels(M, N, K, A, lda, Bp, i0, i1, j0, j1, C, ldc, accumulate);
  }
  static void gemm_packed(int M, int N, int K, const Packed* Ap, const Packed* Bp, int i0, int i1,
                          int j0, int j1, float* C, int ldc, bool accumulate) {
    gemm_panels(M, N, K, Ap, -1, Bp, i0, i1, j0, j1, C, ldc, accumulate);
  }
};

struct BF16 {
  using Packed = bf16_t;
  using Act = bf16_t;
  static int act_ld(int K) { return pad_k(K); }
  static Act act(float v) { return to_bf16(v); }
  static Act* act_buffer(int slot, size_t n) { return scratch_bf16(2 + slot, n); }
  static void pack_act(int K, int N, const Act* B, int ldb, Packed* Bp, int j0, int j1) {
    pack_b_rows_bf16(K, N, B, ldb, Bp, j0, j1);
  }
  // (AMX reads rows in blocks of 32: 32 rows past the last must be readable)
  static void gemm_act(int M, int N, int K, const Act* A, int lda, const Packed* Bp, int i0,
                       int i1, int j0, int j1, float* C, int ldc, bool accumulate) {
    gemm_panels_bf16(M, N, K, A, lda, Bp, i0, i1, j0, j1, C, ldc, accumulate);
  }
  static size_t b_size(int K, int N) { return packed_b_size_bf16(K, N); }
  static size_t a_size(int M, int K) { return packed_a_size_bf16(M, K); }
  static Packed* b_buffer(int slot, size_t n) {
    return reinterpret_cast<bf16_t*>(scratch(slot, (n + 1) / 2).data());
  }
  static Packed* a_buffer(size_t n) { return scratch_bf16(1, n); }
  static void pack_b(bool tb, int K, int N, const float* B, int ldb, Packed* Bp, int j0, int j1) {
    pack_b_panels_bf16(tb, K, N, B, ldb, Bp, j0, j1);
  }
  static void pack_at(const float* S, int lds, int M, int K, int k_begin, int k_count,
                      Packed* Ap, int i0, int i1) {
    pack_at_rows_bf16(S, lds, M, K, k_begin, k_count, Ap, i0, i1);
  }
  static void gemm(int M, int N, int K, const float* A, int lda, const Packed* Bp, int i0, int i1,
                   int j0, int j1, float* C, int ldc, bool accumulate) {
    const int m0 = std::min(M, i0 * kMR), m1 = std::min(M, i1 * kMR), Kp = pad_k(K);
    if (m1 <= m0) return;
    // whole blocks of 32 rows, so the AMX tiles past the last row stay in the buffer
    bf16_t* rows = scratch_bf16(0, static_cast<size_t>(ceil_div(m1 - m0, 32)) * 32 * Kp);
    rows_to_bf16(A, lda, K, m0, m1, rows, Kp);
    gemm_panels_bf16(M - m0, N, K, rows, Kp, Bp, 0, i1 - i0, j0, j1,
                     C + static_cast<size_t>(m0) * ldc, ldc, accumulate);
  }
  static void gemm_packed(int M, int N, int K, const Packed* Ap, const Packed* Bp, int i0, int i1,
                          int j0, int j1, float* C, int ldc, bool accumulate) {
    gemm_panels_bf16(M, N, K, Ap, -1, Bp, i0, i1, j0, j1, C, ldc, accumulate);
  }
};

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

// C = op(A) B in the bfloat16 GEMM (A plain, B row-major), over the
// OpenMP team; for tests and the peak benchmark.
inline void sgemm_bf16(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                       float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  const int pm = ceil_div(M, kMR), pn = ceil_div(N, kNR);
  bf16_t* Bp = BF16::b_buffer(1, BF16::b_size(K, N));
  const long work = static_cast<long>(M) * N * K;
#pragma omp parallel if (work > 200000)
  {
    const int team = omp_team(), rank = omp_rank();
    int lo, hi;
    split_range(pn, team, rank, &lo, &hi);
    BF16::pack_b(false, K, N, B, ldb, Bp, lo, hi);
#pragma omp barrier
    if (pn >= 2 * team || pn >= pm) {
      split_range(pn, team, rank, &lo, &hi);
      BF16::gemm(M, N, K, A, lda, Bp, 0, pm, lo, hi, C, ldc, false);
    } else {
      split_range(pm, team, rank, &lo, &hi);
      BF16::gemm(M, N, K, A, lda, Bp, lo, hi, 0, pn, C, ldc, false);
    }
  }
}

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
