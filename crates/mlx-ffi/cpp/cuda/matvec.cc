// `x @ w.T` for the few rows of a decoding step, as one CUDA kernel that
// reads the weight at memory speed.
//
// Under MLX's CUDA backend a product with one row (or a handful) is a
// matrix-vector product whose cost is reading the weight once. MLX's own
// kernel for it has each warp load 8 bytes a lane per pass, too few loads in
// flight to reach the memory's bandwidth (a 1024 × 3072 bf16 weight takes
// ~28 µs where 6 MB at 4.8 TB/s take ~1.3 µs), so on a GPU a decoding step
// spends most of its time in these products. The kernel here gives each warp
// one weight row, loads 16 bytes a lane four passes ahead and keeps up to
// eight input rows in registers, so every weight byte is read once for all
// rows. It is compiled by MLX (`mx::fast::cuda_kernel`, NVRTC) on first use
// and launched like MLX's own kernels, in the same command stream.
#include <optional>

#include "cuda/env.h"
#include "mlx-ffi/src/bridge.rs.h"

namespace mx = mlx::core;

namespace mlx_bridge {

namespace {

// The most input rows one launch serves: each lane keeps one accumulator a
// row, and beyond a handful of rows MLX's matrix products are efficient.
constexpr int kMaxRows = 8;
// Threads per block: eight warps, one weight row each.
constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;

// The kernel's body (MLX writes the signature from the names below):
// inputs `x` ([..., K], row-contiguous, `rows` rows in all) and `w` ([N, K],
// row-contiguous), output `out` ([..., N]). Template arguments: `T`, and
// `ROWS`, the rows it has registers for (1, or kMaxRows for any count up to
// it: two compiled kernels a dtype rather than one for every count). Sums
// are kept in f32 and rounded to `T` once, as MLX's products do.
constexpr const char* kSource = R"(
  const int n = w_shape[0];
  const int k = w_shape[1];
  int rows = 1;
  for (int d = 0; d + 1 < x_ndim; ++d) {
    rows *= x_shape[d];
  }
  const int lane = threadIdx.x & 31;
  const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (row >= n) {
    return;
  }
  const T* wr = w + static_cast<size_t>(row) * k;
  float acc[ROWS];
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    acc[m] = 0.0f;
  }
  constexpr int V = 16 / sizeof(T);
  const bool vectors = (k % V == 0) &&
      ((reinterpret_cast<size_t>(w) | reinterpret_cast<size_t>(x)) % 16 == 0);
  if (vectors) {
#pragma unroll 4
    for (int c = lane * V; c < k; c += 32 * V) {
      const uint4 wv = *reinterpret_cast<const uint4*>(wr + c);
      const T* wp = reinterpret_cast<const T*>(&wv);
#pragma unroll
      for (int m = 0; m < ROWS; ++m) {
        if (m >= rows) {
          break;
        }
        const uint4 xv = *reinterpret_cast<const uint4*>(x + static_cast<size_t>(m) * k + c);
        const T* xp = reinterpret_cast<const T*>(&xv);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          acc[m] += static_cast<float>(wp[j]) * static_cast<float>(xp[j]);
        }
      }
    }
  } else {
    for (int c = lane; c < k; c += 32) {
      const float wc = static_cast<float>(wr[c]);
#pragma unroll
      for (int m = 0; m < ROWS; ++m) {
        if (m >= rows) {
          break;
        }
        acc[m] += wc * static_cast<float>(x[static_cast<size_t>(m) * k + c]);
      }
    }
  }
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    float v = acc[m];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    if (lane == 0 && m < rows) {
      out[static_cast<size_t>(m) * n + row] = static_cast<T>(v);
    }
  }
)";

// Whether the kernel can run here: MLX's CUDA backend is present, the path
// is enabled, and the default device is its GPU.
bool cuda_default() { return cuda::kernel_active(fast_paths::kFewRowsLinear); }

const mx::fast::CustomKernelFunction& kernel() {
  static const mx::fast::CustomKernelFunction k =
      mx::fast::cuda_kernel("mlx_ffi_few_rows_linear", {"x", "w"}, {"out"}, kSource, "", true, 0);
  return k;
}

}  // namespace

bool few_rows_linear_active() { return cuda_default(); }

ArrayPtr few_rows_linear(const array& x, const array& w) {
  if (!cuda_default() || w.ndim() != 2 || x.ndim() < 1 || x.dtype() != w.dtype() ||
      !cuda::kernel_dtype(x.dtype())) {
    return nullptr;
  }
  const int k = w.shape(1);
  const int n = w.shape(0);
  if (k <= 0 || n <= 0 || x.shape(-1) != k) return nullptr;
  const auto rows = x.size() / static_cast<std::size_t>(k);
  if (rows < 1 || rows > static_cast<std::size_t>(kMaxRows)) return nullptr;
  // One warp a weight row: the grid counts threads, rounded up to blocks.
  const long long blocks = (static_cast<long long>(n) + kRowsPerBlock - 1) / kRowsPerBlock;
  if (blocks * kThreads > 0x7fffffffLL) return nullptr;
  mx::Shape out_shape = x.shape();
  out_shape.back() = n;
  auto outs = kernel()({x, w}, {out_shape}, {x.dtype()},
                       {static_cast<int>(blocks * kThreads), 1, 1}, {kThreads, 1, 1},
                       {{"T", x.dtype()}, {"ROWS", rows == 1 ? 1 : kMaxRows}}, std::nullopt, false, {});
  return wrap(std::move(outs.at(0)));
}

}  // namespace mlx_bridge
