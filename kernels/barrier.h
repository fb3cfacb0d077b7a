// A barrier for the threads of one OpenMP team, for the per-time-step
// synchronisation of the recurrent loops and generation.
//
// Why not `#pragma omp barrier`: libgomp waits at a barrier by spinning, then
// sleeping on a futex; and once the process holds more OpenMP threads than
// CPUs it spins only 100 times (GOMP_SPINCOUNT's "throttled" count).  Inside
// MXNet that is the usual case (each engine thread that ran a parallel op
// keeps a team of its own), and strace showed about two futex calls per step
// barrier of a generation call.  This one spins (with PAUSE) for a short
// bounded time and then yields the CPU.  What it buys is small
// (BENCHMARKS.md), but it no longer depends on how many teams the process
// happens to hold.  A team larger than the CPUs it may run on (more
// OMP_NUM_THREADS than cores) waits at libgomp's barrier instead: spinning
// for a thread that is not running cost 35x there.
#pragma once

#include <immintrin.h>
#include <sched.h>

#include <atomic>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "isa_namespace.h"

namespace mxgen {
namespace MXGEN_ISA_NS {

class TeamBarrier {
 public:
  // Every thread of the team calls wait(team) with the same team size; all
  // writes before it are visible to every thread after it (acquire/release).
  void wait(int team) {
    if (team <= 1) return;
    if (team > cpus()) {
#pragma omp barrier
      return;
    }
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
  // tens of microseconds of PAUSE on current x86 cores: above a step's
  // imbalance, short against a time slice
  static constexpr int kSpins = 1 << 12;
  static int cpus() {
#ifdef _OPENMP
    static const int n = omp_get_num_procs();   // the CPUs this process may use
    return n;
#else
    return 1;
#endif
  }
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<unsigned> generation_{0};
};

}  // namespace MXGEN_ISA_NS
}  // namespace mxgen
