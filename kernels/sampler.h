// The sampler of mxgen_sample and of generation: temperature, then top-k,
// then top-p (nucleus) filtering, then one categorical draw per row from
// MXNet's seeded CPU generator.  temperature == 0 is greedy (arg-max, first
// of ties).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "activations.h"
#include "dispatch.h"
#include "isa_namespace.h"

namespace mxgen {
namespace MXGEN_ISA_NS {

// The uniform draw in [0, 1) that decides one row (greedy rows take none).
// Rows draw in row order before any row is decided, so the rows can then be
// decided in parallel with the same result as one after the other.
inline double draw_uniform(const Sampling& s, std::mt19937* rng) {
  if (s.temperature == 0.0f) return 0.0;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  return uniform(*rng);
}

// One row of logits (V,) and its draw u -> one id.  `scratch` holds at least
// 2 * V floats, `order` V ints.
inline int sample_row(const float* logits, int V, const Sampling& s, double u, float* scratch,
                      int* order) {
  if (s.temperature == 0.0f) {
    return static_cast<int>(std::max_element(logits, logits + V) - logits);
  }
  float* z = scratch;
  for (int v = 0; v < V; ++v) z[v] = logits[v] / s.temperature;
  if (s.top_k > 0 && s.top_k < V) {
    float* tmp = z + V;
    std::copy(z, z + V, tmp);
    std::nth_element(tmp, tmp + (s.top_k - 1), tmp + V, std::greater<float>());
    const float kth = tmp[s.top_k - 1];
    for (int v = 0; v < V; ++v) if (z[v] < kth) z[v] = -INFINITY;
  }
  const float mx = *std::max_element(z, z + V);
  // the vectorised exp (activations.h); what lies more than 87 below the
  // maximum (top-k's -inf among it) gets exactly 0, as a filtered id must
  double total = 0;
#pragma omp simd reduction(+ : total)
  for (int v = 0; v < V; ++v) {
    const float d = z[v] - mx;
    z[v] = d < -87.f ? 0.f : fast_exp(d);
    total += z[v];
  }
#pragma omp simd
  for (int v = 0; v < V; ++v) z[v] = static_cast<float>(z[v] / total);
  if (s.top_p < 1.0f) {
    // keep ranks while the probability mass above them is < top_p
    std::iota(order, order + V, 0);
    std::stable_sort(order, order + V, [z](int a, int b) { return z[a] > z[b]; });
    double before = 0;
    float cutoff = 0;
    for (int r = 0; r < V; ++r) {
      if (before >= s.top_p) break;
      cutoff = z[order[r]];
      before += z[order[r]];
    }
    double kept = 0;
    for (int v = 0; v < V; ++v) { if (z[v] < cutoff) z[v] = 0; kept += z[v]; }
    for (int v = 0; v < V; ++v) z[v] = static_cast<float>(z[v] / kept);
  }
  double acc = 0;
  int last = 0;
  for (int v = 0; v < V; ++v) {
    if (z[v] <= 0) continue;
    acc += z[v];
    last = v;
    if (u < acc) return v;
  }
  return last;   // rounding left u above the total: the last live id
}

// Rows of logits (N, V) -> ids (N,) as float: draws in row order, then the
// rows decided over the OpenMP team when there are enough of them.
// (Small batches, as generation's every step at batch 1, run on the calling
// thread -- which may be one thread of a parallel region -- in buffers it
// keeps: no nested region, no allocation.)
inline void sample_rows(const float* logits, int N, int V, const Sampling& s,
                        std::mt19937* rng, float* ids_out) {
  static thread_local std::vector<double> u;
  u.resize(N);
  for (int n = 0; n < N; ++n) u[n] = draw_uniform(s, rng);
  if (static_cast<long>(N) * V <= 4096) {
    static thread_local std::vector<float> scratch;
    static thread_local std::vector<int> order;
    scratch.resize(2 * static_cast<size_t>(V));
    order.resize(V);
    for (int n = 0; n < N; ++n)
      ids_out[n] = static_cast<float>(sample_row(logits + static_cast<size_t>(n) * V, V, s,
                                                 u[n], scratch.data(), order.data()));
    return;
  }
  const double* draws = u.data();
#pragma omp parallel
  {
    std::vector<float> scratch(2 * static_cast<size_t>(V));
    std::vector<int> order(V);
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n)
      ids_out[n] = static_cast<float>(sample_row(logits + static_cast<size_t>(n) * V, V, s,
                                                 draws[n], scratch.data(), order.data()));
  }
}

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
