// What the CUDA-only paths of the bridge (cuda_transfer.cc, cuda_matvec.cc,
// cuda_norm_rope.cc) check before they act: that MLX runs its CUDA backend on
// the default device, and that the environment has not switched them off.
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

// A kernel of the bridge that the environment variable `variable` can switch
// off: whether it may run now (decided once, except for the default device,
// which may change).
class KernelSwitch {
 public:
  explicit KernelSwitch(const char* variable)
      : enabled_(!switched_off(variable) && backend_present()) {}
  bool active() const { return enabled_ && gpu_is_default(); }

 private:
  bool enabled_;
};

// The dtypes the bridge's kernels are written for.
inline bool kernel_dtype(mlx::core::Dtype t) {
  return t == mlx::core::bfloat16 || t == mlx::core::float16 || t == mlx::core::float32;
}

}  // namespace mlx_bridge::cuda
