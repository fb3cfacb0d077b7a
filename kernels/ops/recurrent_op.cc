// mxgen_lstm(x, h0, c0, weights, probe) -> y, hT, cT    (training; the math: lstm.h)
// mxgen_gru(x, h0, weights, probe) -> y, hT             (training; the math: gru.h)
#include <algorithm>
#include <vector>

#include "op_util.h"
#include "saved_buffers.h"

using namespace mxnet::ext;
using namespace mxgen::ops;

namespace {

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
// training probe (op_util.h): all ones outside training.  Then nothing is saved
// (priming, validation, generation's prompt), and a backward pass is refused.
//
// The ops overwrite their input gradients: lib_api does not pass MXNet's
// write/add request to custom ops.  The Python layer (mxgen/nn/rnn.py)
// puts an identity in front of every input, whose backward pass honours
// grad_req='add', so accumulation works.
struct TrainLayer {
  const char* name;
  unsigned states, gates, ws_units;   // states per layer; gates; saved floats per unit
};
constexpr TrainLayer kLstmLayer{"mxgen_lstm", 2, 4, 5};
constexpr TrainLayer kGruLayer{"mxgen_gru", 1, 3, 4};

template <const TrainLayer& L>
MXReturnValue layer_parse(const Attrs& attrs,
                          int* num_in, int* num_out) {
  int H = 0;
  bool bf16;
  if (!parse_dtype(attrs, L.name, &bf16)) return MX_FAIL;
  if (!get_int(attrs, "state_size", 0, &H) || H < 1) {
    MX_ERROR_MSG << L.name << ": state_size must be an integer >= 1";
    return MX_FAIL;
  }
  *num_in = 3 + static_cast<int>(L.states);    // x, states..., weights, probe
  *num_out = 1 + static_cast<int>(L.states);   // y, states...
  return MX_SUCCESS;
}

template <const TrainLayer& L>
MXReturnValue layer_shape(const Attrs& attrs,
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

// The state of one layer op instance: its state_size, precision and the saved gates of
// its last training forward pass, for the backward pass that follows it.
template <const TrainLayer& L>
class LayerState : public CustomStatefulOp {
 public:
  LayerState(int H, bool bf16) : H_(H), bf16_(bf16) {}
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
      k.lstm_forward(mxgen::LstmShape{T, N, I, H_, bf16_}, in[0].data<float>(), in[1].data<float>(),
                     in[2].data<float>(), in[3].data<float>(), out[0].data<float>(),
                     out[1].data<float>(), out[2].data<float>(), ws);
    else
      k.gru_forward(mxgen::GruShape{T, N, I, H_, bf16_}, in[0].data<float>(), in[1].data<float>(),
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
      k.lstm_backward(mxgen::LstmShape{T, N, I, H_, bf16_}, in[0].data<float>(), in[1].data<float>(),
                      in[2].data<float>(), in[3].data<float>(), in[4].data<float>(),
                      in[5].data<float>(), in[6].data<float>(), y, saved_.data(),
                      out[0].data<float>(), out[1].data<float>(), out[2].data<float>(),
                      out[3].data<float>());
    else
      k.gru_backward(mxgen::GruShape{T, N, I, H_, bf16_}, in[0].data<float>(), in[1].data<float>(),
                     in[2].data<float>(), in[3].data<float>(), in[4].data<float>(), y,
                     saved_.data(), out[0].data<float>(), out[1].data<float>(),
                     out[2].data<float>());
    float* dprobe = out[S + 2].data<float>();
    std::fill(dprobe, dprobe + kProbeSize, 0.f);
    return MX_SUCCESS;
  }

 private:
  int H_;
  bool bf16_;
  std::vector<int> shape_;
  mxgen::portable::Buffer<float> saved_;
};

template <const TrainLayer& L>
MXReturnValue layer_create_state(const Attrs& attrs,
                                 const MXContext& ctx,
                                 const std::vector<std::vector<unsigned int>>& in_shapes,
                                 const std::vector<int> in_types, CustomStatefulOp** op) {
  int H = 0;
  bool bf16 = false;
  get_int(attrs, "state_size", 0, &H);
  parse_dtype(attrs, L.name, &bf16);
  *op = CustomStatefulOp::create<LayerState<L>>(H, bf16);
  return MX_SUCCESS;
}

}  // namespace

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

// The saved-gate pool's size and limit, for the tests (ctypes).
extern "C" __attribute__((visibility("default"))) size_t mxgen_saved_pool_bytes() {
  return SavedBuffers::pooled_bytes();
}
extern "C" __attribute__((visibility("default"))) size_t mxgen_saved_pool_limit() {
  return SavedBuffers::kPoolBytes;
}
