// The query and key heads of a one-position decoding step normalised and
// rotated by one CUDA kernel.
//
// A decoding step's attention normalises each query and key head (RMS norm
// with the query's or the key's weight) and rotates it to its position. Built
// from MLX's fused operations that takes a norm, a product with the stacked
// weights and a rotation, three kernels of a few microseconds each for a few
// kilobytes of data; this kernel does all three in one pass, one warp a
// head, with MLX's own formulas and roundings: the normalised value rounded
// to the dtype, times the weight rounded again, then rotated in f32 with
// `inv_freq = exp2(-i / (D/2) · log2(base))` and rounded once more.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

#include "cuda/env.h"
#include "mlx-ffi/src/bridge.rs.h"

namespace mx = mlx::core;

namespace mlx_bridge {

namespace {

constexpr int kThreads = 256;
constexpr int kHeadsPerBlock = kThreads / 32;

// The body: inputs `x` ([B, HALL, 1, D]), `qw` and `kw` ([D]), `pos`
// (int32, [B] with PER_ROW, else [1]); output `out` ([B, HQ + HK, 1, D]).
// Template arguments T, HQ, HK, HALL, D, PER_ROW; kEps, kBaseLog2 and
// kScale come from the header.
constexpr const char* kSource = R"(
  constexpr int QK = HQ + HK;
  constexpr int HALF = D / 2;
  const int lane = threadIdx.x & 31;
  const int item = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int batch = x_shape[0];
  if (item >= batch * QK) {
    return;
  }
  const int b = item / QK;
  const int h = item - b * QK;
  const T* row = x + (static_cast<size_t>(b) * HALL + h) * D;
  const T* w = (h < HQ) ? qw : kw;
  float ss = 0.0f;
  for (int i = lane; i < D; i += 32) {
    const float v = static_cast<float>(row[i]);
    ss += v * v;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    ss += __shfl_xor_sync(0xffffffffu, ss, o);
  }
  const float normalizer = rsqrt(ss / static_cast<float>(D) + kEps);
  const float offset = static_cast<float>(PER_ROW ? pos[b] : pos[0]);
  const float L = kScale * offset;
  T* dst = out + static_cast<size_t>(item) * D;
  for (int i = lane; i < HALF; i += 32) {
    const T n1 = static_cast<T>(static_cast<float>(row[i]) * normalizer);
    const T n2 = static_cast<T>(static_cast<float>(row[i + HALF]) * normalizer);
    const float x1 = static_cast<float>(static_cast<T>(static_cast<float>(n1) * static_cast<float>(w[i])));
    const float x2 =
        static_cast<float>(static_cast<T>(static_cast<float>(n2) * static_cast<float>(w[i + HALF])));
    const float d = static_cast<float>(i) / static_cast<float>(HALF);
    const float inv_freq = exp2(-d * kBaseLog2);
    const float theta = L * inv_freq;
    const float c = cos(theta);
    const float s = sin(theta);
    dst[i] = static_cast<T>(x1 * c - x2 * s);
    dst[i + HALF] = static_cast<T>(x1 * s + x2 * c);
  }
)";

bool cuda_default() { return cuda::kernel_active(fast_paths::kNormRopeHeads); }

// The constants as exact hexadecimal float literals.
std::string header(float eps, float base_log2, float scale) {
  char text[256];
  std::snprintf(text, sizeof(text),
                "constexpr float kEps = %af;\nconstexpr float kBaseLog2 = %af;\n"
                "constexpr float kScale = %af;\n",
                static_cast<double>(eps), static_cast<double>(base_log2), static_cast<double>(scale));
  return text;
}

// One kernel function a set of constants (a model has one); the header is
// written only when a set is first seen.
const mx::fast::CustomKernelFunction& kernel(float eps, float base_log2, float scale) {
  static std::mutex lock;
  static std::map<std::tuple<float, float, float>, mx::fast::CustomKernelFunction> kernels;
  const auto constants = std::make_tuple(eps, base_log2, scale);
  std::lock_guard<std::mutex> guard(lock);
  auto found = kernels.find(constants);
  if (found == kernels.end()) {
    auto k = mx::fast::cuda_kernel("mlx_ffi_norm_rope_heads", {"x", "qw", "kw", "pos"}, {"out"}, kSource,
                                   header(eps, base_log2, scale), true, 0);
    found = kernels.emplace(constants, std::move(k)).first;
  }
  return found->second;
}

}  // namespace

bool norm_rope_heads_active() { return cuda_default(); }

ArrayPtr norm_rope_heads(const array& x, const array& q_weight, const array& k_weight, const array& offsets,
                         std::int32_t q_heads, std::int32_t k_heads, float eps, float base, float scale) {
  if (!cuda_default() || x.ndim() != 4 || x.shape(2) != 1 || !cuda::kernel_dtype(x.dtype())) return nullptr;
  const int batch = x.shape(0);
  const int all_heads = x.shape(1);
  const int dim = x.shape(3);
  if (batch < 1 || q_heads < 1 || k_heads < 0 || q_heads + k_heads > all_heads) return nullptr;
  if (dim < 2 || dim % 2 != 0 || dim > 1024) return nullptr;
  for (const array* w : {&q_weight, &k_weight}) {
    if (w->ndim() != 1 || w->shape(0) != dim || w->dtype() != x.dtype()) return nullptr;
  }
  if (offsets.dtype() != mx::int32 || offsets.ndim() != 1) return nullptr;
  const bool per_row = offsets.shape(0) == batch && batch > 1;
  if (!per_row && offsets.shape(0) != 1) return nullptr;
  const long long items = static_cast<long long>(batch) * (q_heads + k_heads);
  const long long blocks = (items + kHeadsPerBlock - 1) / kHeadsPerBlock;
  if (blocks * kThreads > 0x7fffffffLL) return nullptr;
  auto outs = kernel(eps, std::log2(base), scale)(
      {x, q_weight, k_weight, offsets}, {mx::Shape{batch, q_heads + k_heads, 1, dim}}, {x.dtype()},
      {static_cast<int>(blocks * kThreads), 1, 1}, {kThreads, 1, 1},
      {{"T", x.dtype()},
       {"HQ", q_heads},
       {"HK", k_heads},
       {"HALL", all_heads},
       {"D", dim},
       {"PER_ROW", per_row}},
      std::nullopt, false, {});
  return wrap(std::move(outs.at(0)));
}

}  // namespace mlx_bridge
