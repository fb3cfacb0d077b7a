// mxgen native operators for fast generation, loaded with mx.library.load().
//
//   mxgen_sample(logits (N, V)) -> ids (N,)
//       temperature, then top-k, then top-p (nucleus) filtering, then one
//       categorical draw per row from MXNet's seeded CPU random states.
//       temperature == 0 is greedy (arg-max).
//
//   mxgen_char_rnn_generate(ids (N,), states..., embed (V, E),
//                           layer weights x num_layers, dec_w (V, H), dec_b (V))
//       -> generated ids (N, length), final states...
//       Runs `length` steps of a CharRNN (embedding -> fused-layout RNN layers
//       -> decoder -> sampler) in one call.  Each layer's weights are MXNet's
//       fused RNN vector for one layer: [W_i2h (G*H, I), W_h2h (G*H, H),
//       b_i2h (G*H), b_h2h (G*H)], gates lstm i,f,g,o / gru r,z,n.
//       States: lstm (h, c) per layer, others h; each (1, N, H).
//
//   mxgen_lstm(x, h0, c0, weights) -> y, hT, cT           (training, see lstm.h)
//   mxgen_gru(x, h0, weights) -> y, hT                    (training, see gru.h)
//   mxgen_dropout(x, probe (64,)) -> y                    (training, see dropout.h)
//
// Built against the lib_api.h / lib_api.cc shipped in the installed mxnet wheel.
#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mxnet/lib_api.h"

#include "activations.h"
#include "dropout.h"
#include "gemm.h"
#include "gru.h"
#include "lstm.h"
#ifdef MXGEN_WITH_CUDA
#include "cuda/gpu_api.h"
#endif

using namespace mxnet::ext;
using mxgen::GruShape;
using mxgen::LstmShape;

namespace {

// ---------------------------------------------------------------- attributes
bool get_float(const std::unordered_map<std::string, std::string>& attrs, const char* key,
               float fallback, float* out) {
  auto it = attrs.find(key);
  if (it == attrs.end()) { *out = fallback; return true; }
  try { *out = std::stof(it->second); } catch (...) { return false; }
  return std::isfinite(*out);
}

bool get_int(const std::unordered_map<std::string, std::string>& attrs, const char* key,
             int fallback, int* out) {
  auto it = attrs.find(key);
  if (it == attrs.end()) { *out = fallback; return true; }
  try { size_t pos = 0; *out = std::stoi(it->second, &pos); return pos == it->second.size(); }
  catch (...) { return false; }
}

struct Sampling { float temperature; int top_k; float top_p; };

MXReturnValue parse_sampling(const std::unordered_map<std::string, std::string>& attrs,
                             Sampling* s) {
  if (!get_float(attrs, "temperature", 1.0f, &s->temperature) || s->temperature < 0) {
    MX_ERROR_MSG << "mxgen: temperature must be a finite number >= 0, got '"
                 << attrs.at("temperature") << "'";
    return MX_FAIL;
  }
  if (!get_int(attrs, "top_k", 0, &s->top_k) || s->top_k < 0) {
    MX_ERROR_MSG << "mxgen: top_k must be an integer >= 0, got '" << attrs.at("top_k") << "'";
    return MX_FAIL;
  }
  if (!get_float(attrs, "top_p", 1.0f, &s->top_p) || !(s->top_p > 0 && s->top_p <= 1)) {
    MX_ERROR_MSG << "mxgen: top_p must be in (0, 1], got '" << attrs.at("top_p") << "'";
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

// ---------------------------------------------------------------- sampling
// One row of logits -> one id.  `scratch` holds at least 2 * V floats.
int sample_row(const float* logits, int V, const Sampling& s, std::mt19937* rng,
               std::vector<float>* scratch, std::vector<int>* order) {
  if (s.temperature == 0.0f) {
    return static_cast<int>(std::max_element(logits, logits + V) - logits);
  }
  float* z = scratch->data();
  for (int v = 0; v < V; ++v) z[v] = logits[v] / s.temperature;
  if (s.top_k > 0 && s.top_k < V) {
    float* tmp = z + V;
    std::copy(z, z + V, tmp);
    std::nth_element(tmp, tmp + (s.top_k - 1), tmp + V, std::greater<float>());
    const float kth = tmp[s.top_k - 1];
    for (int v = 0; v < V; ++v) if (z[v] < kth) z[v] = -INFINITY;
  }
  const float mx = *std::max_element(z, z + V);
  double total = 0;
  for (int v = 0; v < V; ++v) { z[v] = std::exp(z[v] - mx); total += z[v]; }
  for (int v = 0; v < V; ++v) z[v] = static_cast<float>(z[v] / total);
  if (s.top_p < 1.0f) {
    // keep ranks while the probability mass above them is < top_p
    std::iota(order->begin(), order->begin() + V, 0);
    std::stable_sort(order->begin(), order->begin() + V,
                     [z](int a, int b) { return z[a] > z[b]; });
    double before = 0;
    float cutoff = 0;
    for (int r = 0; r < V; ++r) {
      if (before >= s.top_p) break;
      cutoff = z[(*order)[r]];
      before += z[(*order)[r]];
    }
    double kept = 0;
    for (int v = 0; v < V; ++v) { if (z[v] < cutoff) z[v] = 0; kept += z[v]; }
    for (int v = 0; v < V; ++v) z[v] = static_cast<float>(z[v] / kept);
  }
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const double u = uniform(*rng);
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

MXReturnValue sample_parse(const std::unordered_map<std::string, std::string>& attrs,
                           int* num_in, int* num_out) {
  Sampling s;
  if (parse_sampling(attrs, &s) != MX_SUCCESS) return MX_FAIL;
  *num_in = 1;
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue all_float32(const std::unordered_map<std::string, std::string>& attrs,
                          std::vector<int>* in_types, std::vector<int>* out_types) {
  for (size_t i = 0; i < in_types->size(); ++i) {
    if ((*in_types)[i] != kFloat32) {
      MX_ERROR_MSG << "mxgen: input " << i << " must be float32";
      return MX_FAIL;
    }
  }
  for (auto& t : *out_types) t = kFloat32;
  return MX_SUCCESS;
}

MXReturnValue sample_shape(const std::unordered_map<std::string, std::string>& attrs,
                           std::vector<std::vector<unsigned int>>* in_shapes,
                           std::vector<std::vector<unsigned int>>* out_shapes) {
  const auto& shape = (*in_shapes)[0];
  if (shape.size() != 2 || shape[1] == 0) {
    MX_ERROR_MSG << "mxgen_sample: logits must be (batch, vocab), got " << shape.size()
                 << " dimensions";
    return MX_FAIL;
  }
  int top_k = 0;
  get_int(attrs, "top_k", 0, &top_k);
  if (top_k > static_cast<int>(shape[1])) {
    MX_ERROR_MSG << "mxgen_sample: top_k=" << top_k << " exceeds the vocabulary size "
                 << shape[1];
    return MX_FAIL;
  }
  (*out_shapes)[0] = {shape[0]};
  return MX_SUCCESS;
}

MXReturnValue sample_forward(const std::unordered_map<std::string, std::string>& attrs,
                             std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                             const OpResource& res) {
  Sampling s;
  if (parse_sampling(attrs, &s) != MX_SUCCESS) return MX_FAIL;
  MXTensor& logits = (*inputs)[0];
  MXTensor& out = (*outputs)[0];
  const int N = static_cast<int>(logits.shape[0]), V = static_cast<int>(logits.shape[1]);
  const float* x = logits.data<float>();
  float* y = out.data<float>();
  std::mt19937* rng = res.get_cpu_rand_states();
  std::vector<float> scratch(2 * V);
  std::vector<int> order(V);
  for (int n = 0; n < N; ++n) y[n] = static_cast<float>(sample_row(x + n * V, V, s, rng,
                                                                   &scratch, &order));
  return MX_SUCCESS;
}

// ---------------------------------------------------------------- the RNN
enum Mode { kRnnRelu, kRnnTanh, kGru, kLstm };

struct GenConfig {
  Mode mode;
  int layers, hidden, length, gates, per_layer;
  Sampling sampling;
};

MXReturnValue parse_gen(const std::unordered_map<std::string, std::string>& attrs,
                        GenConfig* c) {
  auto it = attrs.find("mode");
  const std::string mode = it == attrs.end() ? "lstm" : it->second;
  if (mode == "lstm") { c->mode = kLstm; c->gates = 4; c->per_layer = 2; }
  else if (mode == "gru") { c->mode = kGru; c->gates = 3; c->per_layer = 1; }
  else if (mode == "rnn_tanh") { c->mode = kRnnTanh; c->gates = 1; c->per_layer = 1; }
  else if (mode == "rnn_relu") { c->mode = kRnnRelu; c->gates = 1; c->per_layer = 1; }
  else {
    MX_ERROR_MSG << "mxgen_char_rnn_generate: unknown mode '" << mode
                 << "' (lstm, gru, rnn_tanh, rnn_relu)";
    return MX_FAIL;
  }
  if (!get_int(attrs, "num_layers", 1, &c->layers) || c->layers < 1) {
    MX_ERROR_MSG << "mxgen_char_rnn_generate: num_layers must be an integer >= 1";
    return MX_FAIL;
  }
  if (!get_int(attrs, "num_hidden", 0, &c->hidden) || c->hidden < 1) {
    MX_ERROR_MSG << "mxgen_char_rnn_generate: num_hidden must be an integer >= 1";
    return MX_FAIL;
  }
  if (!get_int(attrs, "length", 0, &c->length) || c->length < 1) {
    MX_ERROR_MSG << "mxgen_char_rnn_generate: length must be an integer >= 1";
    return MX_FAIL;
  }
  return parse_sampling(attrs, &c->sampling);
}

MXReturnValue gen_parse(const std::unordered_map<std::string, std::string>& attrs,
                        int* num_in, int* num_out) {
  GenConfig c;
  if (parse_gen(attrs, &c) != MX_SUCCESS) return MX_FAIL;
  const int states = c.layers * c.per_layer;
  *num_in = 1 + states + 1 + c.layers + 2;
  *num_out = 1 + states;
  return MX_SUCCESS;
}

MXReturnValue gen_shape(const std::unordered_map<std::string, std::string>& attrs,
                        std::vector<std::vector<unsigned int>>* in_shapes,
                        std::vector<std::vector<unsigned int>>* out_shapes) {
  GenConfig c;
  if (parse_gen(attrs, &c) != MX_SUCCESS) return MX_FAIL;
  const auto& in = *in_shapes;
  const int states = c.layers * c.per_layer;
  if (in[0].size() != 1) {
    MX_ERROR_MSG << "mxgen_char_rnn_generate: ids must be (batch,)";
    return MX_FAIL;
  }
  const unsigned N = in[0][0], H = c.hidden;
  for (int s = 0; s < states; ++s) {
    const auto& sh = in[1 + s];
    if (sh.size() != 3 || sh[0] != 1 || sh[1] != N || sh[2] != H) {
      MX_ERROR_MSG << "mxgen_char_rnn_generate: state " << s << " must be (1, " << N << ", "
                   << H << ")";
      return MX_FAIL;
    }
  }
  const auto& embed = in[1 + states];
  if (embed.size() != 2) {
    MX_ERROR_MSG << "mxgen_char_rnn_generate: embedding must be (vocab, embed)";
    return MX_FAIL;
  }
  const unsigned V = embed[0], G = c.gates;
  for (int l = 0; l < c.layers; ++l) {
    const unsigned I = l == 0 ? embed[1] : H;
    const unsigned expect = G * H * (I + H) + 2 * G * H;
    const auto& w = in[2 + states + l];
    if (w.size() != 1 || w[0] != expect) {
      MX_ERROR_MSG << "mxgen_char_rnn_generate: layer " << l << " weights must be a flat ("
                   << expect << ",) vector for mode/hidden/input sizes given";
      return MX_FAIL;
    }
  }
  const auto& dw = in[2 + states + c.layers];
  const auto& db = in[3 + states + c.layers];
  if (dw.size() != 2 || dw[0] != V || dw[1] != H || db.size() != 1 || db[0] != V) {
    MX_ERROR_MSG << "mxgen_char_rnn_generate: decoder must be (" << V << ", " << H
                 << ") with bias (" << V << ",)";
    return MX_FAIL;
  }
  if (c.sampling.top_k > static_cast<int>(V)) {
    MX_ERROR_MSG << "mxgen_char_rnn_generate: top_k=" << c.sampling.top_k
                 << " exceeds the vocabulary size " << V;
    return MX_FAIL;
  }
  (*out_shapes)[0] = {N, static_cast<unsigned>(c.length)};
  for (int s = 0; s < states; ++s) (*out_shapes)[1 + s] = in[1 + s];
  return MX_SUCCESS;
}

// OpenBLAS as shipped inside the mxnet wheel (libopenblas.so.0, linked by soname:
// the process already has it loaded for libmxnet.so).
extern "C" {
enum CBLAS_ORDER { CblasRowMajor = 101 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                 float alpha, const float* a, int lda, const float* b, int ldb, float beta,
                 float* c, int ldc);
}

// Small batches: one pass over each weight row per input, vectorised for AVX-512,
// AVX2 or baseline x86-64, chosen at load time (the library loads on any x86-64).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void matvec_rows(const float* W, const float* X, const float* b1, const float* b2, int rows,
                 int cols, int N, float* Y) {
#pragma omp parallel for schedule(static) if (static_cast<long>(rows) * cols * N > 32768)
  for (int r = 0; r < rows; ++r) {
    const float* w = W + static_cast<size_t>(r) * cols;
    const float bias = (b1 ? b1[r] : 0.f) + (b2 ? b2[r] : 0.f);
    for (int n = 0; n < N; ++n) {
      const float* x = X + static_cast<size_t>(n) * cols;
      float acc = 0.f;
#pragma omp simd reduction(+ : acc)
      for (int k = 0; k < cols; ++k) acc += w[k] * x[k];
      Y[static_cast<size_t>(n) * rows + r] = acc + bias;
    }
  }
}

#ifndef MXGEN_BLAS_MIN_BATCH
#define MXGEN_BLAS_MIN_BATCH 8
#endif
// Y (N, rows) = X (N, cols) W^T + b1 (+ b2), W row-major (rows, cols) as MXNet stores it.
void matmul_rows(const float* W, const float* X, const float* b1, const float* b2, int rows,
                 int cols, int N, float* Y) {
  if (N < MXGEN_BLAS_MIN_BATCH) {    // BLAS call overhead dominates tiny products
    matvec_rows(W, X, b1, b2, rows, cols, N, Y);
    return;
  }
  for (int n = 0; n < N; ++n) {
    float* y = Y + static_cast<size_t>(n) * rows;
    for (int r = 0; r < rows; ++r) y[r] = (b1 ? b1[r] : 0.f) + (b2 ? b2[r] : 0.f);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, rows, cols, 1.f, X, cols, W, cols,
              1.f, Y, rows);
}

// A weight matrix used at every generation step.  With AVX-512 and a batch
// worth a GEMM, W^T is packed once (first use) and each step runs mxgen's
// own GEMM (gemm.h) on it; otherwise matmul_rows (small batch or no AVX-512).
struct Linear {
  const float* W;
  int rows, cols;
  std::vector<float> packed;

  void apply(const float* X, int N, const float* b1, const float* b2, float* Y) {
    if (N < MXGEN_BLAS_MIN_BATCH || !mxgen::has_avx512()) {
      matmul_rows(W, X, b1, b2, rows, cols, N, Y);
      return;
    }
    const int pn = mxgen::ceil_div(rows, mxgen::kNR), pm = mxgen::ceil_div(N, mxgen::kMR);
    if (packed.empty()) {
      packed.resize(mxgen::packed_b_size(cols, rows));
      mxgen::pack_b_panels(true, cols, rows, W, cols, packed.data(), 0, pn);
    }
    for (int n = 0; n < N; ++n) {
      float* y = Y + static_cast<size_t>(n) * rows;
      for (int r = 0; r < rows; ++r) y[r] = (b1 ? b1[r] : 0.f) + (b2 ? b2[r] : 0.f);
    }
#pragma omp parallel if (static_cast<long>(N) * rows * cols > 200000)
    {
      int lo, hi;
      mxgen::split_range(pn, mxgen::omp_team(), mxgen::omp_rank(), &lo, &hi);
      mxgen::gemm_panels(N, rows, cols, X, cols, packed.data(), 0, pm, lo, hi, Y, rows, true);
    }
  }
};

using mxgen::fast_exp;
using mxgen::fast_tanh;
using mxgen::sigmoid;

// The gate arithmetic of one layer for one sequence, vectorised.  a = i2h, b = h2h
// pre-activations (G*H each); h (and c) updated in place.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void lstm_gates(const float* a, const float* b, float* h, float* c, int H) {
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    const float ig = sigmoid(a[j] + b[j]);
    const float fg = sigmoid(a[H + j] + b[H + j]);
    const float gg = fast_tanh(a[2 * H + j] + b[2 * H + j]);
    const float og = sigmoid(a[3 * H + j] + b[3 * H + j]);
    c[j] = fg * c[j] + ig * gg;
    h[j] = og * fast_tanh(c[j]);
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void gru_gates(const float* a, const float* b, float* h, int H) {
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    const float r = sigmoid(a[j] + b[j]);
    const float z = sigmoid(a[H + j] + b[H + j]);
    const float cand = fast_tanh(a[2 * H + j] + r * b[2 * H + j]);
    h[j] = (1.f - z) * cand + z * h[j];
  }
}

MXReturnValue gen_forward(const std::unordered_map<std::string, std::string>& attrs,
                          std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                          const OpResource& res) {
  GenConfig c;
  if (parse_gen(attrs, &c) != MX_SUCCESS) return MX_FAIL;
  auto& in = *inputs;
  auto& out = *outputs;
  const int S = c.layers * c.per_layer, H = c.hidden, G = c.gates, L = c.layers;
  const int N = static_cast<int>(in[0].shape[0]);
  MXTensor& embed = in[1 + S];
  const int V = static_cast<int>(embed.shape[0]), E = static_cast<int>(embed.shape[1]);
  const float* emb = embed.data<float>();
  const float* dec_b = in[3 + S + L].data<float>();
  std::vector<const float*> layer_w(L);
  for (int l = 0; l < L; ++l) layer_w[l] = in[2 + S + l].data<float>();
  const int GH = G * H;
  std::vector<Linear> lin_i2h, lin_h2h;
  for (int l = 0; l < L; ++l) {
    const int in_l = l == 0 ? E : H;
    lin_i2h.push_back(Linear{layer_w[l], GH, in_l, {}});
    lin_h2h.push_back(Linear{layer_w[l] + static_cast<size_t>(GH) * in_l, GH, H, {}});
  }
  Linear lin_dec{in[2 + S + L].data<float>(), V, H, {}};

  // working copies of the states, (N, H) each
  std::vector<std::vector<float>> state(S, std::vector<float>(static_cast<size_t>(N) * H));
  for (int s = 0; s < S; ++s)
    std::memcpy(state[s].data(), in[1 + s].data<float>(), sizeof(float) * N * H);
  std::vector<int> ids(N);
  const float* ids_in = in[0].data<float>();
  for (int n = 0; n < N; ++n) ids[n] = static_cast<int>(ids_in[n]);
  for (int n = 0; n < N; ++n) {
    if (ids[n] < 0 || ids[n] >= V) {
      MX_ERROR_MSG << "mxgen_char_rnn_generate: id " << ids[n] << " outside the vocabulary";
      return MX_FAIL;
    }
  }
  float* out_ids = out[0].data<float>();
  std::mt19937* rng = res.get_cpu_rand_states();
  std::vector<float> i2h(static_cast<size_t>(N) * GH), h2h(static_cast<size_t>(N) * GH);
  std::vector<float> logits(static_cast<size_t>(N) * V), scratch(2 * V);
  std::vector<float> x(static_cast<size_t>(N) * std::max(E, H));
  std::vector<int> order(V);

  for (int t = 0; t < c.length; ++t) {
    for (int n = 0; n < N; ++n)                                  // embedding lookup
      std::memcpy(x.data() + static_cast<size_t>(n) * E, emb + static_cast<size_t>(ids[n]) * E,
                  sizeof(float) * E);
    int in_size = E;
    for (int l = 0; l < L; ++l) {
      const float* w_i2h = layer_w[l];
      const float* w_h2h = w_i2h + static_cast<size_t>(GH) * in_size;
      const float* b_i2h = w_h2h + static_cast<size_t>(GH) * H;
      const float* b_h2h = b_i2h + GH;
      float* h = state[l * c.per_layer].data();                  // (N, H)
      if (c.mode == kGru) {
        lin_i2h[l].apply(x.data(), N, b_i2h, nullptr, i2h.data());
        lin_h2h[l].apply(h, N, b_h2h, nullptr, h2h.data());
      } else {
        lin_i2h[l].apply(x.data(), N, b_i2h, b_h2h, i2h.data());
        lin_h2h[l].apply(h, N, nullptr, nullptr, h2h.data());
      }
#pragma omp parallel for schedule(static) if (N >= MXGEN_BLAS_MIN_BATCH)
      for (int n = 0; n < N; ++n) {
        const float* a = i2h.data() + static_cast<size_t>(n) * GH;
        const float* b = h2h.data() + static_cast<size_t>(n) * GH;
        float* hn = h + static_cast<size_t>(n) * H;
        if (c.mode == kGru) {
          gru_gates(a, b, hn, H);
        } else if (c.mode == kLstm) {
          lstm_gates(a, b, hn, state[l * 2 + 1].data() + static_cast<size_t>(n) * H, H);
        } else {
          for (int j = 0; j < H; ++j) {
            const float v = a[j] + b[j];
            hn[j] = c.mode == kRnnTanh ? std::tanh(v) : std::max(v, 0.f);
          }
        }
      }
      std::memcpy(x.data(), h, sizeof(float) * N * H);           // next layer's input
      in_size = H;
    }
    lin_dec.apply(x.data(), N, dec_b, nullptr, logits.data());
    for (int n = 0; n < N; ++n) {
      const int next = sample_row(logits.data() + static_cast<size_t>(n) * V, V, c.sampling,
                                  rng, &scratch, &order);
      out_ids[static_cast<size_t>(n) * c.length + t] = static_cast<float>(next);
      ids[n] = next;
    }
  }
  for (int s = 0; s < S; ++s)
    std::memcpy(out[1 + s].data<float>(), state[s].data(), sizeof(float) * N * H);
  return MX_SUCCESS;
}

#ifdef MXGEN_WITH_CUDA
// ---------------------------------------------------------------- GPU forwards
// The same ops on GPU (kernels/cuda/gpu_kernels.cu), with MXNet's GPU random
// states and stream; attributes and shapes are checked by the functions above.
mxgen::gpu::SamplingArgs gpu_sampling(const Sampling& s) {
  return mxgen::gpu::SamplingArgs{s.temperature, s.top_k, s.top_p};
}

MXReturnValue sample_forward_gpu(const std::unordered_map<std::string, std::string>& attrs,
                                 std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                                 const OpResource& res) {
  Sampling s;
  if (parse_sampling(attrs, &s) != MX_SUCCESS) return MX_FAIL;
  MXTensor& logits = (*inputs)[0];
  const char* err = mxgen::gpu::sample(
      logits.data<float>(), static_cast<int>(logits.shape[0]), static_cast<int>(logits.shape[1]),
      gpu_sampling(s), res.get_gpu_rand_states(), MX_NUM_GPU_RANDOM_STATES,
      (*outputs)[0].data<float>(), res.get_cuda_stream());
  if (err) { MX_ERROR_MSG << "mxgen_sample (gpu): " << err; return MX_FAIL; }
  return MX_SUCCESS;
}

MXReturnValue gen_forward_gpu(const std::unordered_map<std::string, std::string>& attrs,
                              std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                              const OpResource& res) {
  GenConfig c;
  if (parse_gen(attrs, &c) != MX_SUCCESS) return MX_FAIL;
  auto& in = *inputs;
  auto& out = *outputs;
  const int S = c.layers * c.per_layer, L = c.layers, H = c.hidden;
  const int N = static_cast<int>(in[0].shape[0]);
  MXTensor& embed = in[1 + S];
  const int V = static_cast<int>(embed.shape[0]), E = static_cast<int>(embed.shape[1]);
  std::vector<float*> states(S);
  for (int s = 0; s < S; ++s) {           // the outputs carry the states, updated in place
    states[s] = out[1 + s].data<float>();
    const char* err = mxgen::gpu::copy(states[s], in[1 + s].data<float>(),
                                       sizeof(float) * N * H, res.get_cuda_stream());
    if (err) { MX_ERROR_MSG << "mxgen_char_rnn_generate (gpu): " << err; return MX_FAIL; }
  }
  std::vector<const float*> layer_w(L);
  for (int l = 0; l < L; ++l) layer_w[l] = in[2 + S + l].data<float>();
  const int mode = c.mode == kLstm ? 3 : c.mode == kGru ? 2 : c.mode == kRnnTanh ? 1 : 0;
  float* workspace = static_cast<float*>(
      res.alloc_gpu(static_cast<int>(sizeof(float) *
                                     mxgen::gpu::workspace_floats(N, E, H, c.gates, V))));
  const char* err = mxgen::gpu::char_rnn_generate(
      mode, L, N, E, H, V, c.length, in[0].data<float>(), states.data(), embed.data<float>(),
      layer_w.data(), in[2 + S + L].data<float>(), in[3 + S + L].data<float>(),
      gpu_sampling(c.sampling), res.get_gpu_rand_states(), MX_NUM_GPU_RANDOM_STATES, workspace,
      out[0].data<float>(), res.get_cuda_stream());
  if (err) { MX_ERROR_MSG << "mxgen_char_rnn_generate (gpu): " << err; return MX_FAIL; }
  return MX_SUCCESS;
}
#endif  // MXGEN_WITH_CUDA

// ------------------------------------------------------- recurrent layers
// mxgen_lstm(x (T, N, I), h0 (1, N, H), c0 (1, N, H), weights (4H(I+H)+8H,))
//     -> y (T, N, H), hT (1, N, H), cT (1, N, H)
// mxgen_gru(x (T, N, I), h0 (1, N, H), weights (3H(I+H)+6H,))
//     -> y (T, N, H), hT (1, N, H)
// One fused-layout layer for training (see lstm.h, gru.h).  Stateful ops: the
// forward pass keeps what the backward pass needs (the activated gates, (T,
// N, 5H) or (T, N, 4H)) in the op's state, like MXNet's own RNN op keeps its
// reserve space.  As an output it would cost a zero-filled gradient array of
// that size in every backward pass (MXNet fills the gradients of unused
// outputs): 6 ms of a 50 ms char-LSTM step.
struct TrainLayer {
  const char* name;
  unsigned states, gates, ws_units;   // states per layer; gates; saved floats per unit
};
constexpr TrainLayer kLstmLayer{"mxgen_lstm", 2, 4, 5};
constexpr TrainLayer kGruLayer{"mxgen_gru", 1, 3, 4};

template <const TrainLayer& L>
MXReturnValue layer_parse(const std::unordered_map<std::string, std::string>& attrs,
                          int* num_in, int* num_out) {
  int H = 0;
  if (!get_int(attrs, "state_size", 0, &H) || H < 1) {
    MX_ERROR_MSG << L.name << ": state_size must be an integer >= 1";
    return MX_FAIL;
  }
  *num_in = 2 + static_cast<int>(L.states);    // x, states..., weights
  *num_out = 1 + static_cast<int>(L.states);   // y, states...
  return MX_SUCCESS;
}

template <const TrainLayer& L>
MXReturnValue layer_shape(const std::unordered_map<std::string, std::string>& attrs,
                          std::vector<std::vector<unsigned int>>* in_shapes,
                          std::vector<std::vector<unsigned int>>* out_shapes) {
  int Hi = 0;
  get_int(attrs, "state_size", 0, &Hi);
  const auto& in = *in_shapes;
  const auto& x = in[0];
  if (x.size() != 3 || x[0] == 0 || x[1] == 0 || x[2] == 0) {
    MX_ERROR_MSG << L.name << ": input must be (seq_len, batch, input_size), non-empty";
    return MX_FAIL;
  }
  const unsigned T = x[0], N = x[1], I = x[2], H = static_cast<unsigned>(Hi);
  for (unsigned s = 1; s <= L.states; ++s) {
    const auto& st = in[s];
    if (st.size() != 3 || st[0] != 1 || st[1] != N || st[2] != H) {
      MX_ERROR_MSG << L.name << ": state " << s - 1 << " must be (1, " << N << ", " << H
                   << ")";
      return MX_FAIL;
    }
  }
  const size_t weights = static_cast<size_t>(L.gates) * H * (I + H) + 2ul * L.gates * H;
  const auto& w = in[1 + L.states];
  if (w.size() != 1 || w[0] != weights) {
    MX_ERROR_MSG << L.name << ": weights must be a flat (" << weights
                 << ",) vector for input_size " << I << " and state_size " << H;
    return MX_FAIL;
  }
  (*out_shapes)[0] = {T, N, H};
  for (unsigned s = 1; s <= L.states; ++s) (*out_shapes)[s] = {1, N, H};
  return MX_SUCCESS;
}

// Buffers for the saved gates, recycled across op states: in eager mode every
// call creates a state, and a fresh 16 MB allocation per call costs a page
// fault per 4 KB (as much as the forward pass itself).
class SavedBuffers {
 public:
  static std::vector<float> take(size_t n) {
    std::lock_guard<std::mutex> lock(mutex());
    auto& free = list();
    for (size_t i = 0; i < free.size(); ++i) {
      if (free[i].size() >= n) {
        std::vector<float> v = std::move(free[i]);
        free.erase(free.begin() + static_cast<long>(i));
        return v;
      }
    }
    return std::vector<float>(n);
  }
  static void give(std::vector<float>&& v) {
    if (v.empty()) return;
    std::lock_guard<std::mutex> lock(mutex());
    if (list().size() < 8) list().push_back(std::move(v));
  }

 private:
  static std::mutex& mutex() { static std::mutex m; return m; }
  static std::vector<std::vector<float>>& list() {
    static std::vector<std::vector<float>> l;
    return l;
  }
};

// The state of one layer op instance: its state_size and the saved gates of
// its last forward pass, for the backward pass that follows it.
template <const TrainLayer& L>
class LayerState : public CustomStatefulOp {
 public:
  explicit LayerState(int H) : H_(H) {}
  ~LayerState() override { SavedBuffers::give(std::move(saved_)); }

  MXReturnValue Forward(std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                        const OpResource& res) override {
    auto& in = *inputs;
    auto& out = *outputs;
    const int T = static_cast<int>(in[0].shape[0]), N = static_cast<int>(in[0].shape[1]),
              I = static_cast<int>(in[0].shape[2]);
    const size_t need = static_cast<size_t>(T) * N * L.ws_units * H_;
    if (saved_.size() < need) {
      SavedBuffers::give(std::move(saved_));
      saved_ = SavedBuffers::take(need);
    }
    shape_ = {T, N, I};
    if (L.states == 2)
      mxgen::lstm_forward(LstmShape{T, N, I, H_}, in[0].data<float>(), in[1].data<float>(),
                          in[2].data<float>(), in[3].data<float>(), out[0].data<float>(),
                          out[1].data<float>(), out[2].data<float>(), saved_.data());
    else
      mxgen::gru_forward(GruShape{T, N, I, H_}, in[0].data<float>(), in[1].data<float>(),
                         in[2].data<float>(), out[0].data<float>(), out[1].data<float>(),
                         saved_.data());
    return MX_SUCCESS;
  }

  // inputs: output gradients, then the forward's inputs, then its outputs:
  //   lstm [dy, dhT, dcT, x, h0, c0, w, y, hT, cT] -> [dx, dh0, dc0, dw]
  //   gru  [dy, dhT, x, h0, w, y, hT]               -> [dx, dh0, dw]
  MXReturnValue Backward(std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                         const OpResource& res) override {
    auto& in = *inputs;
    auto& out = *outputs;
    const MXTensor& x = in[1 + L.states];
    const int T = static_cast<int>(x.shape[0]), N = static_cast<int>(x.shape[1]),
              I = static_cast<int>(x.shape[2]);
    if (shape_ != std::vector<int>{T, N, I}) {
      MX_ERROR_MSG << L.name << ": backward pass without a matching forward pass";
      return MX_FAIL;
    }
    if (L.states == 2)
      mxgen::lstm_backward(LstmShape{T, N, I, H_}, in[0].data<float>(), in[1].data<float>(),
                           in[2].data<float>(), in[3].data<float>(), in[4].data<float>(),
                           in[5].data<float>(), in[6].data<float>(), in[7].data<float>(),
                           saved_.data(), out[0].data<float>(), out[1].data<float>(),
                           out[2].data<float>(), out[3].data<float>());
    else
      mxgen::gru_backward(GruShape{T, N, I, H_}, in[0].data<float>(), in[1].data<float>(),
                          in[2].data<float>(), in[3].data<float>(), in[4].data<float>(),
                          in[5].data<float>(), saved_.data(), out[0].data<float>(),
                          out[1].data<float>(), out[2].data<float>());
    return MX_SUCCESS;
  }

 private:
  int H_;
  std::vector<int> shape_;
  std::vector<float> saved_;
};

template <const TrainLayer& L>
MXReturnValue layer_create_state(const std::unordered_map<std::string, std::string>& attrs,
                                 const MXContext& ctx,
                                 const std::vector<std::vector<unsigned int>>& in_shapes,
                                 const std::vector<int> in_types, CustomStatefulOp** op) {
  int H = 0;
  get_int(attrs, "state_size", 0, &H);
  *op = CustomStatefulOp::create<LayerState<L>>(H);
  return MX_SUCCESS;
}

// ------------------------------------------------------------------ dropout
// mxgen_dropout(x (any shape), probe (64,); p, salt) -> y (like x)
// Custom ops are not told whether MXNet runs in training mode, so the caller
// passes `probe` = MXNet's own Dropout(ones(64), p=0.5): all ones outside
// training (the identity), 0 or 2 in training.  In training its 64 bits are
// the Philox key, drawn from MXNet's seeded generator, so `mx.random.seed`
// fixes the mask; `salt` separates several dropouts keyed by one probe.  The
// backward pass recomputes the mask from the same key: no mask array is
// written, read, or (as an output) given a zero-filled gradient.
constexpr unsigned kProbeSize = 64;

bool dropout_attrs(const std::unordered_map<std::string, std::string>& attrs, float* p,
                   int* salt) {
  if (!get_float(attrs, "p", 0.5f, p) || !(*p > 0.f && *p < 1.f)) {
    MX_ERROR_MSG << "mxgen_dropout: p must be in (0, 1)";
    return false;
  }
  if (!get_int(attrs, "salt", 0, salt) || *salt < 0) {
    MX_ERROR_MSG << "mxgen_dropout: salt must be an integer >= 0";
    return false;
  }
  return true;
}

MXReturnValue dropout_parse(const std::unordered_map<std::string, std::string>& attrs,
                            int* num_in, int* num_out) {
  float p;
  int salt;
  if (!dropout_attrs(attrs, &p, &salt)) return MX_FAIL;
  *num_in = 2;
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue dropout_shape(const std::unordered_map<std::string, std::string>& attrs,
                            std::vector<std::vector<unsigned int>>* in_shapes,
                            std::vector<std::vector<unsigned int>>* out_shapes) {
  const auto& probe = (*in_shapes)[1];
  if (probe.size() != 1 || probe[0] != kProbeSize) {
    MX_ERROR_MSG << "mxgen_dropout: probe must have shape (" << kProbeSize << ",)";
    return MX_FAIL;
  }
  (*out_shapes)[0] = (*in_shapes)[0];
  return MX_SUCCESS;
}

// y = x * mask (or y = x outside training); used forward (x, y) and
// backward (dy, dx) with the same mask.
void dropout_apply(const std::unordered_map<std::string, std::string>& attrs,
                   MXTensor& probe_t, MXTensor& x_t, MXTensor* y_t) {
  float p;
  int salt;
  dropout_attrs(attrs, &p, &salt);
  const size_t n = x_t.size();
  const float* x = x_t.data<float>();
  const float* probe = probe_t.data<float>();
  float* y = y_t->data<float>();
  uint64_t key = 0;
  bool training = false;
  for (unsigned i = 0; i < kProbeSize; ++i) {
    training |= probe[i] != 1.f;
    key |= static_cast<uint64_t>(probe[i] > 1.f) << i;
  }
  if (training)
    mxgen::dropout_forward(n, x, y, nullptr, p, key, static_cast<uint32_t>(salt));
  else   // inference: the identity, like MXNet's Dropout
    std::memcpy(y, x, sizeof(float) * n);
}

MXReturnValue dropout_forward_op(const std::unordered_map<std::string, std::string>& attrs,
                                 std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                                 const OpResource& res) {
  dropout_apply(attrs, (*inputs)[1], (*inputs)[0], &(*outputs)[0]);
  return MX_SUCCESS;
}

// inputs: [dy, x, probe, y]; outputs: [dx, dprobe]
MXReturnValue dropout_backward_op(const std::unordered_map<std::string, std::string>& attrs,
                                  std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                                  const OpResource& res) {
  auto& in = *inputs;
  auto& out = *outputs;
  dropout_apply(attrs, in[2], in[0], &out[0]);
  std::fill(out[1].data<float>(), out[1].data<float>() + kProbeSize, 0.f);
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(mxgen_sample)
    .setParseAttrs(sample_parse)
    .setInferType(all_float32)
    .setInferShape(sample_shape)
    .setForward(sample_forward, "cpu")
#ifdef MXGEN_WITH_CUDA
    .setForward(sample_forward_gpu, "gpu")
#endif
    ;

REGISTER_OP(mxgen_char_rnn_generate)
    .setParseAttrs(gen_parse)
    .setInferType(all_float32)
    .setInferShape(gen_shape)
    .setForward(gen_forward, "cpu")
#ifdef MXGEN_WITH_CUDA
    .setForward(gen_forward_gpu, "gpu")
#endif
    ;

REGISTER_OP(mxgen_lstm)
    .setParseAttrs(layer_parse<kLstmLayer>)
    .setInferType(all_float32)
    .setInferShape(layer_shape<kLstmLayer>)
    .setCreateOpState(layer_create_state<kLstmLayer>, "cpu");

REGISTER_OP(mxgen_gru)
    .setParseAttrs(layer_parse<kGruLayer>)
    .setInferType(all_float32)
    .setInferShape(layer_shape<kGruLayer>)
    .setCreateOpState(layer_create_state<kGruLayer>, "cpu");

REGISTER_OP(mxgen_dropout)
    .setParseAttrs(dropout_parse)
    .setInferType(all_float32)
    .setInferShape(dropout_shape)
    .setForward(dropout_forward_op, "cpu")
    .setBackward(dropout_backward_op, "cpu");

MXReturnValue initialize(int version) {
  if (version >= 10900) return MX_SUCCESS;   // the lib_api.h of MXNet 1.9
  MX_ERROR_MSG << "mxgen kernels need MXNet >= 1.9.0, found " << version;
  return MX_FAIL;
}
