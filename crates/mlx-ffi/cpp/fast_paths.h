// Which of the bridge's CUDA fast paths may run. Set from Rust
// (`mlx_tensor::fast::FastPaths::apply`); every path starts on. The CPU build
// has no fast path, and only stores the setting.
#pragma once

#include <atomic>

namespace mlx_bridge::fast_paths {

// One bit a path; the values are the bits `set_fast_paths` takes.
enum Path : unsigned {
  kFewRowsLinear = 1u,
  kNormRopeHeads = 2u,
  kDirectCopies = 4u,
  kPageLocking = 8u,
};

// The enabled paths (one object for the whole program).
inline std::atomic<unsigned>& enabled() {
  static std::atomic<unsigned> bits{kFewRowsLinear | kNormRopeHeads | kDirectCopies | kPageLocking};
  return bits;
}

// Whether `path` is enabled.
inline bool on(Path path) { return (enabled().load(std::memory_order_relaxed) & path) != 0; }

}  // namespace mlx_bridge::fast_paths
