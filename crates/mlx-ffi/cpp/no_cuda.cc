// The CPU build's side of the bridge's CUDA paths: none of them applies, so
// the kernels decline (null) and direct copies and page locking are never
// active. The CUDA build compiles cuda/*.cc instead.
#include "cuda_transfer.h"
#include "mlx-ffi/src/bridge.rs.h"

namespace mx = mlx::core;

namespace mlx_bridge {

namespace cuda {

bool active() { return false; }
const char* device_bytes(const mx::array&, std::size_t) { return nullptr; }
bool copy(void*, const void*, std::size_t) { return false; }
bool wait() { return false; }
std::optional<DeviceArray> device_array(mx::Shape, mx::Dtype, std::size_t) { return std::nullopt; }
bool pin(void*, std::size_t) { return false; }
void unpin(void*) {}

}  // namespace cuda

bool few_rows_linear_active() { return false; }
ArrayPtr few_rows_linear(const array&, const array&) { return nullptr; }

bool norm_rope_heads_active() { return false; }
ArrayPtr norm_rope_heads(const array&, const array&, const array&, const array&, std::int32_t, std::int32_t,
                         float, float, float) {
  return nullptr;
}

}  // namespace mlx_bridge
