// A standalone check of every kernel path on edge inputs, without MXNet:
// built by tests/native/test_sanitized.py with -fsanitize=undefined (and
// float-cast-overflow, which that does not include) and
// -fno-sanitize-recover, so undefined behaviour anywhere in the kernels
// (a NaN or out-of-range float cast to an integer, a shift of a negative
// number, signed overflow, a misaligned access) fails the test.
//
//   check_kernels            runs every ISA this CPU supports; exit 0 = all good
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "../dispatch.h"

// barrier.h is compiled per ISA like every kernel header; its code has no
// ISA-specific part, so the check builds one copy of its own.
#define MXGEN_ISA_NS barrier_check
#define MXGEN_ISA_LEVEL 0
#include "../barrier.h"
#undef MXGEN_ISA_NS
#undef MXGEN_ISA_LEVEL
#ifdef _OPENMP
#include <omp.h>
#endif
#include "../buffer.h"   // no ISA namespace defined here: mxgen::portable

extern "C" int mxgen_set_isa(const char* name);
extern "C" const char* mxgen_isa_best();

namespace {

int failures = 0;

void check(bool ok, const char* isa, const char* what) {
  if (!ok) {
    std::printf("FAIL [%s] %s\n", isa, what);
    ++failures;
  }
}

std::vector<float> random_vec(size_t n, std::mt19937* rng, float scale) {
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(*rng);
  return v;
}

void check_sgemm(const char* isa, const mxgen::Kernels& k, std::mt19937* rng) {
  const int shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 70, 300}, {6, 16, 257}, {9, 31, 64}};
  for (const auto& s : shapes) {
    const int M = s[0], N = s[1], K = s[2];
    auto a = random_vec(static_cast<size_t>(M) * K, rng, 1.f);
    auto b = random_vec(static_cast<size_t>(K) * N, rng, 1.f);
    std::vector<float> c(static_cast<size_t>(M) * N, -1.f);
    k.sgemm(M, N, K, a.data(), b.data(), c.data());
    double worst = 0;
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        double ref = 0;
        for (int q = 0; q < K; ++q) ref += double(a[m * K + q]) * b[q * N + n];
        worst = std::max(worst, std::fabs(ref - c[m * N + n]) / std::sqrt(double(K)));
      }
    check(worst < 1e-4, isa, "sgemm differs from the reference");
    // bfloat16 operands (8 significand bits): within 1% of the float32 product
    std::vector<float> c16(static_cast<size_t>(M) * N, -1.f);
    k.sgemm_bf16(M, N, K, a.data(), b.data(), c16.data());
    double err = 0, scale = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      err = std::max(err, std::fabs(double(c16[i]) - c[i]));
      scale = std::max(scale, std::fabs(double(c[i])));
    }
    check(err <= 1e-2 * scale * std::sqrt(double(K)) + 1e-6, isa,
          "sgemm_bf16 differs from float32 by more than bfloat16 rounding");
  }
}

void check_lstm_edges(const char* isa, const mxgen::Kernels& k, std::mt19937* rng, bool bf16) {
  const int T = 4, N = 3, I = 5, H = 20, G = 4 * H;
  mxgen::LstmShape s{T, N, I, H, bf16};
  auto x = random_vec(static_cast<size_t>(T) * N * I, rng, 1.f);
  x[0] = NAN;                 // row 0 goes NaN from step 0 on
  x[I] = 1e30f;               // row 1: saturated gates, exp's clamps
  x[2 * I] = -1e30f;
  auto w = random_vec(static_cast<size_t>(G) * (I + H) + 2 * G, rng, 0.5f);
  std::vector<float> h0(N * H, 0.f), c0(N * H, 0.f), y(T * N * H), hT(N * H), cT(N * H);
  std::vector<float> ws(static_cast<size_t>(T) * N * 5 * H);
  k.lstm_forward(s, x.data(), h0.data(), c0.data(), w.data(), y.data(), hT.data(), cT.data(),
                 ws.data());
  check(std::isnan(y[0]), isa, "lstm: NaN input must give NaN output");
  bool finite = true;
  for (int t = 0; t < T; ++t)
    for (int n = 1; n < N; ++n)
      for (int u = 0; u < H; ++u) finite &= std::isfinite(y[(t * N + n) * H + u]);
  check(finite, isa, "lstm: huge inputs must give finite outputs");
  std::vector<float> y2(y.size()), hT2(hT.size()), cT2(cT.size());
  k.lstm_forward(s, x.data(), h0.data(), c0.data(), w.data(), y2.data(), hT2.data(),
                 cT2.data(), nullptr);   // inference: same outputs, nothing saved
  check(std::memcmp(y.data() + N * H, y2.data() + N * H, sizeof(float) * H) == 0, isa,
        "lstm: inference forward differs from training forward");
  auto dy = random_vec(y.size(), rng, 1.f);
  std::vector<float> dhT(N * H, 0.f), dcT(N * H, 0.f), dx(x.size()), dh0(N * H), dc0(N * H),
      dw(w.size());
  k.lstm_backward(s, dy.data(), dhT.data(), dcT.data(), x.data(), h0.data(), c0.data(),
                  w.data(), y.data(), ws.data(), dx.data(), dh0.data(), dc0.data(), dw.data());
}

void check_gru_edges(const char* isa, const mxgen::Kernels& k, std::mt19937* rng, bool bf16) {
  const int T = 3, N = 2, I = 4, H = 17, G = 3 * H;
  mxgen::GruShape s{T, N, I, H, bf16};
  auto x = random_vec(static_cast<size_t>(T) * N * I, rng, 1.f);
  x[1] = NAN;
  x[I + 1] = 3e38f;
  auto w = random_vec(static_cast<size_t>(G) * (I + H) + 2 * G, rng, 0.5f);
  std::vector<float> h0(N * H, 0.f), y(T * N * H), hT(N * H), ws(static_cast<size_t>(T) * N * 4 * H);
  k.gru_forward(s, x.data(), h0.data(), w.data(), y.data(), hT.data(), ws.data());
  check(std::isnan(y[0]), isa, "gru: NaN input must give NaN output");
  auto dy = random_vec(y.size(), rng, 1.f);
  std::vector<float> dhT(N * H, 0.f), dx(x.size()), dh0(N * H), dw(w.size());
  k.gru_backward(s, dy.data(), dhT.data(), x.data(), h0.data(), w.data(), y.data(), ws.data(),
                 dx.data(), dh0.data(), dw.data());
}

void check_dropout(const char* isa, const mxgen::Kernels& k, std::mt19937* rng) {
  const size_t n = 1000;   // not a multiple of 64
  auto x = random_vec(n, rng, 1.f);
  std::vector<float> y(n);
  for (float p : {1e-9f, 1e-30f}) {   // keep = 1 - p rounds to 1: keep everything
    k.dropout(n, x.data(), y.data(), p, 0x123456789abcdefull, 3);
    check(std::memcmp(x.data(), y.data(), sizeof(float) * n) == 0, isa,
          "dropout: a tiny rate must keep every element");
  }
  k.dropout(n, x.data(), y.data(), 0.5f, ~0ull, 0xFFFFFFFFu);
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) kept += y[i] != 0.f;
  check(kept > 400 && kept < 600, isa, "dropout: p = 0.5 keeps about half");
  k.dropout(n, x.data(), y.data(), 0.99999994f, 7, 0);   // largest float p below 1
}

void check_adam(const char* isa, const mxgen::Kernels& k, std::mt19937* rng) {
  // a ragged size (not whole vectors) big enough for the threads to split it,
  // with NaN, infinite and huge gradients among ordinary ones
  const size_t n = 70001;
  auto w = random_vec(n, rng, 1.f), g = random_vec(n, rng, 1.f);
  std::vector<float> m(n, 0.f), v(n, 0.f);
  g[3] = std::nanf("");
  g[5] = INFINITY;
  g[7] = -3e38f;
  const mxgen::AdamArgs clipped = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 0.5f, 1.f};
  k.adam_update(n, w.data(), g.data(), m.data(), v.data(), clipped);
  check(std::isnan(w[3]) && std::isfinite(w[5]) && std::isfinite(w[7]), isa,
        "adam: NaN must stay NaN, clipped infinities finite");
  // one step from zero states against the formula
  const mxgen::AdamArgs plain = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.f, 1.f, -1.f};
  std::vector<float> w2 = {2.f}, g2 = {0.5f}, m2 = {0.f}, v2 = {0.f};
  k.adam_update(1, w2.data(), g2.data(), m2.data(), v2.data(), plain);
  const float m_want = (1.f - 0.9f) * 0.5f, v_want = (1.f - 0.999f) * 0.5f * 0.5f;
  const float w_want = 2.f - 1e-3f * m_want / (std::sqrt(v_want) + 1e-8f);
  check(std::fabs(m2[0] - m_want) < 1e-6f * m_want &&
            std::fabs(v2[0] - v_want) < 1e-6f * v_want && std::fabs(w2[0] - w_want) < 1e-6f,
        isa, "adam: one step from zero states");
}

void check_sampler_and_generation(const char* isa, const mxgen::Kernels& k, std::mt19937* rng) {
  const int V = 7, N = 3;
  auto logits = random_vec(static_cast<size_t>(N) * V, rng, 30.f);   // large logits
  std::vector<float> ids(N);
  for (float t : {0.f, 1e-30f, 1.f, 1e30f})
    for (int top_k : {0, 1, V})
      for (float top_p : {1e-7f, 0.5f, 1.f}) {
        k.sample(logits.data(), N, V, mxgen::Sampling{t, top_k, top_p}, rng, ids.data());
        for (float id : ids) check(id >= 0 && id < V, isa, "sampler: id out of range");
      }
  const int E = 5, H = 9, L = 2;
  for (int round = 0; round < 8; ++round) {
    const bool bf16 = round >= 4;
    const int mode = round % 4;
    const int gates = mode == mxgen::kLstm ? 4 : mode == mxgen::kGru ? 3 : 1;
    const int per = mode == mxgen::kLstm ? 2 : 1;
    for (int batch : {1, 9}) {
      auto embed = random_vec(static_cast<size_t>(V) * E, rng, 1.f);
      std::vector<std::vector<float>> w(L), st(L * per, std::vector<float>(batch * H, 0.f));
      std::vector<const float*> wp(L);
      std::vector<float*> sp(L * per);
      for (int l = 0; l < L; ++l) {
        const int in = l == 0 ? E : H;
        w[l] = random_vec(static_cast<size_t>(gates) * H * (in + H) + 2 * gates * H, rng, 0.5f);
        wp[l] = w[l].data();
      }
      for (int s = 0; s < L * per; ++s) sp[s] = st[s].data();
      auto dec_w = random_vec(static_cast<size_t>(V) * H, rng, 1.f);
      auto dec_b = random_vec(V, rng, 1.f);
      std::vector<int> in_ids(batch, V - 1);
      std::vector<float> out(static_cast<size_t>(batch) * 6);
      mxgen::GenArgs args{static_cast<mxgen::RnnMode>(mode), L, per, gates, batch, E, H, V, 6,
                          bf16, mxgen::Sampling{0.7f, 3, 0.9f}, in_ids.data(), sp.data(),
                          embed.data(), wp.data(), dec_w.data(), dec_b.data(), rng, out.data()};
      k.char_rnn_generate(args);
      for (float id : out) check(id >= 0 && id < V, isa, "generation: id out of range");
    }
  }
}

}  // namespace

// TeamBarrier: after each wait every thread sees what every other thread
// wrote before it, over many rounds (a barrier that let a thread through
// early, or reordered the writes, fails here); with as many threads as CPUs
// (its own spinning wait) and with more (libgomp's barrier).
void check_barrier() {
#ifdef _OPENMP
  const int procs = omp_get_num_procs();
  for (int threads : {std::max(2, procs), procs + 2}) {
    const int rounds = threads > procs ? 200 : 2000;
    std::vector<int> slot(threads * 16, -1);   // one cache line per thread
    int bad = 0;
    mxgen::barrier_check::TeamBarrier barrier;
#pragma omp parallel num_threads(threads) reduction(+ : bad)
    {
      const int team = omp_get_num_threads(), rank = omp_get_thread_num();
      for (int r = 0; r < rounds; ++r) {
        slot[rank * 16] = r;
        barrier.wait(team);
        for (int other = 0; other < team; ++other) bad += slot[other * 16] != r;
        barrier.wait(team);   // nobody writes round r + 1 before all have read round r
      }
    }
    check(bad == 0, "any", "TeamBarrier let a thread through before the others arrived");
  }
#endif
}

// Buffer: growing keeps the values and zero-fills the rest (as
// std::vector's resize, which the kernels relied on), also after shrinking
// and regrowing within the capacity; large buffers start on a 2 MB boundary;
// a moved-from buffer is empty.
void check_buffer() {
  mxgen::portable::Buffer<float> b(1000);
  bool zeros = true;
  for (size_t i = 0; i < b.size(); ++i) zeros &= b.data()[i] == 0.f;
  check(zeros && b.size() == 1000, "any", "Buffer: a new buffer is not zero-filled");
  for (size_t i = 0; i < b.size(); ++i) b.data()[i] = static_cast<float>(i) + 1.f;
  b.resize(600000);   // past 1 MB: new memory on huge pages
  bool kept = true;
  for (size_t i = 0; i < 1000; ++i) kept &= b.data()[i] == static_cast<float>(i) + 1.f;
  for (size_t i = 1000; i < b.size(); ++i) kept &= b.data()[i] == 0.f;
  check(kept, "any", "Buffer: growing lost values or left garbage");
  check(reinterpret_cast<uintptr_t>(b.data()) % (size_t{2} << 20) == 0, "any",
        "Buffer: a large buffer is not 2 MB-aligned");
  for (size_t i = 0; i < b.size(); ++i) b.data()[i] = -1.f;
  b.resize(10);
  b.resize(5000);   // within the capacity: the regrown part is zero again
  bool regrown = b.data()[9] == -1.f;
  for (size_t i = 10; i < b.size(); ++i) regrown &= b.data()[i] == 0.f;
  check(regrown, "any", "Buffer: shrinking and regrowing left stale values");
  mxgen::portable::Buffer<float> c(std::move(b));
  check(b.size() == 0 && b.data() == nullptr && c.size() == 5000, "any",
        "Buffer: a move did not hand the memory over");
}

int main() {
  check_barrier();
  check_buffer();
  const char* isas[] = {"amx_bf16", "avx512_bf16", "avx512", "avx2", "generic"};
  const std::string best = mxgen_isa_best();
  bool reached = false;
  for (const char* isa : isas) {
    reached |= best == isa;
    if (!reached) continue;   // the CPU cannot run this one
    if (mxgen_set_isa(isa) != 0) {
      std::printf("FAIL cannot select %s\n", isa);
      return 1;
    }
    const mxgen::Kernels& k = mxgen::kernels();
    check(std::string(mxgen::isa_name(k.isa)) == isa, isa, "the table in use is not the one asked for");
    std::mt19937 rng(42);
    check_sgemm(isa, k, &rng);
    for (bool bf16 : {false, true}) {
      check_lstm_edges(isa, k, &rng, bf16);
      check_gru_edges(isa, k, &rng, bf16);
    }
    check_dropout(isa, k, &rng);
    check_adam(isa, k, &rng);
    check_sampler_and_generation(isa, k, &rng);
    std::printf("%s: checked\n", isa);
  }
  std::printf("%s\n", failures ? "FAILED" : "ALL OK");
  return failures ? 1 : 0;
}
