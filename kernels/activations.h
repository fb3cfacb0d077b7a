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

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
