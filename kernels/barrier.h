// A barrier for the threads of one OpenMP team, for the per-time-step
// synchronisation of the recurrent loops and generation.
//
// Why not `#pragma omp barrier`: libgomp waits at a barrier by spinning, then
// sleeping on a futex; and once the process holds more OpenMP threads than
// CPUs it spins only 100 times (GOMP_SPINCOUNT's "throttled" count).  Inside
// MXNet that is the usual case (each engine thread that ran a parallel op
// keeps a team of its own), and strace showed about two futex calls per step
// barrier of a generation call.  This one spins (with PAUSE) for a bounded
// time and then yields the CPU, so a team that shares its cores with other
// work still makes progress.  What it buys is small (BENCHMARKS.md), but it
// no longer depends on how many teams the process happens to hold.
#pragma once

#include <immintrin.h>
#include <sched.h>

#include <atomic>

#include "isa_namespace.h"

namespace mxgen {
namespace MXGEN_ISA_NS {

class TeamBarrier {
 public:
  // Every thread of the team calls wait(team) with the same team size; all
  // writes before it are visible to every thread after it (acquire/release).
  void wait(int team) {
    if (team <= 1) return;
    const unsigned gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == team - 1) {
      arrived_.store(0, std::memory_order_relaxed);   // ordered before the release below
      generation_.store(gen + 1, std::memory_order_release);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == gen;) {
      if (spins < kSpins) {
        _mm_pause();
        ++spins;
      } else {
        sched_yield();   // a thread of the team is not running: let it
      }
    }
  }

 private:
  // ~0.5-2 ms of PAUSE on current x86 cores: far above a step's imbalance
  static constexpr int kSpins = 1 << 16;
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<unsigned> generation_{0};
};

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
