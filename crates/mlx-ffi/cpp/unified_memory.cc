// Bulk page migration for CUDA unified memory.
//
// Under MLX's CUDA backend, every buffer the host writes or reads lives in
// managed memory, which otherwise migrates between host and device one page
// fault at a time (about 10 GB/s on an H200). Large transfers (optimizer state
// kept on the host, checkpoints) prefetch the whole range first, which the
// driver moves in bulk. The CUDA driver is used only when the process has
// already loaded it (the CUDA build of libmlx links it); with the CPU build,
// or when `MLX_FFI_UNIFIED_PREFETCH=0`, every call here does nothing.
#include "unified_memory.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

#include "mlx/mlx.h"

namespace mlx_bridge::unified {

namespace {

// The CUDA driver's stable C entry points used here (cuda.h, CUDA 11+).
// CUdeviceptr is a 64-bit integer, CUdevice an int, contexts and streams are
// opaque pointers; CUDA_SUCCESS is 0 and CU_DEVICE_CPU is -1.
using CuCtxGetCurrent = int (*)(void** ctx);
using CuCtxSetCurrent = int (*)(void* ctx);
using CuCtxGetDevice = int (*)(int* device);
using CuDevicePrimaryCtxRetain = int (*)(void** ctx, int device);
using CuMemPrefetchAsync = int (*)(unsigned long long ptr, std::size_t bytes, int device,
                                   void* stream);
using CuStreamSynchronize = int (*)(void* stream);
constexpr int kCpu = -1;

struct Driver {
  CuCtxGetCurrent ctx_get_current;
  CuCtxSetCurrent ctx_set_current;
  CuCtxGetDevice ctx_get_device;
  CuDevicePrimaryCtxRetain primary_ctx_retain;
  CuMemPrefetchAsync prefetch;
  CuStreamSynchronize stream_synchronize;
};

template <typename F>
bool resolve(void* lib, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(lib, name));
  return out != nullptr;
}

// The driver's entry points, or null when the process has no CUDA driver
// loaded, a symbol is missing, or prefetching is switched off.
const Driver* driver() {
  static const Driver* loaded = []() -> const Driver* {
    const char* setting = std::getenv("MLX_FFI_UNIFIED_PREFETCH");
    if (setting != nullptr && std::strcmp(setting, "0") == 0) return nullptr;
    // RTLD_NOLOAD: only a driver libmlx already brought in, never a new one.
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (lib == nullptr) return nullptr;
    static Driver d{};
    bool ok = resolve(lib, "cuCtxGetCurrent", d.ctx_get_current) &&
              resolve(lib, "cuCtxSetCurrent", d.ctx_set_current) &&
              resolve(lib, "cuCtxGetDevice", d.ctx_get_device) &&
              resolve(lib, "cuDevicePrimaryCtxRetain", d.primary_ctx_retain) &&
              resolve(lib, "cuMemPrefetchAsync", d.prefetch) &&
              resolve(lib, "cuStreamSynchronize", d.stream_synchronize);
    return ok ? &d : nullptr;
  }();
  return loaded;
}

// Makes the default GPU's primary context current on this thread (MLX's
// runtime calls use it) and returns its device, or -2 when that fails.
int current_device(const Driver& d) {
  void* ctx = nullptr;
  if (d.ctx_get_current(&ctx) != 0) return -2;
  if (ctx == nullptr) {
    if (d.primary_ctx_retain(&ctx, 0) != 0 || d.ctx_set_current(ctx) != 0) return -2;
  }
  int device = -2;
  if (d.ctx_get_device(&device) != 0) return -2;
  return device;
}

// Migrates [data, data + bytes) to `where` (a device, or the host for -1)
// and waits for it. A range that is not managed memory, or any driver error,
// leaves the pages where they are: the copy that follows still works, page
// by page.
void prefetch(const void* data, std::size_t bytes, bool to_host) {
  if (data == nullptr || bytes < kMinPrefetchBytes) return;
  const Driver* d = driver();
  if (d == nullptr) return;
  int device = current_device(*d);
  if (device < 0) return;
  int where = to_host ? kCpu : device;
  if (d->prefetch(reinterpret_cast<unsigned long long>(data), bytes, where, nullptr) == 0) {
    d->stream_synchronize(nullptr);
  }
}

}  // namespace

bool available() { return driver() != nullptr; }

void prefetch_to_host(const void* data, std::size_t bytes) { prefetch(data, bytes, true); }

void prefetch_to_device(const void* data, std::size_t bytes) {
  // Arrays on a CPU stream would only fault their pages back.
  if (mlx::core::default_device().type != mlx::core::Device::DeviceType::gpu) return;
  prefetch(data, bytes, false);
}

}  // namespace mlx_bridge::unified
