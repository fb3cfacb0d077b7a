// Which copy of the kernels runs (see dispatch.h): chosen once, when the
// library loads, from what the CPU supports and MXGEN_ISA.
#include "dispatch.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace mxgen {
namespace {

Isa cpu_best() {
#if defined(__x86_64__) && defined(__GNUC__) && defined(MXGEN_X86_ISAS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}

const Kernels* table_of(Isa isa) {
#ifdef MXGEN_X86_ISAS
  if (isa == Isa::kAvx512) return &avx512::kTable;
  if (isa == Isa::kAvx2) return &avx2::kTable;
#endif
  return &generic::kTable;
}

struct Choice {
  Isa best;                  // what the CPU runs
  const Kernels* table;      // what runs
  std::string note;          // why, when MXGEN_ISA asked for something else
};

Choice choose(const char* request) {
  Choice c{cpu_best(), nullptr, ""};
  Isa want = c.best;
  if (request && *request) {
    std::string r(request);
    if (r == "avx512") want = Isa::kAvx512;
    else if (r == "avx2") want = Isa::kAvx2;
    else if (r == "generic") want = Isa::kGeneric;
    else c.note = "MXGEN_ISA=" + r + " is not one of avx512, avx2, generic: ignored";
    if (c.note.empty() && static_cast<int>(want) > static_cast<int>(c.best)) {
      c.note = "MXGEN_ISA=" + r + " is not supported by this CPU: using " + isa_name(c.best);
      want = c.best;
    }
  }
  c.table = table_of(want);
  return c;
}

Choice& choice() {
  static Choice c = choose(std::getenv("MXGEN_ISA"));
  return c;
}

std::atomic<const Kernels*>& active() {
  static std::atomic<const Kernels*> a{choice().table};
  return a;
}

// Choose when the library loads, not at the first op call.
__attribute__((unused)) const bool kChosenAtLoad = active().load() != nullptr;

}  // namespace

const Kernels& kernels() { return *active().load(std::memory_order_acquire); }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

}  // namespace mxgen

// Plain C entry points for mxgen/_native.py (ctypes): what runs, what the
// CPU could run, how the library was built, and a switch for the tests.
extern "C" {

__attribute__((visibility("default"))) const char* mxgen_isa() {
  return mxgen::isa_name(mxgen::kernels().isa);
}

__attribute__((visibility("default"))) const char* mxgen_isa_best() {
  return mxgen::isa_name(mxgen::choice().best);
}

__attribute__((visibility("default"))) const char* mxgen_isa_note() {
  return mxgen::choice().note.c_str();
}

// Switch to a lower ISA at run time (tests cover every path in one process).
// Returns 0, or -1 when the CPU cannot run `name` or the name is unknown.
__attribute__((visibility("default"))) int mxgen_set_isa(const char* name) {
  mxgen::Isa want;
  if (std::strcmp(name, "avx512") == 0) want = mxgen::Isa::kAvx512;
  else if (std::strcmp(name, "avx2") == 0) want = mxgen::Isa::kAvx2;
  else if (std::strcmp(name, "generic") == 0) want = mxgen::Isa::kGeneric;
  else return -1;
  if (static_cast<int>(want) > static_cast<int>(mxgen::choice().best)) return -1;
  mxgen::active().store(mxgen::table_of(want), std::memory_order_release);
  return 0;
}

#if __has_include("mxgen_build_info.h")
#include "mxgen_build_info.h"   // written by CMakeLists.txt
#else
#define MXGEN_BUILD_INFO "unknown build"
#endif
__attribute__((visibility("default"))) const char* mxgen_build_info() {
  return MXGEN_BUILD_INFO;
}

// C = A B for row-major plain operands, with the active kernels (tests).
__attribute__((visibility("default"))) void mxgen_sgemm(int M, int N, int K, const float* A,
                                                        const float* B, float* C) {
  mxgen::kernels().sgemm(M, N, K, A, B, C);
}

}  // extern "C"
