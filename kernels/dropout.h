// Training dropout with a counter-based generator.
//
// MXNet 1.9's CPU Dropout draws one mt19937 number per element: for a
// char-LSTM's activations that costs more than the decoder's whole forward
// and backward pass (BENCHMARKS.md).  Here the keep/drop decision of element e
// is a pure function of (key, salt, e): Philox4x32-10 (Salmon et al., SC'11,
// the generator cuRAND, JAX and PyTorch's GPU dropout use) over the counter
// (e / 4, salt), lane e % 4.  No state, so threads split the elements freely
// and the mask does not depend on the thread count.  The key comes from the
// caller (the op takes it from MXNet's own seeded Dropout, see the op).
#pragma once

#include <cstddef>
#include <cstdint>

#include "gemm.h"   // omp_team / omp_rank / split_range, <immintrin.h>

#include "isa_namespace.h"

namespace mxgen {
namespace MXGEN_ISA_NS {

constexpr int kPhiloxLanes = 16;           // blocks per batch: one 16-lane vector per word
constexpr int kDropBatch = 4 * kPhiloxLanes;  // elements per batch

// Philox4x32-10 on kPhiloxLanes consecutive blocks starting at `block`;
// out[w * kPhiloxLanes + l] is word w of block (block + l).  Element
// (batch start + w * kPhiloxLanes + l) takes that word, so a vector of 16
// consecutive elements is one word of 16 blocks.
inline void philox_batch(uint64_t block, uint32_t salt, uint32_t key0, uint32_t key1,
                         uint32_t* out) {
  for (int l = 0; l < kPhiloxLanes; ++l) {
    const uint64_t b = block + static_cast<uint64_t>(l);
    uint32_t c0 = static_cast<uint32_t>(b), c1 = static_cast<uint32_t>(b >> 32), c2 = salt,
             c3 = 0u, k0 = key0, k1 = key1;
    for (int round = 0; round < 10; ++round) {
      const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
      const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
      const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
      c1 = static_cast<uint32_t>(p1);
      c3 = static_cast<uint32_t>(p0);
      c0 = n0;
      c2 = n2;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    out[l] = c0;
    out[kPhiloxLanes + l] = c1;
    out[2 * kPhiloxLanes + l] = c2;
    out[3 * kPhiloxLanes + l] = c3;
  }
}

// Keep element iff its word < threshold = floor(keep * 2^32), keep = 1 - p in
// float; kept elements scale by 1 / keep in float, as MXNet's.  When keep
// rounds to 1 in float (p < 2^-25), MXNet keeps everything: so does this
// (the threshold would be 2^32, which no 32-bit word is below, and which
// does not fit in 32 bits).
struct DropoutParams {
  uint32_t threshold, salt, key0, key1;
  float scale;
  bool keep_all;
  DropoutParams(float p, uint64_t key, uint32_t salt_)
      : threshold(0), salt(salt_), key0(static_cast<uint32_t>(key)),
        key1(static_cast<uint32_t>(key >> 32)), scale(1.f / (1.f - p)), keep_all(false) {
    const double t = static_cast<double>(1.f - p) * 4294967296.0;
    keep_all = !(t < 4294967296.0);
    threshold = keep_all ? 0u : static_cast<uint32_t>(t);
  }
};

// y[e] = x[e] * (r[e] < threshold ? scale : 0) for the `count` elements of
// one batch whose words are r.
inline void dropout_apply_words(const DropoutParams& dp, const uint32_t* r, size_t count,
                                const float* x, float* y) {
  // unsigned r < threshold as a signed compare of both with the top bit
  // flipped (SSE and AVX2 have no unsigned compare)
  const int32_t thr = static_cast<int32_t>(dp.threshold ^ 0x80000000u);
  const int n = static_cast<int>(count);
  const float scale = dp.scale;
#pragma omp simd
  for (int i = 0; i < n; ++i)
    y[i] = x[i] * (static_cast<int32_t>(r[i] ^ 0x80000000u) < thr ? scale : 0.f);
}

#if MXGEN_ISA_LEVEL >= 2
// hi and lo 32 bits of a * m for 16 unsigned lanes
inline void mul_hilo(__m512i a, __m512i m, __m512i* hi, __m512i* lo) {
  const __m512i even = _mm512_mul_epu32(a, m);                         // lanes 0, 2, ...
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // lanes 1, 3, ...
  *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

// Batches [b0, b1) of dropout_forward with AVX-512: one 16-lane vector per
// word; bit-identical to the portable code.
inline void dropout_batches(const DropoutParams& dp, size_t n, const float* x, float* y,
                            long b0, long b1) {
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m512i thr = _mm512_set1_epi32(static_cast<int>(dp.threshold));
  const __m512 scale = _mm512_set1_ps(dp.scale);
  for (long b = b0; b < b1; ++b) {
    const uint64_t block = static_cast<uint64_t>(b) * kPhiloxLanes;
    // low words of block + lane (carry into the high word handled below)
    __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(block)), lane);
    const __mmask16 carry = _mm512_cmplt_epu32_mask(c0, lane);
    __m512i c1 = _mm512_mask_add_epi32(_mm512_set1_epi32(static_cast<int>(block >> 32)), carry,
                                       _mm512_set1_epi32(static_cast<int>(block >> 32)),
                                       _mm512_set1_epi32(1));
    __m512i c2 = _mm512_set1_epi32(static_cast<int>(dp.salt));
    __m512i c3 = _mm512_setzero_si512();
    uint32_t k0 = dp.key0, k1 = dp.key1;
    for (int round = 0; round < 10; ++round) {
      __m512i hi0, lo0, hi1, lo1;
      mul_hilo(c0, m0, &hi0, &lo0);
      mul_hilo(c2, m1, &hi1, &lo1);
      const __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1),
                                          _mm512_set1_epi32(static_cast<int>(k0)));
      const __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3),
                                          _mm512_set1_epi32(static_cast<int>(k1)));
      c1 = lo1;
      c3 = lo0;
      c0 = n0;
      c2 = n2;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const __m512i words[4] = {c0, c1, c2, c3};
    const size_t e0 = static_cast<size_t>(b) * kDropBatch;
    for (int w = 0; w < 4; ++w) {
      const size_t e = e0 + static_cast<size_t>(w) * kPhiloxLanes;
      if (e >= n) break;
      const size_t left = n - e;
      const __mmask16 valid = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
      const __mmask16 keep = _mm512_cmplt_epu32_mask(words[w], thr);
      const __m512 m = _mm512_maskz_mov_ps(keep, scale);
      _mm512_mask_storeu_ps(y + e, valid, _mm512_mul_ps(_mm512_maskz_loadu_ps(valid, x + e), m));
    }
  }
}
#elif MXGEN_ISA_LEVEL == 1
// hi and lo 32 bits of a * m for 8 unsigned lanes
inline void mul_hilo(__m256i a, __m256i m, __m256i* hi, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// Batches [b0, b1) with AVX2: the 16 blocks of a batch as two 8-lane halves;
// the words are then applied by the shared loop.  Bit-identical to the
// portable code.
inline void dropout_batches(const DropoutParams& dp, size_t n, const float* x, float* y,
                            long b0, long b1) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  alignas(32) uint32_t r[kDropBatch];
  for (long b = b0; b < b1; ++b) {
    for (int half = 0; half < 2; ++half) {
      const uint64_t block = static_cast<uint64_t>(b) * kPhiloxLanes + 8 * half;
      const __m256i lane = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
      __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(block)), lane);
      // carry where the low word wrapped: c0 < lane, unsigned (signed compare of x ^ 2^31)
      const __m256i carry = _mm256_cmpgt_epi32(_mm256_xor_si256(lane, sign),
                                               _mm256_xor_si256(c0, sign));
      __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int>(block >> 32)), carry);
      __m256i c2 = _mm256_set1_epi32(static_cast<int>(dp.salt));
      __m256i c3 = _mm256_setzero_si256();
      uint32_t k0 = dp.key0, k1 = dp.key1;
      for (int round = 0; round < 10; ++round) {
        __m256i hi0, lo0, hi1, lo1;
        mul_hilo(c0, m0, &hi0, &lo0);
        mul_hilo(c2, m1, &hi1, &lo1);
        const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1),
                                            _mm256_set1_epi32(static_cast<int>(k0)));
        const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3),
                                            _mm256_set1_epi32(static_cast<int>(k1)));
        c1 = lo1;
        c3 = lo0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
      }
      const __m256i words[4] = {c0, c1, c2, c3};
      for (int w = 0; w < 4; ++w)
        _mm256_store_si256(reinterpret_cast<__m256i*>(r + w * kPhiloxLanes + 8 * half), words[w]);
    }
    const size_t e0 = static_cast<size_t>(b) * kDropBatch;
    const size_t count = n - e0 < static_cast<size_t>(kDropBatch) ? n - e0 : kDropBatch;
    dropout_apply_words(dp, r, count, x + e0, y + e0);
  }
}
#else
// Batches [b0, b1), portable code.
inline void dropout_batches(const DropoutParams& dp, size_t n, const float* x, float* y,
                            long b0, long b1) {
  uint32_t r[kDropBatch];
  for (long b = b0; b < b1; ++b) {
    philox_batch(static_cast<uint64_t>(b) * kPhiloxLanes, dp.salt, dp.key0, dp.key1, r);
    const size_t e0 = static_cast<size_t>(b) * kDropBatch;
    const size_t count = n - e0 < static_cast<size_t>(kDropBatch) ? n - e0 : kDropBatch;
    dropout_apply_words(dp, r, count, x + e0, y + e0);
  }
}
#endif

// y = x * mask, mask = (keep ? 1 / (1 - p) : 0), keep with probability 1 - p,
// elements [0, n), over the OpenMP team; p in (0, 1).  The mask is a pure
// function of (key, salt, element), so a backward pass recomputes it
// (dx = dy * mask: call with x = dy, y = dx) instead of storing it.
inline void dropout_forward(size_t n, const float* x, float* y, float p, uint64_t key,
                            uint32_t salt) {
  const DropoutParams dp(p, key, salt);
  if (dp.keep_all) {
    if (y != x) std::memcpy(y, x, sizeof(float) * n);
    return;
  }
  const size_t batches = (n + kDropBatch - 1) / kDropBatch;
#pragma omp parallel if (n > 16384)
  {
    size_t lo, hi;
    split_range_long(batches, omp_team(), omp_rank(), &lo, &hi);
    dropout_batches(dp, n, x, y, static_cast<long>(lo), static_cast<long>(hi));
  }
}

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
