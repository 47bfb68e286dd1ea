// What the CUDA-only paths of the bridge (transfer.cc, matvec.cc,
// norm_rope.cc) check before they act: that MLX runs its CUDA backend on the
// default device, and that the path is enabled (fast_paths.h).
#pragma once

#include "fast_paths.h"
#include "mlx/backend/cuda/cuda.h"
#include "mlx/mlx.h"

namespace mlx_bridge::cuda {

// Whether this process runs MLX's CUDA backend.
inline bool backend_present() {
  static const bool present = mlx::core::cu::is_available();
  return present;
}

// Whether new arrays go to the GPU.
inline bool gpu_is_default() {
  return mlx::core::default_device().type == mlx::core::Device::DeviceType::gpu;
}

// Whether the kernel of `path` may run now.
inline bool kernel_active(fast_paths::Path path) {
  return fast_paths::on(path) && backend_present() && gpu_is_default();
}

// The dtypes the bridge's kernels are written for.
inline bool kernel_dtype(mlx::core::Dtype t) {
  return t == mlx::core::bfloat16 || t == mlx::core::float16 || t == mlx::core::float32;
}

}  // namespace mlx_bridge::cuda
