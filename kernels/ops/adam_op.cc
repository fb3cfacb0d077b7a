// mxgen_adam_update(weight, grad, mean, var; lr, beta1, beta2, epsilon, wd,
// rescale_grad, clip_gradient) -> weight'
// MXNet's adam_update (same inputs, attributes and arithmetic), vectorised:
// mean and var are updated in place (mutable inputs), the new weight is the
// output (called with out=weight, as mx.optimizer.Adam calls adam_update).
// The math: optimizer.h.
#include <algorithm>

#include "op_util.h"

using namespace mxnet::ext;
using namespace mxgen::ops;

namespace {

bool adam_attrs(const Attrs& attrs, mxgen::AdamArgs* a) {
  struct Field { const char* name; float fallback; float* out; };
  const Field fields[] = {{"lr", 0.f, &a->lr}, {"beta1", 0.9f, &a->beta1},
                          {"beta2", 0.999f, &a->beta2}, {"epsilon", 1e-8f, &a->epsilon},
                          {"wd", 0.f, &a->wd}, {"rescale_grad", 1.f, &a->rescale_grad},
                          {"clip_gradient", -1.f, &a->clip_gradient}};
  for (const Field& f : fields) {
    if (!get_float(attrs, f.name, f.fallback, f.out)) {
      MX_ERROR_MSG << "mxgen_adam_update: " << f.name << " must be a finite number, got '"
                   << attrs.at(f.name) << "'";
      return false;
    }
  }
  if (attrs.find("lr") == attrs.end()) {
    MX_ERROR_MSG << "mxgen_adam_update: lr is required";
    return false;
  }
  return true;
}

MXReturnValue adam_parse(const Attrs& attrs, int* num_in, int* num_out) {
  mxgen::AdamArgs a;
  if (!adam_attrs(attrs, &a)) return MX_FAIL;
  *num_in = 4;
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue adam_shape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in_shapes,
                         std::vector<std::vector<unsigned int>>* out_shapes) {
  const auto& weight = (*in_shapes)[0];
  static const char* names[] = {"weight", "grad", "mean", "var"};
  for (int i = 1; i < 4; ++i) {
    if ((*in_shapes)[i] != weight) {
      MX_ERROR_MSG << "mxgen_adam_update: " << names[i] << " must have the weight's shape";
      return MX_FAIL;
    }
  }
  (*out_shapes)[0] = weight;
  return MX_SUCCESS;
}

MXReturnValue adam_mutates(const Attrs& attrs, std::vector<int>* inputs) {
  *inputs = {2, 3};   // mean, var
  return MX_SUCCESS;
}

MXReturnValue adam_forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                           std::vector<MXTensor>* outputs, const OpResource& res) {
  auto& in = *inputs;
  mxgen::AdamArgs a;
  adam_attrs(attrs, &a);
  float* out = (*outputs)[0].data<float>();
  const float* weight = in[0].data<float>();
  const size_t n = in[0].size();
  if (out != weight) std::copy(weight, weight + n, out);   // then updated in place
  mxgen::kernels().adam_update(n, out, in[1].data<float>(), in[2].data<float>(),
                               in[3].data<float>(), a);
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(mxgen_adam_update)
    .setParseAttrs(adam_parse)
    .setInferType(all_float32)
    .setInferShape(adam_shape)
    .setMutateInputs(adam_mutates)
    .setForward(adam_forward, "cpu");
