// mxgen_sample(logits (N, V)) -> ids (N,)
//     temperature, then top-k, then top-p (nucleus) filtering, then one
//     categorical draw per row from MXNet's seeded random states (CPU, and
//     GPU where the library holds CUDA code).  temperature == 0 is greedy.
// The math: sampler.h (CPU), cuda/gpu_kernels.cu (GPU).
#include "op_util.h"

using namespace mxnet::ext;
using namespace mxgen::ops;

namespace {

MXReturnValue sample_parse(const Attrs& attrs, int* num_in, int* num_out) {
  mxgen::Sampling s;
  if (parse_sampling(attrs, &s) != MX_SUCCESS) return MX_FAIL;
  *num_in = 1;
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue sample_shape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in_shapes,
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

MXReturnValue sample_forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                             std::vector<MXTensor>* outputs, const OpResource& res) {
  mxgen::Sampling s;
  if (parse_sampling(attrs, &s) != MX_SUCCESS) return MX_FAIL;
  MXTensor& logits = (*inputs)[0];
  mxgen::kernels().sample(logits.data<float>(), static_cast<int>(logits.shape[0]),
                          static_cast<int>(logits.shape[1]), s, res.get_cpu_rand_states(),
                          (*outputs)[0].data<float>());
  return MX_SUCCESS;
}

#ifdef MXGEN_WITH_CUDA
MXReturnValue sample_forward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                 std::vector<MXTensor>* outputs, const OpResource& res) {
  mxgen::Sampling s;
  if (parse_sampling(attrs, &s) != MX_SUCCESS) return MX_FAIL;
  MXTensor& logits = (*inputs)[0];
  const char* err = mxgen::gpu::sample(
      logits.data<float>(), static_cast<int>(logits.shape[0]), static_cast<int>(logits.shape[1]),
      gpu_sampling(s), res.get_gpu_rand_states(), MX_NUM_GPU_RANDOM_STATES,
      (*outputs)[0].data<float>(), res.get_cuda_stream());
  if (err) { MX_ERROR_MSG << "mxgen_sample (gpu): " << err; return MX_FAIL; }
  return MX_SUCCESS;
}
#endif

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
