// The optimizer update mxgen_adam_update runs: Adam on one dense float32
// tensor, elementwise as MXNet 1.9's adam_update computes it (the caller
// folds the bias corrections into lr, as mx.optimizer.Adam does), in
// 16-float vectors over the OpenMP team.  MXNet's own kernel evaluates the
// square root and division one element at a time: about 13 cycles per
// weight on a Zen 4 core, where this loop is bound by reading and writing
// w, m, v and the gradient (BENCHMARKS.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "dispatch.h"
#include "gemm.h"
#include "isa_namespace.h"

namespace mxgen {
namespace MXGEN_ISA_NS {

inline void adam_update(size_t n, float* w, const float* grad, float* mean, float* var,
                        const AdamArgs& a) {
  const float one_b1 = 1.f - a.beta1, one_b2 = 1.f - a.beta2;
  const bool clip = a.clip_gradient >= 0.f;
  // threads take whole blocks of 16 floats (no cache line shared between two)
  const size_t blocks = (n + 15) / 16;
#pragma omp parallel if (n >= 65536)
  {
    size_t lo, hi;
    split_range_long(blocks, omp_team(), omp_rank(), &lo, &hi);
    const size_t i0 = std::min(n, lo * 16), i1 = std::min(n, hi * 16);
#pragma omp simd
    for (size_t i = i0; i < i1; ++i) {
      float g = grad[i] * a.rescale_grad + w[i] * a.wd;
      // as MXNet's clip: NaN passes (std::max/min would turn it into a bound)
      const float c = a.clip_gradient;
      if (clip) g = g > c ? c : (g < -c ? -c : g);
      const float m = a.beta1 * mean[i] + one_b1 * g;
      const float v = a.beta2 * var[i] + one_b2 * g * g;
      mean[i] = m;
      var[i] = v;
      w[i] = w[i] - a.lr * m / (std::sqrt(v) + a.epsilon);
    }
  }
}

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
