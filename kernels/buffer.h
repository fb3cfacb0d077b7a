// A growable array for the kernels' large working buffers (packed weights,
// saved gates, pre-activation gradients), backed by transparent huge pages
// where the system grants them.
//
// Linux's default THP mode here is `madvise`: only memory marked with
// MADV_HUGEPAGE gets 2 MB pages.  The recurrent and generation loops stream
// megabytes of such buffers every step; with 4 KB pages each 4 KB costs a
// TLB entry (the L2 TLB covers 12 MB on a Zen 4), and a thread's packed
// weights land on scattered physical pages, which fill its L2 unevenly.
// Buffers of at least kHugeBytes are 2 MB-aligned, rounded up to 2 MB and
// marked; smaller ones are plain 64-byte-aligned memory.  Where the system
// refuses huge pages (THP `never`, no free 2 MB frames) the marking is a
// no-op and the buffer works the same.
//
// Semantics follow std::vector's resize for the kernels' use: growing keeps
// the old values and zero-fills the rest (some callers rely on zeros in pad
// columns they never write); shrinking keeps the memory.
//
// Like the other kernel headers, the class lives in the namespace of the
// instruction set its translation unit is compiled for (isa_namespace.h), so
// the linker never merges copies built for different CPUs; the operators'
// portable code (kernels/ops) gets mxgen::portable.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace mxgen {
#ifdef MXGEN_ISA_NS
namespace MXGEN_ISA_NS {
#else
namespace portable {
#endif

template <typename T>
class Buffer {
  static_assert(std::is_trivially_copyable<T>::value, "Buffer holds plain values");

 public:
  static constexpr size_t kHugeBytes = size_t{1} << 20;
  static constexpr size_t kHugePage = size_t{2} << 20;

  Buffer() = default;
  explicit Buffer(size_t n) { resize(n); }
  ~Buffer() { std::free(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept { swap(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    Buffer(std::move(other)).swap(*this);
    return *this;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }

  void resize(size_t n) {
    if (n > capacity_) {
      size_t bytes = n * sizeof(T);
      size_t align = 64;
      if (bytes >= kHugeBytes) {
        bytes = (bytes + kHugePage - 1) & ~(kHugePage - 1);
        align = kHugePage;
      }
      void* mem = nullptr;
      if (posix_memalign(&mem, align, bytes) != 0) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
      if (align == kHugePage) madvise(mem, bytes, MADV_HUGEPAGE);   // advice only
#endif
      std::memset(mem, 0, bytes);
      if (size_ > 0) std::memcpy(mem, data_, size_ * sizeof(T));
      std::free(data_);
      data_ = static_cast<T*>(mem);
      capacity_ = bytes / sizeof(T);
    } else if (n > size_) {
      std::memset(static_cast<void*>(data_ + size_), 0, (n - size_) * sizeof(T));
    }
    size_ = n;
  }

  void swap(Buffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
  }

 private:
  T* data_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
};

}  // namespace MXGEN_ISA_NS or portable
}  // namespace mxgen
