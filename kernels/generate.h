// mxgen_char_rnn_generate's loop: `length` steps of a CharRNN (embedding ->
// fused-layout layers -> decoder -> sampler) for N rows in one call, with
// the training kernels' gate arithmetic (lstm.h, gru.h) and GEMM (gemm.h).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "barrier.h"
#include "dispatch.h"
#include "gemm.h"
#include "gru.h"
#include "isa_namespace.h"
#include "lstm.h"
#include "sampler.h"

namespace mxgen {
namespace MXGEN_ISA_NS {

// Below this batch a step is a handful of mat-vecs, bound by reading the
// weights: generate_small below.  From it on, GEMMs (char_rnn_generate).
constexpr int kGemmMinBatch = 8;

// ------------------------------------------------------------ small batches
// The weights are packed per gate, as gemm.h's B panels of W_g^T (gate g's
// H rows of W): panel j of every gate holds hidden units [32 j, 32 j + 32).
// A thread that owns panels [j0, j1) computes all gates of its units, runs
// their cell arithmetic and writes their h, with no barrier in between; a
// step then waits once per layer (h complete), once after the decoder and
// once after the sampler.  The products keep the weights in registers'
// reach: P panels x R rows of accumulators (P R <= 4, 8 vector chains), so
// one pass over a panel serves R rows and no horizontal sums are needed.

#if MXGEN_ISA_LEVEL >= 2
typedef float v16f __attribute__((vector_size(64)));
typedef float v16f_u __attribute__((vector_size(64), aligned(4)));
#endif

// Columns [col0, col0 + P kNR) of Y's rows [0, R) (row stride ldy; only
// columns below ncols written) = (accumulate ? Y : bias) + X Bp, for panels
// j.. j + P - 1 of a packed operand with panel stride `pstride` (in Packed
// elements).  acc holds the sums, column-major per row: acc[r][p * kNR + c].
template <int P, int R>
inline void store_panels(const float (&acc)[R][P * kNR], int col0, int ncols,
                         const float* bias, float* Y, int ldy, bool accumulate) {
  const int nn = std::min(P * kNR, ncols - col0);
  for (int r = 0; r < R; ++r) {
    float* y = Y + static_cast<size_t>(r) * ldy + col0;
    for (int c = 0; c < nn; ++c)
      y[c] = (accumulate ? y[c] : (bias ? bias[col0 + c] : 0.f)) + acc[r][c];
  }
}

template <int P, int R>
inline void panels_f32(int K, const float* Bp, size_t pstride, const float* X, int ldx, int col0,
                       int ncols, const float* bias, float* Y, int ldy, bool accumulate) {
  float out[R][P * kNR];
#if MXGEN_ISA_LEVEL >= 2
  constexpr int kV = kNR / 16;
  v16f acc[R][P][kV];
#pragma GCC unroll 16
  for (int i = 0; i < R * P * kV; ++i) (&acc[0][0][0])[i] = v16f{};
  for (int k = 0; k < K; ++k) {
    v16f b[P][kV];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 2
      for (int v = 0; v < kV; ++v)
        b[p][v] = *reinterpret_cast<const v16f_u*>(Bp + p * pstride +
                                                   static_cast<size_t>(k) * kNR + 16 * v);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const float xr = X[static_cast<size_t>(r) * ldx + k];
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p)
#pragma GCC unroll 2
        for (int v = 0; v < kV; ++v) acc[r][p][v] += xr * b[p][v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p)
      for (int v = 0; v < kV; ++v)
        *reinterpret_cast<v16f_u*>(&out[r][p * kNR + 16 * v]) = acc[r][p][v];
#else
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < P * kNR; ++c) out[r][c] = 0.f;
  for (int k = 0; k < K; ++k)
    for (int r = 0; r < R; ++r) {
      const float xr = X[static_cast<size_t>(r) * ldx + k];
      for (int p = 0; p < P; ++p) {
        const float* b = Bp + p * pstride + static_cast<size_t>(k) * kNR;
#pragma omp simd
        for (int c = 0; c < kNR; ++c) out[r][p * kNR + c] += xr * b[c];
      }
    }
#endif
  store_panels<P, R>(out, col0, ncols, bias, Y, ldy, accumulate);
}

// The same with bfloat16 panels (K pairs, KP of them) and bfloat16 rows of X
// (ldx values each, zero past K), float32 sums.
template <int P, int R>
inline void panels_bf16(int KP, const bf16_t* Bp, size_t pstride, const bf16_t* X, int ldx,
                        int col0, int ncols, const float* bias, float* Y, int ldy,
                        bool accumulate) {
  float out[R][P * kNR];
#if MXGEN_ISA_LEVEL >= 3
  __m512 acc[R][P][2];
#pragma GCC unroll 16
  for (int i = 0; i < R * P * 2; ++i) (&acc[0][0][0])[i] = _mm512_setzero_ps();
  for (int kp = 0; kp < KP; ++kp) {
    __m512bh b[P][2];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 2
      for (int v = 0; v < 2; ++v) {
        const __m512i w = _mm512_loadu_si512(Bp + p * pstride + static_cast<size_t>(kp) * 2 * kNR +
                                             32 * v);
        b[p][v] = reinterpret_cast<const __m512bh&>(w);
      }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512i xi = _mm512_set1_epi32(static_cast<int>(
          reinterpret_cast<const uint32_t*>(X + static_cast<size_t>(r) * ldx)[kp]));
      const __m512bh xr = reinterpret_cast<const __m512bh&>(xi);
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p)
#pragma GCC unroll 2
        for (int v = 0; v < 2; ++v) acc[r][p][v] = _mm512_dpbf16_ps(acc[r][p][v], xr, b[p][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p)
      for (int v = 0; v < 2; ++v) _mm512_storeu_ps(&out[r][p * kNR + 16 * v], acc[r][p][v]);
#else
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < P * kNR; ++c) out[r][c] = 0.f;
  for (int kp = 0; kp < KP; ++kp)
    for (int r = 0; r < R; ++r) {
      const bf16_t* x = X + static_cast<size_t>(r) * ldx + 2 * kp;
      const float x0 = from_bf16(x[0]), x1 = from_bf16(x[1]);
      for (int p = 0; p < P; ++p) {
        const bf16_t* b = Bp + p * pstride + static_cast<size_t>(kp) * 2 * kNR;
        for (int c = 0; c < kNR; ++c)
          out[r][p * kNR + c] += x0 * from_bf16(b[2 * c]) + x1 * from_bf16(b[2 * c + 1]);
      }
    }
#endif
  store_panels<P, R>(out, col0, ncols, bias, Y, ldy, accumulate);
}

// How the small-batch loop multiplies in each precision: pack W_g^T per
// gate, turn a step's input rows into the operand (float32: as they are;
// bfloat16: converted into a buffer of the calling thread), and run the
// P x R blocks above over panels [j0, j1).
struct SmallF32 {
  using Packed = float;
  using Rows = const float*;
  static size_t panels_size(int K, int N) { return packed_b_size(K, N); }
  static void pack(int K, int N, const float* W, Packed* Bp, int j0, int j1) {
    pack_b_panels(true, K, N, W, K, Bp, j0, j1);
  }
  static int ld(int K) { return K; }
  static Rows rows(const float* X, int ldx, int, int, std::vector<float>*) { (void)ldx; return X; }
  template <int P, int R>
  static void block(int K, const Packed* Bp, size_t pstride, Rows X, int ldx, int col0, int ncols,
                    const float* bias, float* Y, int ldy, bool accumulate) {
    panels_f32<P, R>(K, Bp, pstride, X, ldx, col0, ncols, bias, Y, ldy, accumulate);
  }
};

struct SmallBF16 {
  using Packed = bf16_t;
  using Rows = const bf16_t*;
  static size_t panels_size(int K, int N) { return packed_b_size_bf16(K, N); }
  static void pack(int K, int N, const float* W, Packed* Bp, int j0, int j1) {
    pack_b_panels_bf16(true, K, N, W, K, Bp, j0, j1);
  }
  static int ld(int K) { return pad_k(K); }
  // rows X (N, K) -> bfloat16 rows of pad_k(K) in `buf` (a float vector used as storage)
  static Rows rows(const float* X, int ldx, int N, int K, std::vector<float>* buf) {
    const int Kp = pad_k(K);
    buf->resize((static_cast<size_t>(N) * Kp + 1) / 2);
    bf16_t* d = reinterpret_cast<bf16_t*>(buf->data());
    rows_to_bf16(X, ldx, K, 0, N, d, Kp);
    return d;
  }
  template <int P, int R>
  static void block(int K, const Packed* Bp, size_t pstride, Rows X, int ldx, int col0, int ncols,
                    const float* bias, float* Y, int ldy, bool accumulate) {
    panels_bf16<P, R>(pad_k(K) / 2, Bp, pstride, X, ldx, col0, ncols, bias, Y, ldy, accumulate);
  }
};

// Y (N rows, stride ldy; columns < ncols) = (accumulate ? Y : bias) + X Bp
// for a packed (K, ncols) operand, all its panels: blocks of R rows and
// P = 4 / R panels.
template <typename S>
inline void panel_products(int K, const typename S::Packed* Bp, typename S::Rows X, int N,
                           int ncols, const float* bias, float* Y, int ldy, bool accumulate) {
  const size_t pstride = S::panels_size(K, kNR);
  const int ldx = S::ld(K), j1 = ceil_div(ncols, kNR);
  for (int r = 0; r < N; r += 4) {
    const int R = std::min(4, N - r);
    typename S::Rows x = X + static_cast<size_t>(r) * ldx;
    float* y = Y + static_cast<size_t>(r) * ldy;
    int j = 0;
    auto run = [&](auto p_tag, auto r_tag) {
      constexpr int kP = decltype(p_tag)::value, kR = decltype(r_tag)::value;
      S::template block<kP, kR>(K, Bp + j * pstride, pstride, x, ldx, j * kNR, ncols, bias, y,
                                ldy, accumulate);
      j += kP;
    };
    using One = std::integral_constant<int, 1>;
    switch (R) {
      case 1:
        while (j + 4 <= j1) run(std::integral_constant<int, 4>(), One());
        while (j + 2 <= j1) run(std::integral_constant<int, 2>(), One());
        while (j < j1) run(One(), One());
        break;
      case 2:
        while (j + 2 <= j1) run(std::integral_constant<int, 2>(), std::integral_constant<int, 2>());
        while (j < j1) run(One(), std::integral_constant<int, 2>());
        break;
      case 3:
        while (j < j1) run(One(), std::integral_constant<int, 3>());
        break;
      default:
        while (j < j1) run(One(), std::integral_constant<int, 4>());
    }
  }
}

// One thread's share of a weight matrix of a layer ((gates * H, K) row-major
// as MXNet keeps it): for every gate, the panels of its hidden units [u0, u0
// + n), packed gate by gate.  Each thread keeps its share in an arena of its
// own, contiguous and on huge pages (buffer.h), so that its ~850 KB of
// bfloat16 weights (2x256 LSTM) cover its 1 MB L2 evenly instead of landing
// on scattered 4 KB pages between the other thread's panels.  Measured on a
// Zen 4: the weight products stream 31-36 bytes a cycle the old way, 37-40
// this way (standalone); a batch-1 generation call +4-8% in both precisions.
template <typename S>
struct GatePanels {
  int K = 0, H = 0, gates = 0, u0 = 0, n = 0;
  size_t per_gate = 0;
  typename S::Packed* data = nullptr;   // per_gate * gates values, in panel_arena

  // sizes only, for units [first, last) of each gate's H; place() gives the storage
  void init(int k, int h, int g, int first, int last) {
    K = k, H = h, gates = g, u0 = first, n = std::max(0, last - first);
    per_gate = S::panels_size(K, n);
  }
  size_t size() const { return per_gate * gates; }
  void pack(const float* W) {
    for (int g = 0; g < gates; ++g)
      S::pack(K, n, W + (static_cast<size_t>(g) * H + u0) * K, data + g * per_gate, 0,
              ceil_div(n, kNR));
  }
  // Y[r * ldy + g * H + u] for every gate g and this share's units u
  void apply(typename S::Rows X, int N, const float* bias, float* Y, int ldy,
             bool accumulate) const {
    for (int g = 0; g < gates; ++g)
      panel_products<S>(K, data + g * per_gate, X, N, n,
                        bias ? bias + static_cast<size_t>(g) * H + u0 : nullptr,
                        Y + static_cast<size_t>(g) * H + u0, ldy, accumulate);
  }
};

// A thread's packed weights of a generation call, in a buffer of that thread
// that later calls reuse (a fresh one was zero-filled and faulted in page by
// page on every call, a tenth of a short call's time at batch 1), on huge
// pages (buffer.h).  Every value is written by the packing before it is read.
template <typename T>
inline T* panel_arena(size_t n) {
  static thread_local Buffer<T> arena;
  if (arena.size() < n) arena.resize(n);
  return arena.data();
}

// char_rnn_generate for N < kGemmMinBatch, in one parallel region.
template <typename S>
inline void generate_small(const GenArgs& a) {
  const int N = a.N, E = a.E, H = a.H, V = a.V, L = a.layers, G = a.gates, GH = G * H;
  const size_t NH = static_cast<size_t>(N) * H;
  std::vector<std::vector<float>> bias(L);   // lstm/rnn: b_i2h + b_h2h, one add per step saved
  for (int l = 0; l < L; ++l) {
    const int in_l = l == 0 ? E : H;
    const float* b_i2h = a.layer_w[l] + static_cast<size_t>(GH) * (in_l + H);
    bias[l].resize(GH);
    for (int g = 0; g < GH; ++g) bias[l][g] = b_i2h[g] + b_i2h[GH + g];
  }
  // h of each layer in two buffers used in turn: step t reads h_{t-1} from one
  // while the threads write h_t into the other
  std::vector<float> hbuf(static_cast<size_t>(L) * 2 * NH);
  auto h_at = [&](int l, int t) { return hbuf.data() + (static_cast<size_t>(l) * 2 + (t & 1)) * NH; };
  for (int l = 0; l < L; ++l) std::memcpy(h_at(l, 0), a.states[l * a.per_layer], sizeof(float) * NH);
  // step s reads prompt column s while s < P, then the id sampled at s - 1
  const int P = std::max(1, a.prompt), steps = P - 1 + a.length;
  std::vector<int> ids(N);
  auto id_at = [&](int n, int s) { return s < P ? a.ids_in[static_cast<size_t>(n) * P + s] : ids[n]; };
  std::vector<float> pre(static_cast<size_t>(N) * GH), hh(static_cast<size_t>(N) * GH);
  std::vector<float> logits(static_cast<size_t>(N) * V), next(N);
  const int pn = ceil_div(H, kNR), pv = ceil_div(V, kNR);
  TeamBarrier step_barrier;

#pragma omp parallel
  {
    const int team = omp_team(), rank = omp_rank();
    int j0, j1, d0, d1;
    split_range(pn, team, rank, &j0, &j1);
    split_range(pv, team, rank, &d0, &d1);
    const int u0 = std::min(H, j0 * kNR), u1 = std::min(H, j1 * kNR);
    // this thread's panels, packed by it into its own arena
    std::vector<GatePanels<S>> w_i2h(L), w_h2h(L);
    GatePanels<S> dec;
    size_t total = 0;
    for (int l = 0; l < L; ++l) {
      w_i2h[l].init(l == 0 ? E : H, H, G, u0, u1);
      w_h2h[l].init(H, H, G, u0, u1);
      total += w_i2h[l].size() + w_h2h[l].size();
    }
    dec.init(H, V, 1, std::min(V, d0 * kNR), std::min(V, d1 * kNR));
    total += dec.size();
    typename S::Packed* next_free = panel_arena<typename S::Packed>(total);
    auto place = [&](GatePanels<S>* p) {
      p->data = next_free;
      next_free += p->size();
    };
    for (int l = 0; l < L; ++l) {
      const int in_l = l == 0 ? E : H;
      place(&w_i2h[l]);
      place(&w_h2h[l]);
      w_i2h[l].pack(a.layer_w[l]);
      w_h2h[l].pack(a.layer_w[l] + static_cast<size_t>(GH) * in_l);
    }
    place(&dec);
    dec.pack(a.dec_w);
    std::vector<float> x0(static_cast<size_t>(N) * E), xbuf, hbuf16;
    for (int t = 0; t < steps; ++t) {
      for (int n = 0; n < N; ++n)                                // embedding lookup
        std::memcpy(x0.data() + static_cast<size_t>(n) * E,
                    a.embed + static_cast<size_t>(id_at(n, t)) * E, sizeof(float) * E);
      for (int l = 0; l < L; ++l) {
        const int in_l = l == 0 ? E : H;
        const float* x = l == 0 ? x0.data() : h_at(l - 1, t + 1);
        const float* h_prev = h_at(l, t);
        float* h = h_at(l, t + 1);
        w_i2h[l].apply(S::rows(x, in_l, N, in_l, &xbuf), N, nullptr, pre.data(), GH, false);
        // the GRU's reset gate scales only the h2h term: keep it apart
        w_h2h[l].apply(S::rows(h_prev, H, N, H, &hbuf16), N, nullptr,
                       a.mode == kGru ? hh.data() : pre.data(), GH, a.mode != kGru);
        for (int n = 0; n < N; ++n) {
          const float* pre_n = pre.data() + static_cast<size_t>(n) * GH;
          const size_t row = static_cast<size_t>(n) * H;
          if (a.mode == kLstm) {
            float* c_n = a.states[l * 2 + 1] + row;
            lstm_cell_forward<false, float>(pre_n, bias[l].data(), c_n, c_n, h + row, nullptr,
                                            H, u0, u1);
          } else if (a.mode == kGru) {
            const float* b_i2h = a.layer_w[l] + static_cast<size_t>(GH) * (in_l + H);
            gru_cell_forward<false, float>(pre_n, hh.data() + static_cast<size_t>(n) * GH,
                                           b_i2h, b_i2h + GH, h_prev + row, h + row, nullptr,
                                           H, u0, u1);
          } else {
            for (int u = u0; u < u1; ++u) {
              const float v = pre_n[u] + bias[l][u];
              h[row + u] = a.mode == kRnnTanh ? std::tanh(v) : std::max(v, 0.f);
            }
          }
        }
        step_barrier.wait(team);   // h_t of this layer complete: the next layer's input
      }
      if (t < P - 1) continue;          // priming: the next input is the prompt's
      dec.apply(S::rows(h_at(L - 1, t + 1), H, N, H, &hbuf16), N, a.dec_b, logits.data(), V,
                false);
      step_barrier.wait(team);
      if (rank == 0) {
        sample_rows(logits.data(), N, V, a.sampling, a.rng, next.data());
        for (int n = 0; n < N; ++n) {
          a.ids_out[static_cast<size_t>(n) * a.length + t - (P - 1)] = next[n];
          ids[n] = static_cast<int>(next[n]);
        }
      }
      step_barrier.wait(team);   // the next ids
    }
  }
  for (int l = 0; l < L; ++l)
    std::memcpy(a.states[l * a.per_layer], h_at(l, steps), sizeof(float) * NH);
}

// A weight matrix used at every generation step of a batch worth a GEMM:
// W^T packed once (first use; bfloat16 panels with bf16) and each step runs
// gemm.h's kernel on it.
struct Linear {
  const float* W;
  int rows, cols;
  bool bf16;
  std::vector<float> packed;

  void apply(const float* X, int N, const float* bias, float* Y, bool accumulate) {
    const int pn = ceil_div(rows, kNR), pm = ceil_div(N, kMR);
    if (packed.empty()) {
      if (bf16) {
        packed.resize((packed_b_size_bf16(cols, rows) + 1) / 2);
        pack_b_panels_bf16(true, cols, rows, W, cols, reinterpret_cast<bf16_t*>(packed.data()),
                           0, pn);
      } else {
        packed.resize(packed_b_size(cols, rows));
        pack_b_panels(true, cols, rows, W, cols, packed.data(), 0, pn);
      }
    }
    if (!accumulate) {
      for (int n = 0; n < N; ++n) {
        float* y = Y + static_cast<size_t>(n) * rows;
        for (int r = 0; r < rows; ++r) y[r] = bias ? bias[r] : 0.f;
      }
    }
#pragma omp parallel if (static_cast<long>(N) * rows * cols > 200000)
    {
      int lo, hi;
      split_range(pn, omp_team(), omp_rank(), &lo, &hi);
      if (bf16)
        BF16::gemm(N, rows, cols, X, cols, reinterpret_cast<const bf16_t*>(packed.data()), 0,
                   pm, lo, hi, Y, rows, true);
      else
        gemm_panels(N, rows, cols, X, cols, packed.data(), 0, pm, lo, hi, Y, rows, true);
    }
  }
};

inline void char_rnn_generate(const GenArgs& a) {
  if (a.N < kGemmMinBatch) {
    if (a.bf16)
      generate_small<SmallBF16>(a);
    else
      generate_small<SmallF32>(a);
    return;
  }
  const int N = a.N, E = a.E, H = a.H, V = a.V, L = a.layers, GH = a.gates * H;
  const size_t NH = static_cast<size_t>(N) * H;
  std::vector<Linear> lin_i2h, lin_h2h;
  std::vector<std::vector<float>> bias(L);   // lstm/rnn: b_i2h + b_h2h, one add per step saved
  for (int l = 0; l < L; ++l) {
    const int in_l = l == 0 ? E : H;
    const float* w = a.layer_w[l];
    const float* b_i2h = w + static_cast<size_t>(GH) * (in_l + H);
    lin_i2h.push_back(Linear{w, GH, in_l, a.bf16, {}});
    lin_h2h.push_back(Linear{w + static_cast<size_t>(GH) * in_l, GH, H, a.bf16, {}});
    bias[l].resize(GH);
    for (int g = 0; g < GH; ++g) bias[l][g] = b_i2h[g] + b_i2h[GH + g];
  }
  Linear lin_dec{a.dec_w, V, H, a.bf16, {}};
  const int P = std::max(1, a.prompt), steps = P - 1 + a.length;   // as in generate_small
  std::vector<int> ids(N);
  std::vector<float> pre(static_cast<size_t>(N) * GH), hh(static_cast<size_t>(N) * GH);
  std::vector<float> logits(static_cast<size_t>(N) * V), next(N);
  std::vector<float> x(static_cast<size_t>(N) * std::max(E, H));

  for (int t = 0; t < steps; ++t) {
    for (int n = 0; n < N; ++n) {                                // embedding lookup
      const int id = t < P ? a.ids_in[static_cast<size_t>(n) * P + t] : ids[n];
      std::memcpy(x.data() + static_cast<size_t>(n) * E, a.embed + static_cast<size_t>(id) * E,
                  sizeof(float) * E);
    }
    int in_size = E;
    for (int l = 0; l < L; ++l) {
      const float* b_i2h = a.layer_w[l] + static_cast<size_t>(GH) * (in_size + H);
      const float* b_h2h = b_i2h + GH;
      float* h = a.states[l * a.per_layer];                      // (N, H), updated in place
      if (a.mode == kGru) {   // the reset gate scales only the h2h term: keep it apart
        lin_i2h[l].apply(x.data(), N, nullptr, pre.data(), false);
        lin_h2h[l].apply(h, N, nullptr, hh.data(), false);
      } else {
        lin_i2h[l].apply(x.data(), N, nullptr, pre.data(), false);
        lin_h2h[l].apply(h, N, nullptr, pre.data(), true);
      }
#pragma omp parallel for schedule(static)
      for (int n = 0; n < N; ++n) {
        const float* pre_n = pre.data() + static_cast<size_t>(n) * GH;
        float* h_n = h + static_cast<size_t>(n) * H;
        if (a.mode == kLstm) {
          float* c_n = a.states[l * 2 + 1] + static_cast<size_t>(n) * H;
          lstm_cell_forward<false, float>(pre_n, bias[l].data(), c_n, c_n, h_n, nullptr, H, 0,
                                          H);
        } else if (a.mode == kGru) {
          gru_cell_forward<false, float>(pre_n, hh.data() + static_cast<size_t>(n) * GH, b_i2h,
                                         b_h2h, h_n, h_n, nullptr, H, 0, H);
        } else {
          for (int j = 0; j < H; ++j) {
            const float v = pre_n[j] + bias[l][j];
            h_n[j] = a.mode == kRnnTanh ? std::tanh(v) : std::max(v, 0.f);
          }
        }
      }
      std::memcpy(x.data(), h, sizeof(float) * NH);              // next layer's input
      in_size = H;
    }
    if (t < P - 1) continue;            // priming: the next input is the prompt's
    lin_dec.apply(x.data(), N, a.dec_b, logits.data(), false);
    sample_rows(logits.data(), N, V, a.sampling, a.rng, next.data());
    for (int n = 0; n < N; ++n) {
      a.ids_out[static_cast<size_t>(n) * a.length + t - (P - 1)] = next[n];
      ids[n] = static_cast<int>(next[n]);
    }
  }
}

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
