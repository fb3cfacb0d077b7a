// The pool of buffers the recurrent ops keep their saved gates in.
#ifndef MXGEN_OPS_SAVED_BUFFERS_H_
#define MXGEN_OPS_SAVED_BUFFERS_H_

#include <cstddef>
#include <list>
#include <mutex>
#include <utility>

#include "../buffer.h"

namespace mxgen {
namespace ops {

// Buffers for the saved gates, recycled across op states: in eager mode every
// call creates a state, and a fresh 16 MB allocation per call costs a page
// fault per 4 KB (as much as the forward pass itself).  The pool holds at
// most kPoolBytes (oldest dropped first), hands out the smallest buffer that
// fits and never one more than twice the size asked for, so a run that moves
// to smaller shapes gives the memory back.  The buffers sit on huge pages
// where the system grants them (buffer.h): the backward pass streams them.
class SavedBuffers {
 public:
  static constexpr size_t kPoolBytes = size_t{256} << 20;

  static portable::Buffer<float> take(size_t n) {
    std::lock_guard<std::mutex> lock(mutex());
    auto& pool = list();
    auto best = pool.end();
    for (auto it = pool.begin(); it != pool.end(); ++it)
      if (it->size() >= n && it->size() <= 2 * n && (best == pool.end() || it->size() < best->size()))
        best = it;
    if (best == pool.end()) return portable::Buffer<float>(n);
    portable::Buffer<float> v = std::move(*best);
    pool.erase(best);
    bytes() -= v.size() * sizeof(float);
    return v;
  }

  static void give(portable::Buffer<float>&& v) {
    const size_t size = v.size() * sizeof(float);
    if (size == 0 || size > kPoolBytes) return;   // freed here
    std::lock_guard<std::mutex> lock(mutex());
    auto& pool = list();
    pool.push_back(std::move(v));
    bytes() += size;
    while (bytes() > kPoolBytes) {
      bytes() -= pool.front().size() * sizeof(float);
      pool.pop_front();
    }
  }

  static size_t pooled_bytes() {
    std::lock_guard<std::mutex> lock(mutex());
    return bytes();
  }

 private:
  static std::mutex& mutex() { static std::mutex m; return m; }
  static std::list<portable::Buffer<float>>& list() {
    static std::list<portable::Buffer<float>> l;
    return l;
  }
  static size_t& bytes() { static size_t b = 0; return b; }
};

}  // namespace ops
}  // namespace mxgen

#endif  // MXGEN_OPS_SAVED_BUFFERS_H_
