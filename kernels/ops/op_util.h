// What every op's glue shares: reading attributes, the float32 type rule,
// vocabulary ids, the training probe, and the generation op's configuration
// and input layout (one unpacking for its CPU and GPU forwards).
#ifndef MXGEN_OPS_OP_UTIL_H_
#define MXGEN_OPS_OP_UTIL_H_

#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"

#include "../dispatch.h"
#ifdef MXGEN_WITH_CUDA
#include "../cuda/gpu_api.h"
#endif

namespace mxgen {
namespace ops {

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;
using Attrs = std::unordered_map<std::string, std::string>;

inline bool get_float(const Attrs& attrs, const char* key, float fallback, float* out) {
  auto it = attrs.find(key);
  if (it == attrs.end()) { *out = fallback; return true; }
  try { *out = std::stof(it->second); } catch (...) { return false; }
  return std::isfinite(*out);
}

inline bool get_int(const Attrs& attrs, const char* key, int fallback, int* out) {
  auto it = attrs.find(key);
  if (it == attrs.end()) { *out = fallback; return true; }
  try { size_t pos = 0; *out = std::stoi(it->second, &pos); return pos == it->second.size(); }
  catch (...) { return false; }
}

inline MXReturnValue parse_sampling(const Attrs& attrs, Sampling* s) {
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

// The precision of an op's GEMMs: attribute `dtype`, "float32" (default) or
// "bfloat16" (bfloat16 operands, float32 accumulation; tensors stay float32).
inline bool parse_dtype(const Attrs& attrs, const char* op, bool* bf16) {
  auto it = attrs.find("dtype");
  const std::string d = it == attrs.end() ? "float32" : it->second;
  if (d != "float32" && d != "bfloat16") {
    MX_ERROR_MSG << op << ": dtype must be float32 or bfloat16, got '" << d << "'";
    return false;
  }
  *bf16 = d == "bfloat16";
  return true;
}

// Every mxgen op computes in float32.
inline MXReturnValue all_float32(const Attrs& attrs, std::vector<int>* in_types,
                                 std::vector<int>* out_types) {
  for (size_t i = 0; i < in_types->size(); ++i) {
    if ((*in_types)[i] != mxnet::ext::kFloat32) {
      MX_ERROR_MSG << "mxgen: input " << i << " must be float32";
      return MX_FAIL;
    }
  }
  for (auto& t : *out_types) t = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

// Ids arrive as floats: each must be a whole number in [0, V), checked as a
// float (casting 1e20 or NaN to int first would be undefined).
inline bool read_ids(const float* ids_in, int N, int V, std::vector<int>* ids, const char* op) {
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

// Custom ops are not told whether MXNet is training, so the training ops
// take a probe: MXNet's own Dropout of 64 ones with p = 0.5, all ones outside
// training, 0 or 2 in training.  Its bits key the ops' random streams.
constexpr unsigned kProbeSize = 64;

// Training mode from a probe: 64 random bits in training (key: bit i set
// where probe[i] > 1), all ones otherwise.
inline bool probe_key(const MXTensor& probe_t, uint64_t* key) {
  const float* probe = const_cast<MXTensor&>(probe_t).data<float>();
  bool training = false;
  *key = 0;
  for (unsigned i = 0; i < kProbeSize; ++i) {
    training |= probe[i] != 1.f;
    *key |= static_cast<uint64_t>(probe[i] > 1.f) << i;
  }
  return training;
}

// ---- mxgen_char_rnn_generate's attributes and inputs (CPU and GPU alike)
struct GenConfig {
  RnnMode mode;
  int layers, hidden, length, gates, per_layer;
  bool bf16;
  Sampling sampling;
};

inline MXReturnValue parse_gen(const Attrs& attrs, GenConfig* c) {
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
  if (!parse_dtype(attrs, "mxgen_char_rnn_generate", &c->bf16)) return MX_FAIL;
  return parse_sampling(attrs, &c->sampling);
}

// The generation op's inputs [ids, states..., embed, layer weights...,
// dec_w, dec_b] and outputs [ids (N, length), states...], unpacked.  The
// outputs carry the states, updated in place: the caller copies the input
// states into `states` first (on its own device).
struct GenInputs {
  int S, L, H, N, E, V, P;   // P: prompt columns of ids (1 for ids of shape (N,))
  const float* ids;
  std::vector<const float*> states_in;
  std::vector<float*> states;
  const float* embed;
  std::vector<const float*> layer_w;
  const float* dec_w;
  const float* dec_b;
  float* out_ids;
};

inline GenInputs unpack_gen(const GenConfig& c, std::vector<MXTensor>* inputs,
                            std::vector<MXTensor>* outputs) {
  auto& in = *inputs;
  auto& out = *outputs;
  GenInputs g;
  g.S = c.layers * c.per_layer;
  g.L = c.layers;
  g.H = c.hidden;
  g.N = static_cast<int>(in[0].shape[0]);
  g.P = in[0].shape.size() == 2 ? static_cast<int>(in[0].shape[1]) : 1;
  MXTensor& embed = in[1 + g.S];
  g.V = static_cast<int>(embed.shape[0]);
  g.E = static_cast<int>(embed.shape[1]);
  g.ids = in[0].data<float>();
  for (int s = 0; s < g.S; ++s) {
    g.states_in.push_back(in[1 + s].data<float>());
    g.states.push_back(out[1 + s].data<float>());
  }
  g.embed = embed.data<float>();
  for (int l = 0; l < g.L; ++l) g.layer_w.push_back(in[2 + g.S + l].data<float>());
  g.dec_w = in[2 + g.S + g.L].data<float>();
  g.dec_b = in[3 + g.S + g.L].data<float>();
  g.out_ids = out[0].data<float>();
  return g;
}

#ifdef MXGEN_WITH_CUDA
inline gpu::SamplingArgs gpu_sampling(const Sampling& s) {
  return gpu::SamplingArgs{s.temperature, s.top_k, s.top_p};
}
#endif

}  // namespace ops
}  // namespace mxgen

#endif  // MXGEN_OPS_OP_UTIL_H_
