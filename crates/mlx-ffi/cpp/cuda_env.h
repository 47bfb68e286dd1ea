// What the CUDA-only paths of the bridge (cuda_transfer.cc, cuda_matvec.cc)
// check before they act: that MLX runs its CUDA backend on the default
// device, and that the environment has not switched them off.
#pragma once

#include <cstdlib>
#include <cstring>

#include "mlx/backend/cuda/cuda.h"
#include "mlx/mlx.h"

namespace mlx_bridge::cuda {

// Whether the environment variable `variable` is set to "0".
inline bool switched_off(const char* variable) {
  const char* setting = std::getenv(variable);
  return setting != nullptr && std::strcmp(setting, "0") == 0;
}

// Whether this process runs MLX's CUDA backend (false on the CPU build).
inline bool backend_present() { return mlx::core::cu::is_available(); }

// Whether new arrays go to the GPU.
inline bool gpu_is_default() {
  return mlx::core::default_device().type == mlx::core::Device::DeviceType::gpu;
}

}  // namespace mlx_bridge::cuda
