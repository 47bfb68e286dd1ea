// Bulk page migration for CUDA unified memory (see unified_memory.cc).
#pragma once

#include <cstddef>

namespace mlx_bridge::unified {

// Ranges smaller than this migrate page by page as before: prefetching costs
// a driver call and a wait, which only large transfers repay.
constexpr std::size_t kMinPrefetchBytes = std::size_t{8} << 20;

// Whether prefetching is active (a CUDA driver is loaded and it is not
// switched off with MLX_FFI_UNIFIED_PREFETCH=0).
bool available();

// Moves a range of managed memory to the host before the host reads or
// writes all of it.
void prefetch_to_host(const void* data, std::size_t bytes);

// Moves a range of managed memory to the current GPU after the host wrote
// it, before kernels read it.
void prefetch_to_device(const void* data, std::size_t bytes);

}  // namespace mlx_bridge::unified
