//! Memory statistics and limits of MLX's allocator.

use mlx_ffi::ffi;

/// Bytes held by live arrays.
pub fn active_memory() -> usize {
    ffi::get_active_memory()
}

/// The highest [`active_memory`] since start or the last [`reset_peak_memory`].
pub fn peak_memory() -> usize {
    ffi::get_peak_memory()
}

/// Bytes freed by arrays but kept by the allocator for reuse.
pub fn cache_memory() -> usize {
    ffi::get_cache_memory()
}

/// Resets [`peak_memory`].
pub fn reset_peak_memory() {
    ffi::reset_peak_memory();
}

/// Returns cached buffers to the system.
pub fn clear_cache() {
    ffi::clear_cache();
}

/// Sets the memory limit (a guideline for graph evaluation); returns the previous one.
pub fn set_memory_limit(bytes: usize) -> usize {
    ffi::set_memory_limit(bytes)
}

/// Sets the cache limit; returns the previous one.
pub fn set_cache_limit(bytes: usize) -> usize {
    ffi::set_cache_limit(bytes)
}
