// Direct copies between host memory and MLX's CUDA buffers: cuda/transfer.cc
// in the CUDA build, no_cuda.cc (never active) in the CPU build.
#pragma once

#include <cstddef>
#include <optional>

#include "mlx/mlx.h"

namespace mlx_bridge::cuda {

// Transfers smaller than this take MLX's own path: a direct copy costs a
// driver call and a wait, which only large transfers repay.
constexpr std::size_t kMinDirectBytes = std::size_t{8} << 20;

// Whether direct copies are active: the process runs MLX's CUDA backend, the
// CUDA driver is loaded, and the path is enabled (fast_paths.h).
bool active();

// The address of the bytes of `a` (evaluated, row-contiguous) in device or
// managed memory, checked to lie inside one CUDA allocation of at least
// `bytes` bytes; null when the direct path does not apply.
const char* device_bytes(const mlx::core::array& a, std::size_t bytes);

// Queues a copy of `bytes` bytes between host memory and a CUDA address
// (either direction); false when the driver refused. Copies run in order;
// `wait` returns once all of them have landed.
bool copy(void* dst, const void* src, std::size_t bytes);

// Waits for the copies queued by `copy` (MLX's streams do not wait for them);
// false when the driver reports an error.
bool wait();

// An evaluated array whose buffer lives in device memory, and the address of
// its bytes there, for the host to fill with `copy`.
struct DeviceArray {
  mlx::core::array array;
  char* bytes;
};

// A new such array of `shape` and `dtype` (of `bytes` bytes); empty when the
// direct path does not apply.
std::optional<DeviceArray> device_array(mlx::core::Shape shape, mlx::core::Dtype dtype,
                                        std::size_t bytes);

// Page-locks host memory so copies to and from it run at full bus speed;
// false when not possible (then copies still work, staged by the driver).
// The caller decides what is worth locking and keeps locked ranges from
// sharing pages (mlx-tensor's host_buffer.rs).
bool pin(void* data, std::size_t bytes);

// Undoes `pin`.
void unpin(void* data);

}  // namespace mlx_bridge::cuda
