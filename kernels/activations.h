// Vectorisable activations shared by mxgen's kernels (no library calls, so
// `#pragma omp simd` loops compile to straight vector code).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "isa_namespace.h"

namespace mxgen {
namespace MXGEN_ISA_NS {

// exp(x) for float: Cody-Waite range reduction and a degree-6 polynomial,
// within ~2 ulp of std::exp on [-87, 88]; NaN in, NaN out.  No undefined
// behaviour on any input: the clamps keep NaN (comparisons with NaN are
// false), the exponent is converted from a NaN-free copy, and the shift into
// the exponent field is done on unsigned bits (a left shift of a negative
// int is undefined).
inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float n = std::nearbyint(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f;
  r -= n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t exponent = static_cast<int32_t>(n == n ? n : 0.0f);   // in [-126, 127]
  uint32_t bits;
  std::memcpy(&bits, &p, sizeof(bits));
  bits += static_cast<uint32_t>(exponent) << 23;
  std::memcpy(&p, &bits, sizeof(bits));
  return p;
}
inline float sigmoid(float v) { return 1.f / (1.f + fast_exp(-v)); }
inline float fast_tanh(float v) { return 1.f - 2.f / (fast_exp(2.f * v) + 1.f); }

#if MXGEN_ISA_LEVEL >= 2
// The same on 16 floats for the AVX-512 copies, in fewer instructions:
// VSCALEFPS applies 2^n in one step (it saturates to 0 or inf and keeps NaN,
// so no clamps, integer conversion or NaN test), and the constant factors
// of -v and 2v fold into the multiply by log2(e).  Within the clamps of
// fast_exp the arithmetic is the same (the scaling by 2^n is exact in both).
// The gate functions stay finite-safe: sigmoid(-inf) = 1 / inf = 0,
// tanh(+-inf) = 1 - 2 / inf or 1 - 2 / 1 = +-1.
inline __m512 exp16_scaled(__m512 x, float log2e_times) {
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(log2e_times * 1.44269504088896341f));
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = k x - n ln2, with k x formed exactly enough: k is 1, -1 or 2
  const __m512 kx = _mm512_mul_ps(x, _mm512_set1_ps(log2e_times));
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), kx);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}
inline __m512 sigmoid16(__m512 v) {
  const __m512 one = _mm512_set1_ps(1.f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp16_scaled(v, -1.f)));
}
inline __m512 tanh16(__m512 v) {
  const __m512 one = _mm512_set1_ps(1.f);
  return _mm512_fnmadd_ps(_mm512_set1_ps(2.f),
                          _mm512_div_ps(one, _mm512_add_ps(exp16_scaled(v, 2.f), one)), one);
}
// lanes [0, n) of 16 (n > 16: all)
inline __mmask16 lanes16(int n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}
#endif

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
