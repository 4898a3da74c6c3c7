// torch's large CPU tensors from plain malloc, so that glibc can hand a freed block straight to the next
// request of its size (core/training/memory.py says why).
//
// torch's own CPU allocator takes every block with posix_memalign(64). glibc before 2.38 serves an aligned
// request by carving it out of a chunk larger than the request (size + alignment + a header), and a freed
// block of exactly the size therefore never fits the next identical request: with the heap kept (no mmap
// per block), a training step that frees and allocates the same tensors grows the heap by their size until
// neighbouring holes happen to merge. malloc(n + 64), aligned by hand, is reused at once.
//
// Registered as torch.ops.poemtui_lstm.malloc_cpu_allocations(). Blocks of every size take this route
// (raw_allocate / raw_deleter must agree on every pointer); blocks allocated before keep their deleter.

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/library.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace {

constexpr size_t ALIGNMENT = 64;               // as torch's CPU allocator (c10::gAlignment)

class MallocCPUAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n == 0) return {nullptr, nullptr, &release, c10::Device(c10::kCPU)};  // as torch's: no block
    // [raw ... padding | raw pointer (8 bytes) | data, 64-byte aligned]
    void* raw = std::malloc(n + ALIGNMENT + sizeof(void*));
    TORCH_CHECK_WITH(OutOfMemoryError, raw != nullptr, "poemtui: could not allocate ", n, " bytes of CPU memory");
    auto data = (reinterpret_cast<uintptr_t>(raw) + sizeof(void*) + ALIGNMENT - 1) & ~(uintptr_t(ALIGNMENT) - 1);
    std::memcpy(reinterpret_cast<void*>(data - sizeof(void*)), &raw, sizeof(void*));
    return {reinterpret_cast<void*>(data), reinterpret_cast<void*>(data), &release, c10::Device(c10::kCPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

 private:
  static void release(void* data) {
    if (data == nullptr) return;
    void* raw;
    std::memcpy(&raw, static_cast<char*>(data) - sizeof(void*), sizeof(void*));
    std::free(raw);
  }
};

bool malloc_cpu_allocations() {
  static MallocCPUAllocator* instance = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    instance = new MallocCPUAllocator();  // never destroyed: tensors may be freed after statics are
    c10::SetCPUAllocator(instance, /*priority=*/100);
  });
  return c10::GetCPUAllocator() == instance;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(poemtui_lstm, m) { m.def("malloc_cpu_allocations() -> bool", &malloc_cpu_allocations); }
