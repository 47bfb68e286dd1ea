// Devices, streams and memory statistics.
#include "mlx-ffi/src/bridge.rs.h"
#include "cuda_transfer.h"
#include "fast_paths.h"

namespace mx = mlx::core;

namespace mlx_bridge {

namespace {
mx::Device to_device(DeviceSpec d) {
  return mx::Device(d.kind == 1 ? mx::Device::gpu : mx::Device::cpu, d.index);
}
DeviceSpec from_device(const mx::Device& d) {
  return DeviceSpec{d.type == mx::Device::gpu ? 1 : 0, d.index};
}
StreamSpec from_stream(const mx::Stream& s) { return StreamSpec{s.index, from_device(s.device)}; }
mx::Stream to_stream(StreamSpec s) { return mx::Stream(s.index, to_device(s.device)); }
}  // namespace

rust::String mlx_version() { return rust::String(mx::version()); }
DeviceSpec default_device() { return from_device(mx::default_device()); }
void set_default_device(DeviceSpec device) { mx::set_default_device(to_device(device)); }
bool device_available(DeviceSpec device) { return mx::is_available(to_device(device)); }

std::int32_t device_count(std::int32_t kind) {
  return mx::device_count(kind == 1 ? mx::Device::gpu : mx::Device::cpu);
}

StreamSpec default_stream(DeviceSpec device) { return from_stream(mx::default_stream(to_device(device))); }
StreamSpec new_stream(DeviceSpec device) { return from_stream(mx::new_stream(to_device(device))); }
void set_default_stream(StreamSpec stream) { mx::set_default_stream(to_stream(stream)); }
void synchronize(StreamSpec stream) { mx::synchronize(to_stream(stream)); }
void synchronize_default() { mx::synchronize(); }
std::size_t get_active_memory() { return mx::get_active_memory(); }
std::size_t get_peak_memory() { return mx::get_peak_memory(); }
std::size_t get_cache_memory() { return mx::get_cache_memory(); }
void reset_peak_memory() { mx::reset_peak_memory(); }
void clear_cache() { mx::clear_cache(); }
std::size_t set_memory_limit(std::size_t limit) { return mx::set_memory_limit(limit); }
std::size_t set_cache_limit(std::size_t limit) { return mx::set_cache_limit(limit); }
void set_fast_paths(std::uint32_t bits) { fast_paths::enabled().store(bits, std::memory_order_relaxed); }
std::uint32_t fast_paths_enabled() { return fast_paths::enabled().load(std::memory_order_relaxed); }
bool cuda_direct_copies_active() { return cuda::active(); }
bool cuda_pin_host(std::size_t address, std::size_t bytes) {
  return cuda::pin(reinterpret_cast<void*>(address), bytes);
}
void cuda_unpin_host(std::size_t address) { cuda::unpin(reinterpret_cast<void*>(address)); }

}  // namespace mlx_bridge
