// Direct copies between host memory and MLX's CUDA buffers.
//
// Under MLX's CUDA backend a host read of an array first moves its buffer
// into managed memory, and arrays built from host bytes live in managed
// memory; either way the pages then migrate one fault at a time (about
// 10 GB/s on an H200). Large transfers (optimizer state kept on the host,
// checkpoints) instead copy straight between host memory and the array's
// device buffer with the CUDA driver, at bus speed, and leave the array in
// device memory.
//
// The driver is used only when the process already runs MLX's CUDA backend
// (which loads libcuda); when the direct-copies path is disabled
// (fast_paths.h), nothing here is active and every transfer takes MLX's own
// path; with page locking disabled, host buffers stay pageable. The CPU build
// compiles no_cuda.cc instead of this file.
//
// An array's buffer under the CUDA backend is MLX's `cu::CudaBuffer`
// (mlx/backend/cuda/allocator.h of the pinned MLX 0.32.4: a data pointer, a
// size and a device index, -1 for managed memory). Every address taken from
// it is checked with the driver to lie inside one CUDA allocation before
// anything is copied.
#include "cuda_transfer.h"

#include <dlfcn.h>

#include <cstdint>

#include "cuda/env.h"

namespace mx = mlx::core;

namespace mlx_bridge::cuda {

namespace {

// MLX 0.32.4's `cu::CudaBuffer`, which `allocator::Buffer::ptr()` points to.
struct CudaBufferLayout {
  void* data;
  std::size_t size;
  int device;
};

// The CUDA driver's C entry points used here (cuda.h). CUdeviceptr is a
// 64-bit integer; contexts and streams are opaque pointers; CUDA_SUCCESS is 0.
using CuDevicePtr = unsigned long long;
using CuCtxGetCurrent = int (*)(void** ctx);
using CuCtxSetCurrent = int (*)(void* ctx);
using CuDevicePrimaryCtxRetain = int (*)(void** ctx, int device);
using CuPointerGetAttribute = int (*)(void* data, int attribute, CuDevicePtr ptr);
using CuMemcpy = int (*)(CuDevicePtr dst, CuDevicePtr src, std::size_t bytes);
using CuStreamSynchronize = int (*)(void* stream);
using CuMemHostRegister = int (*)(void* p, std::size_t bytes, unsigned int flags);
using CuMemHostUnregister = int (*)(void* p);
constexpr int kRangeStartAddr = 11;  // CU_POINTER_ATTRIBUTE_RANGE_START_ADDR
constexpr int kRangeSize = 12;       // CU_POINTER_ATTRIBUTE_RANGE_SIZE

struct Driver {
  CuCtxGetCurrent ctx_get_current;
  CuCtxSetCurrent ctx_set_current;
  CuDevicePrimaryCtxRetain primary_ctx_retain;
  CuPointerGetAttribute pointer_get_attribute;
  CuMemcpy memcpy;
  CuStreamSynchronize stream_synchronize;
  CuMemHostRegister host_register;
  CuMemHostUnregister host_unregister;
};

template <typename F>
bool resolve(void* lib, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(lib, name));
  return out != nullptr;
}

// The driver, or null when the direct path does not apply.
const Driver* driver() {
  static const Driver* loaded = []() -> const Driver* {
    // MLX's CPU backend's buffers are not CudaBuffers.
    if (!backend_present()) return nullptr;
    // RTLD_NOLOAD: the driver libmlx already brought in, never a new one.
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (lib == nullptr) return nullptr;
    static Driver d{};
    bool ok = resolve(lib, "cuCtxGetCurrent", d.ctx_get_current) &&
              resolve(lib, "cuCtxSetCurrent", d.ctx_set_current) &&
              resolve(lib, "cuDevicePrimaryCtxRetain", d.primary_ctx_retain) &&
              resolve(lib, "cuPointerGetAttribute", d.pointer_get_attribute) &&
              resolve(lib, "cuMemcpy", d.memcpy) &&
              resolve(lib, "cuStreamSynchronize", d.stream_synchronize) &&
              resolve(lib, "cuMemHostRegister_v2", d.host_register) &&
              resolve(lib, "cuMemHostUnregister", d.host_unregister);
    return ok ? &d : nullptr;
  }();
  return loaded;
}

// Makes a context current on this thread when none is (MLX's runtime calls
// use the device's primary context); false when that fails.
bool ensure_context(const Driver& d) {
  void* ctx = nullptr;
  if (d.ctx_get_current(&ctx) != 0) return false;
  if (ctx != nullptr) return true;
  int device = 0;
  auto def = mx::default_device();
  if (def.type == mx::Device::DeviceType::gpu) device = def.index;
  return d.primary_ctx_retain(&ctx, device) == 0 && d.ctx_set_current(ctx) == 0;
}

}  // namespace

bool active() { return fast_paths::on(fast_paths::kDirectCopies) && driver() != nullptr; }

const char* device_bytes(const mx::array& a, std::size_t bytes) {
  const Driver* d = active() ? driver() : nullptr;
  if (d == nullptr || bytes < kMinDirectBytes || !ensure_context(*d)) return nullptr;
  if (!a.is_available()) return nullptr;  // not evaluated: no buffer yet
  auto* buf = static_cast<const CudaBufferLayout*>(a.buffer().ptr());
  if (buf == nullptr || buf->data == nullptr || a.offset() < 0) return nullptr;
  auto offset = static_cast<std::size_t>(a.offset());
  if (buf->size < offset || buf->size - offset < bytes) return nullptr;
  const char* start = static_cast<const char*>(buf->data) + offset;
  CuDevicePtr base = 0;
  std::size_t range = 0;
  auto at = reinterpret_cast<CuDevicePtr>(start);
  if (d->pointer_get_attribute(&base, kRangeStartAddr, at) != 0 ||
      d->pointer_get_attribute(&range, kRangeSize, at) != 0) {
    return nullptr;
  }
  if (at < base || at - base > range || range - (at - base) < bytes) return nullptr;
  return start;
}

bool copy(void* dst, const void* src, std::size_t bytes) {
  const Driver* d = driver();
  if (d == nullptr || !ensure_context(*d)) return false;
  return d->memcpy(reinterpret_cast<CuDevicePtr>(dst), reinterpret_cast<CuDevicePtr>(src),
                   bytes) == 0;
}

bool wait() {
  // A copy from pageable memory may return before its last DMA lands; the
  // copies run on the legacy stream, which MLX's streams do not wait for.
  const Driver* d = driver();
  return d != nullptr && ensure_context(*d) && d->stream_synchronize(nullptr) == 0;
}

std::optional<DeviceArray> device_array(mx::Shape shape, mx::Dtype dtype, std::size_t bytes) {
  if (!active() || bytes < kMinDirectBytes || !gpu_is_default()) return std::nullopt;
  mx::array a = mx::zeros(shape, dtype);
  a.eval();
  if (a.nbytes() != bytes) return std::nullopt;
  auto* data = const_cast<char*>(device_bytes(a, bytes));
  if (data == nullptr) return std::nullopt;
  // A constant from here on: its contents come from the host.
  a.detach();
  return DeviceArray{std::move(a), data};
}

bool pin(void* data, std::size_t bytes) {
  const Driver* d = driver();
  if (d == nullptr || !fast_paths::on(fast_paths::kPageLocking) || bytes == 0 ||
      !ensure_context(*d)) {
    return false;
  }
  return d->host_register(data, bytes, 0) == 0;
}

void unpin(void* data) {
  const Driver* d = driver();
  if (d != nullptr && ensure_context(*d)) d->host_unregister(data);
}

}  // namespace mlx_bridge::cuda
