// mxgen's kernel headers (gemm.h, recurrent.h, lstm.h, gru.h, dropout.h,
// sampler.h, generate.h, activations.h) are compiled once per instruction
// set, by kernels_isa.cc, each copy in its own namespace: mxgen::avx512,
// mxgen::avx2 or mxgen::generic (MXGEN_ISA_NS, with MXGEN_ISA_LEVEL 2, 1 or
// 0).  Distinct namespaces keep the linker from merging two copies of an
// inline function compiled for different CPUs (which could run AVX-512 code
// on a CPU without it).  dispatch.cc picks the copy that runs.
#pragma once

#if !defined(MXGEN_ISA_NS) || !defined(MXGEN_ISA_LEVEL)
#error "compile mxgen's kernel headers through kernels_isa.cc (MXGEN_ISA_NS, MXGEN_ISA_LEVEL)"
#endif
