// mxgen_char_rnn_generate(ids (N,) or (N, P), states..., embed (V, E),
//                         layer weights x num_layers, dec_w (V, H), dec_b (V))
//     -> generated ids (N, length), final states...
// Runs `length` steps of a CharRNN (embedding -> fused-layout RNN layers ->
// decoder -> sampler) in one call.  Each layer's weights are MXNet's fused
// RNN vector for one layer: [W_i2h (G*H, I), W_h2h (G*H, H), b_i2h (G*H),
// b_h2h (G*H)], gates lstm i,f,g,o / gru r,z,n.  States: lstm (h, c) per
// layer, others h; each (1, N, H).  ids (N, P) holds a prompt per row: its
// first P - 1 columns are run through the layers first, without sampling
// (priming the states in the op, CPU only), and its last column is the
// first input of the sampled steps.  The math: generate.h (CPU),
// cuda/gpu_kernels.cu (GPU); both forwards unpack their inputs with
// op_util.h's unpack_gen.
#include <cstring>

#include "op_util.h"

using namespace mxnet::ext;
using namespace mxgen::ops;

namespace {

MXReturnValue gen_parse(const Attrs& attrs,
                        int* num_in, int* num_out) {
  GenConfig c;
  if (parse_gen(attrs, &c) != MX_SUCCESS) return MX_FAIL;
  const int states = c.layers * c.per_layer;
  *num_in = 1 + states + 1 + c.layers + 2;
  *num_out = 1 + states;
  return MX_SUCCESS;
}

MXReturnValue gen_shape(const Attrs& attrs,
                        std::vector<std::vector<unsigned int>>* in_shapes,
                        std::vector<std::vector<unsigned int>>* out_shapes) {
  GenConfig c;
  if (parse_gen(attrs, &c) != MX_SUCCESS) return MX_FAIL;
  const auto& in = *in_shapes;
  const int states = c.layers * c.per_layer;
  if (in[0].size() != 1 && !(in[0].size() == 2 && in[0][1] >= 1)) {
    MX_ERROR_MSG << "mxgen_char_rnn_generate: ids must be (batch,) or (batch, prompt)";
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

MXReturnValue gen_forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                          std::vector<MXTensor>* outputs, const OpResource& res) {
  GenConfig c;
  if (parse_gen(attrs, &c) != MX_SUCCESS) return MX_FAIL;
  GenInputs g = unpack_gen(c, inputs, outputs);
  std::vector<int> ids;
  if (!read_ids(g.ids, g.N * g.P, g.V, &ids, "mxgen_char_rnn_generate")) return MX_FAIL;
  for (int s = 0; s < g.S; ++s)
    std::memcpy(g.states[s], g.states_in[s], sizeof(float) * g.N * g.H);
  mxgen::GenArgs args{c.mode, g.L, c.per_layer, c.gates, g.N, g.E, g.H, g.V, c.length,
                      c.bf16, c.sampling, ids.data(), g.states.data(), g.embed, g.layer_w.data(),
                      g.dec_w, g.dec_b, res.get_cpu_rand_states(), g.out_ids, g.P};
  mxgen::kernels().char_rnn_generate(args);
  return MX_SUCCESS;
}

#ifdef MXGEN_WITH_CUDA
MXReturnValue gen_forward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                              std::vector<MXTensor>* outputs, const OpResource& res) {
  GenConfig c;
  if (parse_gen(attrs, &c) != MX_SUCCESS) return MX_FAIL;
  GenInputs g = unpack_gen(c, inputs, outputs);
  if (g.P > 1) {
    MX_ERROR_MSG << "mxgen_char_rnn_generate (gpu): a prompt of " << g.P
                 << " ids per row; on a GPU the op takes one id per row (prime first)";
    return MX_FAIL;
  }
  for (int s = 0; s < g.S; ++s) {
    const char* err = mxgen::gpu::copy(g.states[s], g.states_in[s],
                                       sizeof(float) * g.N * g.H, res.get_cuda_stream());
    if (err) { MX_ERROR_MSG << "mxgen_char_rnn_generate (gpu): " << err; return MX_FAIL; }
  }
  const int mode = c.mode == mxgen::kLstm ? 3 : c.mode == mxgen::kGru ? 2
                   : c.mode == mxgen::kRnnTanh ? 1 : 0;
  float* workspace = static_cast<float*>(res.alloc_gpu(static_cast<int>(
      sizeof(float) * mxgen::gpu::workspace_floats(g.N, g.E, g.H, c.gates, g.V))));
  const char* err = mxgen::gpu::char_rnn_generate(
      mode, g.L, g.N, g.E, g.H, g.V, c.length, g.ids, g.states.data(), g.embed,
      g.layer_w.data(), g.dec_w, g.dec_b, gpu_sampling(c.sampling), res.get_gpu_rand_states(),
      MX_NUM_GPU_RANDOM_STATES, workspace, g.out_ids, res.get_cuda_stream());
  if (err) { MX_ERROR_MSG << "mxgen_char_rnn_generate (gpu): " << err; return MX_FAIL; }
  return MX_SUCCESS;
}
#endif

}  // namespace

REGISTER_OP(mxgen_char_rnn_generate)
    .setParseAttrs(gen_parse)
    .setInferType(all_float32)
    .setInferShape(gen_shape)
    .setForward(gen_forward, "cpu")
#ifdef MXGEN_WITH_CUDA
    .setForward(gen_forward_gpu, "gpu")
#endif
    ;
