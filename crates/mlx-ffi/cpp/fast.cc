// Fused kernels from mlx::core::fast.
#include "mlx-ffi/src/bridge.rs.h"

namespace mx = mlx::core;

namespace mlx_bridge {

ArrayPtr fast_rms_norm(const array& x, const array& weight, bool has_weight, float eps) {
  std::optional<array> w;
  if (has_weight) w = weight;
  return wrap(mx::fast::rms_norm(x, w, eps));
}

ArrayPtr fast_layer_norm(const array& x, const array& weight, const array& bias, bool has_weight,
                         bool has_bias, float eps) {
  std::optional<array> w, b;
  if (has_weight) w = weight;
  if (has_bias) b = bias;
  return wrap(mx::fast::layer_norm(x, w, b, eps));
}

ArrayPtr fast_rope(const array& x, std::int32_t dims, bool traditional, float base, float scale,
                   std::int32_t offset) {
  return wrap(mx::fast::rope(x, dims, traditional, base, scale, offset));
}

ArrayPtr fast_rope_array_offset(const array& x, std::int32_t dims, bool traditional, float base, float scale,
                                const array& offset) {
  return wrap(mx::fast::rope(x, dims, traditional, base, scale, offset));
}

ArrayPtr fast_sdpa(const array& q, const array& k, const array& v, float scale, AttentionMask mask_kind,
                   const array& mask) {
  switch (mask_kind) {
    case AttentionMask::None: return wrap(mx::fast::scaled_dot_product_attention(q, k, v, scale));
    case AttentionMask::Causal:
      return wrap(mx::fast::scaled_dot_product_attention(q, k, v, scale, "causal"));
    case AttentionMask::Array:
      return wrap(mx::fast::scaled_dot_product_attention(q, k, v, scale, "array", mask));
  }
  throw std::invalid_argument("unknown attention mask kind");
}

}  // namespace mlx_bridge
