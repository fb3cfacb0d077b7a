// The random states mxgen's CUDA kernels draw from.
//
// MXNet hands GPU custom ops an array of cuRAND Philox4x32-10 states; with
// cuRAND's headers (every CUDA toolkit that builds MXNet has them) the
// kernels use those states directly, so `mx.random.seed` fixes the draws.
// Without them (a bare nvcc, as on our CI machines) the same generator,
// Philox4x32-10 (Salmon et al., SC'11), is built in here with the same state
// size role, so the kernels and their standalone test still compile and run.
#pragma once

#if defined(__has_include)
#if __has_include(<curand_kernel.h>)
#define MXGEN_HAVE_CURAND 1
#endif
#endif

#ifdef MXGEN_HAVE_CURAND
#include <curand_kernel.h>
#endif

namespace mxgen {
namespace gpu {

#ifdef MXGEN_HAVE_CURAND
typedef curandStatePhilox4_32_10_t RandState;
__device__ inline double uniform_double(RandState* s) { return curand_uniform_double(s); }
__device__ inline void rand_init(unsigned long long seed, unsigned long long seq, RandState* s) {
  curand_init(seed, seq, 0, s);
}
#else
struct RandState {
  uint4 ctr;
  uint2 key;
};

__device__ inline uint4 philox_round(uint4 c, uint2 k) {
  const unsigned lo0 = c.x * 0xD2511F53u, hi0 = __umulhi(c.x, 0xD2511F53u);
  const unsigned lo1 = c.z * 0xCD9E8D57u, hi1 = __umulhi(c.z, 0xCD9E8D57u);
  return make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

__device__ inline uint4 philox10(uint4 c, uint2 k) {
#pragma unroll
  for (int i = 0; i < 10; ++i) {
    c = philox_round(c, k);
    k.x += 0x9E3779B9u;
    k.y += 0xBB67AE85u;
  }
  return c;
}

// (0, 1], like curand_uniform_double: 53 random bits from one Philox block.
__device__ inline double uniform_double(RandState* s) {
  const uint4 r = philox10(s->ctr, s->key);
  if (++s->ctr.x == 0) ++s->ctr.y;
  const unsigned long long bits =
      (static_cast<unsigned long long>(r.x) << 21) ^ static_cast<unsigned long long>(r.y);
  return (static_cast<double>(bits & ((1ull << 53) - 1)) + 1.0) / 9007199254740992.0;
}

__device__ inline void rand_init(unsigned long long seed, unsigned long long seq, RandState* s) {
  s->key = make_uint2(static_cast<unsigned>(seed), static_cast<unsigned>(seed >> 32));
  s->ctr = make_uint4(0u, 0u, static_cast<unsigned>(seq), static_cast<unsigned>(seq >> 32));
}
#endif

}  // namespace gpu
}  // namespace mxgen
