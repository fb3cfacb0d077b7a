// Which copy of the kernels runs (see dispatch.h): chosen once, when the
// library loads, from what the CPU supports and MXGEN_ISA.
#include "dispatch.h"

#include <atomic>
#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace mxgen {
namespace {

// AMX: the CPU has the tiles and bfloat16 tile multiplies, and Linux lets
// this process use the tile data state (asked once, for every thread).
bool amx_usable() {
#if defined(__x86_64__) && defined(__linux__) && defined(MXGEN_X86_ISAS)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool tile = (d >> 24) & 1, bf16 = (d >> 22) & 1;
  if (!tile || !bf16) return false;
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

Isa cpu_best() {
#if defined(__x86_64__) && defined(__GNUC__) && defined(MXGEN_X86_ISAS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return !__builtin_cpu_supports("avx512bf16") ? Isa::kAvx512
           : amx_usable() ? Isa::kAmxBf16 : Isa::kAvx512Bf16;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}

const Kernels* table_of(Isa isa) {
#ifdef MXGEN_X86_ISAS
  if (isa == Isa::kAmxBf16) return &amx_bf16::kTable;
  if (isa == Isa::kAvx512Bf16) return &avx512_bf16::kTable;
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

bool isa_of(const char* name, Isa* isa) {
  for (Isa i : {Isa::kAmxBf16, Isa::kAvx512Bf16, Isa::kAvx512, Isa::kAvx2, Isa::kGeneric}) {
    if (std::strcmp(name, isa_name(i)) == 0) {
      *isa = i;
      return true;
    }
  }
  return false;
}

Choice choose(const char* request) {
  Choice c{cpu_best(), nullptr, ""};
  Isa want = c.best;
  if (request && *request) {
    std::string r(request);
    if (!isa_of(r.c_str(), &want))
      c.note = "MXGEN_ISA=" + r + " is not one of amx_bf16, avx512_bf16, avx512, avx2,"
               " generic: ignored";
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
    case Isa::kAmxBf16: return "amx_bf16";
    case Isa::kAvx512Bf16: return "avx512_bf16";
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
  if (!mxgen::isa_of(name, &want)) return -1;
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

__attribute__((visibility("default"))) void mxgen_sgemm_bf16(int M, int N, int K,
                                                             const float* A, const float* B,
                                                             float* C) {
  mxgen::kernels().sgemm_bf16(M, N, K, A, B, C);
}

}  // extern "C"
