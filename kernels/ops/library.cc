// mxgen's native operators, loaded with mx.library.load():
//
//   mxgen_sample             ops/sample_op.cc     sampling from logits (CPU, GPU)
//   mxgen_char_rnn_generate  ops/generate_op.cc   all steps of generation (CPU, GPU)
//   mxgen_lstm, mxgen_gru    ops/recurrent_op.cc  one training layer (CPU)
//   mxgen_dropout            ops/dropout_op.cc    training dropout (CPU)
//   mxgen_adam_update        ops/adam_op.cc       Adam's update of one tensor (CPU)
//
// Each op file is the glue (attributes, shapes, checks, registration); the
// math lives in the kernel headers, compiled once per instruction set and
// called through mxgen::kernels() (dispatch.h), so every op runs the copy
// chosen when the library loaded.  Built against the lib_api.h / lib_api.cc
// shipped in the installed mxnet wheel.
#include "mxnet/lib_api.h"

using namespace mxnet::ext;

MXReturnValue initialize(int version) {
  if (version >= 10900) return MX_SUCCESS;   // the lib_api.h of MXNet 1.9
  MX_ERROR_MSG << "mxgen kernels need MXNet >= 1.9.0, found " << version;
  return MX_FAIL;
}
