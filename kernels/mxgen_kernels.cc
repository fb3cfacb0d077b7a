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
//   mxgen_lstm(x, h0, c0, weights, probe) -> y, hT, cT    (training, see lstm.h)
//   mxgen_gru(x, h0, weights, probe) -> y, hT             (training, see gru.h)
//   mxgen_dropout(x, probe (64,)) -> y                    (training, see dropout.h)
//
// This file is the glue: attributes, shapes, checks and registration.  The
// math lives in the kernel headers, compiled once per instruction set and
// called through mxgen::kernels() (dispatch.h), so every op runs the copy
// chosen when the library loaded.
//
// Built against the lib_api.h / lib_api.cc shipped in the installed mxnet wheel.
#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <list>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mxnet/lib_api.h"

#include "dispatch.h"
#ifdef MXGEN_WITH_CUDA
#include "cuda/gpu_api.h"
#endif

using namespace mxnet::ext;
using mxgen::GruShape;
using mxgen::LstmShape;
using mxgen::Sampling;

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
  mxgen::kernels().sample(logits.data<float>(), static_cast<int>(logits.shape[0]),
                          static_cast<int>(logits.shape[1]), s, res.get_cpu_rand_states(),
                          (*outputs)[0].data<float>());
  return MX_SUCCESS;
}

// ---------------------------------------------------------------- the RNN
using mxgen::kGru;
using mxgen::kLstm;
using mxgen::kRnnRelu;
using mxgen::kRnnTanh;

struct GenConfig {
  mxgen::RnnMode mode;
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
    const uint64_t I = l == 0 ? embed[1] : H;
    const uint64_t expect = uint64_t{G} * H * (I + H) + 2 * uint64_t{G} * H;   // no 32-bit wrap
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

// Ids arrive as floats: each must be a whole number in [0, V), checked as a
// float (casting 1e20 or NaN to int first would be undefined).
bool read_ids(const float* ids_in, int N, int V, std::vector<int>* ids, const char* op) {
  ids->resize(N);
  for (int n = 0; n < N; ++n) {
    const float v = ids_in[n];
    if (!(v >= 0.f && v < static_cast<float>(V)) || v != std::floor(v)) {
      MX_ERROR_MSG << op << ": id " << v << " (row " << n << ") is not in the vocabulary [0, "
                   << V << ")";
      return false;
    }
    (*ids)[n] = static_cast<int>(v);
  }
  return true;
}

MXReturnValue gen_forward(const std::unordered_map<std::string, std::string>& attrs,
                          std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                          const OpResource& res) {
  GenConfig c;
  if (parse_gen(attrs, &c) != MX_SUCCESS) return MX_FAIL;
  auto& in = *inputs;
  auto& out = *outputs;
  const int S = c.layers * c.per_layer, L = c.layers, H = c.hidden;
  const int N = static_cast<int>(in[0].shape[0]);
  MXTensor& embed = in[1 + S];
  const int V = static_cast<int>(embed.shape[0]);
  std::vector<int> ids;
  if (!read_ids(in[0].data<float>(), N, V, &ids, "mxgen_char_rnn_generate")) return MX_FAIL;
  std::vector<float*> states(S);   // the outputs carry the states, updated in place
  for (int s = 0; s < S; ++s) {
    states[s] = out[1 + s].data<float>();
    std::memcpy(states[s], in[1 + s].data<float>(), sizeof(float) * N * H);
  }
  std::vector<const float*> layer_w(L);
  for (int l = 0; l < L; ++l) layer_w[l] = in[2 + S + l].data<float>();
  mxgen::GenArgs args{c.mode, L, c.per_layer, c.gates, N, static_cast<int>(embed.shape[1]), H,
                      V, c.length, c.sampling, ids.data(), states.data(), embed.data<float>(),
                      layer_w.data(), in[2 + S + L].data<float>(), in[3 + S + L].data<float>(),
                      res.get_cpu_rand_states(), out[0].data<float>()};
  mxgen::kernels().char_rnn_generate(args);
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
// mxgen_lstm(x (T, N, I), h0 (1, N, H), c0 (1, N, H), weights (4H(I+H)+8H,), probe)
//     -> y (T, N, H), hT (1, N, H), cT (1, N, H)
// mxgen_gru(x (T, N, I), h0 (1, N, H), weights (3H(I+H)+6H,), probe)
//     -> y (T, N, H), hT (1, N, H)
// One fused-layout layer for training (see lstm.h, gru.h).  Stateful ops: the
// forward pass keeps what the backward pass needs (the activated gates, (T,
// N, 5H) or (T, N, 4H)) in the op's state, like MXNet's own RNN op keeps its
// reserve space.  As an output it would cost a zero-filled gradient array of
// that size in every backward pass (MXNet fills the gradients of unused
// outputs), about a tenth of a char-LSTM step.
//
// Custom ops are not told whether MXNet is training, so `probe` is the
// dropout op's (below): all ones outside training.  Then nothing is saved
// (priming, validation, generation's prompt), and a backward pass is refused.
//
// The ops overwrite their input gradients: lib_api does not pass MXNet's
// write/add request to custom ops.  The Python layer (mxgen/models/rnn.py)
// puts an identity in front of every input, whose backward pass honours
// grad_req='add', so accumulation works.
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
  *num_in = 3 + static_cast<int>(L.states);    // x, states..., weights, probe
  *num_out = 1 + static_cast<int>(L.states);   // y, states...
  return MX_SUCCESS;
}

constexpr unsigned kProbeSize = 64;

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
  const uint64_t weights = uint64_t{L.gates} * H * (uint64_t{I} + H) + 2 * uint64_t{L.gates} * H;
  const auto& w = in[1 + L.states];
  if (w.size() != 1 || w[0] != weights) {
    MX_ERROR_MSG << L.name << ": weights must be a flat (" << weights
                 << ",) vector for input_size " << I << " and state_size " << H;
    return MX_FAIL;
  }
  const auto& probe = in[2 + L.states];
  if (probe.size() != 1 || probe[0] != kProbeSize) {
    MX_ERROR_MSG << L.name << ": probe must have shape (" << kProbeSize << ",)";
    return MX_FAIL;
  }
  if (uint64_t{T} * N * L.ws_units * H > (uint64_t{1} << 40)) {
    MX_ERROR_MSG << L.name << ": sequence too large (" << T << " x " << N << " x " << H << ")";
    return MX_FAIL;
  }
  (*out_shapes)[0] = {T, N, H};
  for (unsigned s = 1; s <= L.states; ++s) (*out_shapes)[s] = {1, N, H};
  return MX_SUCCESS;
}

// Training mode from a probe (MXNet's Dropout of ones): 64 random bits in
// training (key: bit i set where probe[i] > 1), all ones otherwise.
bool probe_key(const MXTensor& probe_t, uint64_t* key) {
  const float* probe = const_cast<MXTensor&>(probe_t).data<float>();
  bool training = false;
  *key = 0;
  for (unsigned i = 0; i < kProbeSize; ++i) {
    training |= probe[i] != 1.f;
    *key |= static_cast<uint64_t>(probe[i] > 1.f) << i;
  }
  return training;
}

// Buffers for the saved gates, recycled across op states: in eager mode every
// call creates a state, and a fresh 16 MB allocation per call costs a page
// fault per 4 KB (as much as the forward pass itself).  The pool holds at
// most kPoolBytes (oldest dropped first), hands out the smallest buffer that
// fits and never one more than twice the size asked for, so a run that moves
// to smaller shapes gives the memory back.
class SavedBuffers {
 public:
  static constexpr size_t kPoolBytes = size_t{256} << 20;

  static std::vector<float> take(size_t n) {
    std::lock_guard<std::mutex> lock(mutex());
    auto& pool = list();
    auto best = pool.end();
    for (auto it = pool.begin(); it != pool.end(); ++it)
      if (it->size() >= n && it->size() <= 2 * n && (best == pool.end() || it->size() < best->size()))
        best = it;
    if (best == pool.end()) return std::vector<float>(n);
    std::vector<float> v = std::move(*best);
    pool.erase(best);
    bytes() -= v.size() * sizeof(float);
    return v;
  }

  static void give(std::vector<float>&& v) {
    const size_t size = v.size() * sizeof(float);
    if (size == 0 || size > kPoolBytes) return;   // freed here
    std::lock_guard<std::mutex> lock(mutex());
    auto& pool = list();
    pool.push_back(std::move(v));
    bytes() += size;
    while (bytes() > kPoolBytes) {
      bytes() -= pool.front().size() * sizeof(float);
      pool.pop_front();
    }
  }

  static size_t pooled_bytes() {
    std::lock_guard<std::mutex> lock(mutex());
    return bytes();
  }

 private:
  static std::mutex& mutex() { static std::mutex m; return m; }
  static std::list<std::vector<float>>& list() {
    static std::list<std::vector<float>> l;
    return l;
  }
  static size_t& bytes() { static size_t b = 0; return b; }
};

// The state of one layer op instance: its state_size and the saved gates of
// its last training forward pass, for the backward pass that follows it.
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
    uint64_t key;
    const bool training = probe_key(in[2 + L.states], &key);
    float* ws = nullptr;
    shape_.clear();
    if (training) {
      const size_t need = static_cast<size_t>(T) * N * L.ws_units * H_;
      if (saved_.size() < need || saved_.size() > 2 * need) {
        SavedBuffers::give(std::move(saved_));
        saved_ = SavedBuffers::take(need);
      }
      ws = saved_.data();
      shape_ = {T, N, I};
    }
    const mxgen::Kernels& k = mxgen::kernels();
    if (L.states == 2)
      k.lstm_forward(LstmShape{T, N, I, H_}, in[0].data<float>(), in[1].data<float>(),
                     in[2].data<float>(), in[3].data<float>(), out[0].data<float>(),
                     out[1].data<float>(), out[2].data<float>(), ws);
    else
      k.gru_forward(GruShape{T, N, I, H_}, in[0].data<float>(), in[1].data<float>(),
                    in[2].data<float>(), out[0].data<float>(), out[1].data<float>(), ws);
    return MX_SUCCESS;
  }

  // inputs: output gradients, then the forward's inputs, then its outputs:
  //   lstm [dy, dhT, dcT, x, h0, c0, w, probe, y, hT, cT] -> [dx, dh0, dc0, dw, dprobe]
  //   gru  [dy, dhT, x, h0, w, probe, y, hT]               -> [dx, dh0, dw, dprobe]
  MXReturnValue Backward(std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                         const OpResource& res) override {
    auto& in = *inputs;
    auto& out = *outputs;
    const MXTensor& x = in[1 + L.states];
    const int T = static_cast<int>(x.shape[0]), N = static_cast<int>(x.shape[1]),
              I = static_cast<int>(x.shape[2]);
    if (shape_ != std::vector<int>{T, N, I}) {
      MX_ERROR_MSG << L.name << ": backward pass without a matching training forward pass"
                   << " (was the forward pass recorded with autograd.record(train_mode=True)?)";
      return MX_FAIL;
    }
    const mxgen::Kernels& k = mxgen::kernels();
    const unsigned S = L.states;
    const float* y = in[2 * S + 4].data<float>();   // after dy, d-states, x, states, w, probe
    if (S == 2)
      k.lstm_backward(LstmShape{T, N, I, H_}, in[0].data<float>(), in[1].data<float>(),
                      in[2].data<float>(), in[3].data<float>(), in[4].data<float>(),
                      in[5].data<float>(), in[6].data<float>(), y, saved_.data(),
                      out[0].data<float>(), out[1].data<float>(), out[2].data<float>(),
                      out[3].data<float>());
    else
      k.gru_backward(GruShape{T, N, I, H_}, in[0].data<float>(), in[1].data<float>(),
                     in[2].data<float>(), in[3].data<float>(), in[4].data<float>(), y,
                     saved_.data(), out[0].data<float>(), out[1].data<float>(),
                     out[2].data<float>());
    float* dprobe = out[S + 2].data<float>();
    std::fill(dprobe, dprobe + kProbeSize, 0.f);
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
  float* y = y_t->data<float>();
  uint64_t key;
  if (probe_key(probe_t, &key))
    mxgen::kernels().dropout(n, x, y, p, key, static_cast<uint32_t>(salt));
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

// The saved-gate pool's size and limit, for the tests (ctypes).
extern "C" __attribute__((visibility("default"))) size_t mxgen_saved_pool_bytes() {
  return SavedBuffers::pooled_bytes();
}
extern "C" __attribute__((visibility("default"))) size_t mxgen_saved_pool_limit() {
  return SavedBuffers::kPoolBytes;
}

MXReturnValue initialize(int version) {
  if (version >= 10900) return MX_SUCCESS;   // the lib_api.h of MXNet 1.9
  MX_ERROR_MSG << "mxgen kernels need MXNet >= 1.9.0, found " << version;
  return MX_FAIL;
}
