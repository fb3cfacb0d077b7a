// Standalone check of mxgen's CUDA kernels against a CPU reference, with no
// MXNet (the GPU machines we test on have no CUDA build of mxnet 1.9).
//
//   nvcc -O2 -arch=sm_90 -o test_gpu_kernels test_gpu_kernels.cu gpu_kernels.cu
//   ./test_gpu_kernels        # exit 0 = all checks passed
//
// Checks: (1) greedy generation gives exactly the CPU reference's ids for
// lstm, gru, rnn_tanh and rnn_relu, 1 and 2 layers, batch 1 and 5, and the
// same final states to 1e-4; (2) the sampler's draws with temperature, top-k
// and top-p follow the target distribution (chi-square); (3) the same seed
// gives the same draws.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "gpu_api.h"
#include "philox.cuh"

using mxgen::gpu::RandState;

using mxgen::gpu::SamplingArgs;

#define CHECK_CUDA(call)                                                              \
  do {                                                                                \
    cudaError_t e = (call);                                                           \
    if (e != cudaSuccess) {                                                           \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e), __FILE__, __LINE__); \
      std::exit(2);                                                                   \
    }                                                                                 \
  } while (0)

static int failures = 0;
#define EXPECT(cond, ...)                 \
  do {                                    \
    if (!(cond)) {                        \
      std::printf("FAIL: " __VA_ARGS__);  \
      std::printf("\n");                  \
      ++failures;                         \
    }                                     \
  } while (0)

__global__ void init_states(RandState* s, int n, unsigned long long seed) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) mxgen::gpu::rand_init(seed, i, &s[i]);
}

template <typename T>
T* to_device(const std::vector<T>& v) {
  T* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, sizeof(T) * std::max<size_t>(v.size(), 1)));
  CHECK_CUDA(cudaMemcpy(d, v.data(), sizeof(T) * v.size(), cudaMemcpyHostToDevice));
  return d;
}
template <typename T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> v(n);
  CHECK_CUDA(cudaMemcpy(v.data(), d, sizeof(T) * n, cudaMemcpyDeviceToHost));
  return v;
}

static float sig(float v) { return 1.f / (1.f + std::exp(-v)); }

// CPU reference: greedy generation with the fused-layout weights.
static std::vector<int> reference(int mode, int L, int N, int E, int H, int V, int length,
                                  std::vector<int> ids, std::vector<std::vector<float>>* states,
                                  const std::vector<float>& embed,
                                  const std::vector<std::vector<float>>& w,
                                  const std::vector<float>& dec_w,
                                  const std::vector<float>& dec_b) {
  const int G = mode == 3 ? 4 : mode == 2 ? 3 : 1, GH = G * H, per = mode == 3 ? 2 : 1;
  std::vector<int> out(static_cast<size_t>(N) * length);
  for (int t = 0; t < length; ++t) {
    for (int n = 0; n < N; ++n) {
      std::vector<float> x(embed.begin() + static_cast<size_t>(ids[n]) * E,
                           embed.begin() + static_cast<size_t>(ids[n] + 1) * E);
      for (int l = 0; l < L; ++l) {
        const int I = l == 0 ? E : H;
        const float* wi = w[l].data();
        const float* wh = wi + static_cast<size_t>(GH) * I;
        const float* bi = wh + static_cast<size_t>(GH) * H;
        const float* bh = bi + GH;
        float* h = (*states)[l * per].data() + static_cast<size_t>(n) * H;
        float* c = mode == 3 ? (*states)[l * per + 1].data() + static_cast<size_t>(n) * H : nullptr;
        std::vector<float> a(GH), b(GH), hn(H);
        for (int r = 0; r < GH; ++r) {
          float sa = 0, sb = 0;
          for (int k = 0; k < I; ++k) sa += x[k] * wi[static_cast<size_t>(r) * I + k];
          for (int k = 0; k < H; ++k) sb += h[k] * wh[static_cast<size_t>(r) * H + k];
          a[r] = sa + bi[r] + (mode == 2 ? 0.f : bh[r]);
          b[r] = sb + (mode == 2 ? bh[r] : 0.f);
        }
        for (int j = 0; j < H; ++j) {
          if (mode == 3) {
            const float cn = sig(a[H + j] + b[H + j]) * c[j] +
                             sig(a[j] + b[j]) * std::tanh(a[2 * H + j] + b[2 * H + j]);
            c[j] = cn;
            hn[j] = sig(a[3 * H + j] + b[3 * H + j]) * std::tanh(cn);
          } else if (mode == 2) {
            const float r = sig(a[j] + b[j]), z = sig(a[H + j] + b[H + j]);
            const float cand = std::tanh(a[2 * H + j] + r * b[2 * H + j]);
            hn[j] = (1.f - z) * cand + z * h[j];
          } else {
            const float v = a[j] + b[j];
            hn[j] = mode == 1 ? std::tanh(v) : std::max(v, 0.f);
          }
        }
        std::copy(hn.begin(), hn.end(), h);
        x = hn;
      }
      int best = 0;
      float best_v = -INFINITY;
      for (int v = 0; v < V; ++v) {
        float s = dec_b[v];
        for (int k = 0; k < H; ++k) s += x[k] * dec_w[static_cast<size_t>(v) * H + k];
        if (s > best_v) { best_v = s; best = v; }
      }
      out[static_cast<size_t>(n) * length + t] = best;
    }
    for (int n = 0; n < N; ++n) ids[n] = out[static_cast<size_t>(n) * length + t];
  }
  return out;
}

static void check_generation(int mode, int L, int N, RandState* rs) {
  const int E = 12, H = 40, V = 37, length = 60;
  const int G = mode == 3 ? 4 : mode == 2 ? 3 : 1, per = mode == 3 ? 2 : 1;
  std::mt19937 gen(100 + mode * 10 + L + N);
  std::normal_distribution<float> normal(0.f, 0.5f);
  auto randv = [&](size_t n) { std::vector<float> v(n); for (auto& x : v) x = normal(gen); return v; };
  const auto embed = randv(static_cast<size_t>(V) * E);
  std::vector<std::vector<float>> w;
  for (int l = 0; l < L; ++l) {
    const int I = l == 0 ? E : H;
    w.push_back(randv(static_cast<size_t>(G) * H * (I + H) + 2 * G * H));
  }
  const auto dec_w = randv(static_cast<size_t>(V) * H), dec_b = randv(V);
  std::vector<std::vector<float>> states;
  for (int s = 0; s < L * per; ++s) states.push_back(randv(static_cast<size_t>(N) * H));
  std::vector<int> ids(N);
  for (int n = 0; n < N; ++n) ids[n] = (7 * n + 3) % V;

  // device copies
  float* d_embed = to_device(embed);
  std::vector<float*> d_w, d_states;
  for (auto& x : w) d_w.push_back(to_device(x));
  for (auto& x : states) d_states.push_back(to_device(x));
  float* d_dec_w = to_device(dec_w);
  float* d_dec_b = to_device(dec_b);
  std::vector<float> ids_f(ids.begin(), ids.end());
  float* d_ids = to_device(ids_f);
  float* d_out = nullptr;
  float* d_ws = nullptr;
  CHECK_CUDA(cudaMalloc(&d_out, sizeof(float) * N * length));
  CHECK_CUDA(cudaMalloc(&d_ws, sizeof(float) * mxgen::gpu::workspace_floats(N, E, H, G, V)));
  std::vector<const float*> wptr(d_w.begin(), d_w.end());
  const char* err = mxgen::gpu::char_rnn_generate(
      mode, L, N, E, H, V, length, d_ids, d_states.data(), d_embed, wptr.data(), d_dec_w,
      d_dec_b, SamplingArgs{0.f, 0, 1.f}, rs, 1024, d_ws, d_out, nullptr);
  EXPECT(err == nullptr, "generate mode %d: %s", mode, err ? err : "");
  CHECK_CUDA(cudaDeviceSynchronize());
  const auto got = to_host(d_out, static_cast<size_t>(N) * length);
  const auto want = reference(mode, L, N, E, H, V, length, ids, &states, embed, w, dec_w, dec_b);
  int mismatch = -1;
  for (size_t i = 0; i < want.size(); ++i)
    if (static_cast<int>(got[i]) != want[i]) { mismatch = static_cast<int>(i); break; }
  EXPECT(mismatch < 0, "greedy ids differ: mode %d layers %d batch %d at %d", mode, L, N, mismatch);
  for (int s = 0; s < L * per; ++s) {
    const auto h = to_host(d_states[s], static_cast<size_t>(N) * H);
    float diff = 0;
    for (size_t i = 0; i < h.size(); ++i) diff = std::max(diff, std::fabs(h[i] - states[s][i]));
    EXPECT(diff < 1e-4f, "final state %d differs by %g (mode %d)", s, diff, mode);
  }
  std::printf("generation mode %d layers %d batch %d: %s\n", mode, L, N,
              mismatch < 0 ? "ok" : "MISMATCH");
  for (auto p : d_w) cudaFree(p);
  for (auto p : d_states) cudaFree(p);
  cudaFree(d_embed); cudaFree(d_dec_w); cudaFree(d_dec_b); cudaFree(d_ids); cudaFree(d_out);
  cudaFree(d_ws);
}

// Expected distribution after temperature, top-k, top-p (the CPU op's rules).
static std::vector<double> target(const std::vector<float>& logits, SamplingArgs s) {
  const int V = static_cast<int>(logits.size());
  std::vector<double> z(V);
  for (int v = 0; v < V; ++v) z[v] = logits[v] / s.temperature;
  if (s.top_k > 0 && s.top_k < V) {
    std::vector<double> tmp(z);
    std::sort(tmp.begin(), tmp.end(), std::greater<double>());
    for (auto& x : z) if (x < tmp[s.top_k - 1]) x = -INFINITY;
  }
  const double mx = *std::max_element(z.begin(), z.end());
  double sum = 0;
  for (auto& x : z) { x = std::exp(x - mx); sum += x; }
  for (auto& x : z) x /= sum;
  if (s.top_p < 1.f) {
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return z[a] > z[b]; });
    double before = 0, cut = 0;
    for (int r = 0; r < V && before < s.top_p; ++r) { cut = z[order[r]]; before += z[order[r]]; }
    double kept = 0;
    for (auto& x : z) { if (x < cut) x = 0; kept += x; }
    for (auto& x : z) x /= kept;
  }
  return z;
}

static void check_sampler(RandState* rs) {
  const int V = 20, rows = 4000, rounds = 5;   // 20,000 draws per setting
  std::vector<float> row(V);
  for (int v = 0; v < V; ++v) row[v] = std::sin(1.3f * v) * 2.f;
  std::vector<float> logits;
  for (int r = 0; r < rows; ++r) logits.insert(logits.end(), row.begin(), row.end());
  float* d_logits = to_device(logits);
  float* d_ids = nullptr;
  CHECK_CUDA(cudaMalloc(&d_ids, sizeof(float) * rows));
  const SamplingArgs settings[] = {{1.f, 0, 1.f}, {0.7f, 5, 1.f}, {1.3f, 0, 0.8f},
                                   {0.9f, 8, 0.7f}};
  for (const auto& s : settings) {
    std::vector<double> counts(V, 0);
    for (int k = 0; k < rounds; ++k) {
      const char* err = mxgen::gpu::sample(d_logits, rows, V, s, rs, 32768, d_ids, nullptr);
      EXPECT(err == nullptr, "sample: %s", err ? err : "");
      for (float id : to_host(d_ids, rows)) counts[static_cast<int>(id)] += 1;
    }
    const auto p = target(row, s);
    const double n = static_cast<double>(rows) * rounds;
    double chi2 = 0;
    int dof = -1;
    bool outside = false;
    for (int v = 0; v < V; ++v) {
      if (p[v] == 0) { outside |= counts[v] > 0; continue; }
      chi2 += (counts[v] - n * p[v]) * (counts[v] - n * p[v]) / (n * p[v]);
      ++dof;
    }
    // 99.9% quantile of chi-square: dof + 3.1 sqrt(2 dof) + 6 is a safe bound here
    const double bound = dof + 3.1 * std::sqrt(2.0 * dof) + 6;
    EXPECT(!outside, "sampler drew a filtered id (T=%g k=%d p=%g)", s.temperature, s.top_k,
           s.top_p);
    EXPECT(chi2 < bound, "chi-square %g >= %g (T=%g k=%d p=%g)", chi2, bound, s.temperature,
           s.top_k, s.top_p);
    std::printf("sampler T=%.1f top_k=%d top_p=%.1f: chi2 %.1f (dof %d)\n", s.temperature,
                s.top_k, s.top_p, chi2, dof);
  }
  // same seed, same draws
  std::vector<float> first, second;
  for (int pass = 0; pass < 2; ++pass) {
    init_states<<<(32768 + 255) / 256, 256>>>(rs, 32768, 1234);
    mxgen::gpu::sample(d_logits, rows, V, settings[1], rs, 32768, d_ids, nullptr);
    (pass == 0 ? first : second) = to_host(d_ids, rows);
  }
  EXPECT(first == second, "same seed gave different draws");
  cudaFree(d_logits);
  cudaFree(d_ids);
}

// What reading the kernels found, checked: the largest vocabulary launches
// (its shared memory fits), a larger one and more rows than random states
// are refused, and generation refuses input ids outside the vocabulary.
static void check_limits(RandState* rs) {
  const int V = mxgen::gpu::kMaxVocab, rows = 3;
  std::vector<float> logits(static_cast<size_t>(rows) * V, 0.f);
  for (int r = 0; r < rows; ++r) logits[static_cast<size_t>(r) * V + V - 1 - r] = 5.f;
  float* d_logits = to_device(logits);
  float* d_ids = nullptr;
  CHECK_CUDA(cudaMalloc(&d_ids, sizeof(float) * rows));
  const char* err = mxgen::gpu::sample(d_logits, rows, V, {0.f, 0, 1.f}, rs, 32768, d_ids,
                                       nullptr);
  EXPECT(err == nullptr, "sampler at kMaxVocab: %s", err ? err : "");
  const auto ids = to_host(d_ids, rows);
  EXPECT(cudaGetLastError() == cudaSuccess && ids[0] == V - 1 && ids[2] == V - 3,
         "greedy at kMaxVocab picked %g, %g", ids[0], ids[2]);
  err = mxgen::gpu::sample(d_logits, rows, V, {1.f, 0, 1.f}, rs, 32768, d_ids, nullptr);
  EXPECT(err == nullptr && cudaDeviceSynchronize() == cudaSuccess,
         "sampling at kMaxVocab failed: %s", err ? err : "");
  EXPECT(mxgen::gpu::sample(d_logits, rows, V + 1, {1.f, 0, 1.f}, rs, 32768, d_ids,
                            nullptr) != nullptr, "a vocabulary above kMaxVocab was accepted");
  EXPECT(mxgen::gpu::sample(d_logits, rows, 8, {1.f, 0, 1.f}, rs, 2, d_ids, nullptr) != nullptr,
         "more rows than random states were accepted");
  // generation: an input id outside [0, V)
  const int E = 4, H = 8, G = 4, Vg = 10;
  std::vector<float> embed(static_cast<size_t>(Vg) * E, 0.1f), w(G * H * (E + H) + 2 * G * H, 0.f);
  std::vector<float> dec_w(static_cast<size_t>(Vg) * H, 0.f), dec_b(Vg, 0.f), zeros(H, 0.f);
  float* d_embed = to_device(embed);
  float* d_w = to_device(w);
  float* d_dw = to_device(dec_w);
  float* d_db = to_device(dec_b);
  float* d_h = to_device(zeros);
  float* d_c = to_device(zeros);
  float* d_bad = to_device(std::vector<float>{static_cast<float>(Vg)});
  float* d_work = nullptr;
  CHECK_CUDA(cudaMalloc(&d_work, sizeof(float) * mxgen::gpu::workspace_floats(1, E, H, G, Vg)));
  float* states[2] = {d_h, d_c};
  const float* layers[1] = {d_w};
  err = mxgen::gpu::char_rnn_generate(3, 1, 1, E, H, Vg, 2, d_bad, states, d_embed, layers,
                                      d_dw, d_db, {0.f, 0, 1.f}, rs, 32768, d_work, d_ids,
                                      nullptr);
  EXPECT(err != nullptr, "generation accepted an input id outside the vocabulary");
  for (float* p : {d_logits, d_ids, d_embed, d_w, d_dw, d_db, d_h, d_c, d_bad, d_work})
    cudaFree(p);
}

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device\n");
    return 3;
  }
  RandState* rs = nullptr;
  CHECK_CUDA(cudaMalloc(&rs, sizeof(*rs) * 32768));
  init_states<<<(32768 + 255) / 256, 256>>>(rs, 32768, 7);
  for (int mode = 0; mode < 4; ++mode)
    for (int L = 1; L <= 2; ++L)
      for (int N : {1, 5}) check_generation(mode, L, N, rs);
  check_sampler(rs);
  check_limits(rs);
  cudaFree(rs);
  std::printf(failures ? "%d check(s) FAILED\n" : "all checks passed\n", failures);
  return failures ? 1 : 0;
}
