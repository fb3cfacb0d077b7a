// mxgen_dropout(x (any shape), probe (64,); p, salt) -> y (like x)
// (the math: dropout.h)
#include <algorithm>
#include <cstring>

#include "op_util.h"

using namespace mxnet::ext;
using namespace mxgen::ops;

namespace {

// mxgen_dropout(x (any shape), probe (64,); p, salt) -> y (like x)
// Custom ops are not told whether MXNet runs in training mode, so the caller
// passes `probe` = MXNet's own Dropout(ones(64), p=0.5): all ones outside
// training (the identity), 0 or 2 in training.  In training its 64 bits are
// the Philox key, drawn from MXNet's seeded generator, so `mx.random.seed`
// fixes the mask; `salt` separates several dropouts keyed by one probe.  The
// backward pass recomputes the mask from the same key: no mask array is
// written, read, or (as an output) given a zero-filled gradient.
bool dropout_attrs(const Attrs& attrs, float* p,
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

MXReturnValue dropout_parse(const Attrs& attrs,
                            int* num_in, int* num_out) {
  float p;
  int salt;
  if (!dropout_attrs(attrs, &p, &salt)) return MX_FAIL;
  *num_in = 2;
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue dropout_shape(const Attrs& attrs,
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
void dropout_apply(const Attrs& attrs,
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

MXReturnValue dropout_forward_op(const Attrs& attrs,
                                 std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                                 const OpResource& res) {
  dropout_apply(attrs, (*inputs)[1], (*inputs)[0], &(*outputs)[0]);
  return MX_SUCCESS;
}

// inputs: [dy, x, probe, y]; outputs: [dx, dprobe]
MXReturnValue dropout_backward_op(const Attrs& attrs,
                                  std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                                  const OpResource& res) {
  auto& in = *inputs;
  auto& out = *outputs;
  dropout_apply(attrs, in[2], in[0], &out[0]);
  std::fill(out[1].data<float>(), out[1].data<float>() + kProbeSize, 0.f);
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(mxgen_dropout)
    .setParseAttrs(dropout_parse)
    .setInferType(all_float32)
    .setInferShape(dropout_shape)
    .setForward(dropout_forward_op, "cpu")
    .setBackward(dropout_backward_op, "cpu");
