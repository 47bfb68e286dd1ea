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

/// Whether large host transfers copy straight to and from device memory.
///
/// Under MLX's CUDA backend, reading an array on the host first moves its
/// buffer into managed memory, and arrays built from host bytes live there;
/// the pages then migrate one fault at a time. When the process runs on the
/// CUDA build of MLX, transfers of 8 MiB or more
/// ([`Array::from_bytes`](crate::Array::from_bytes), reading an array back,
/// [`HostArray`](crate::HostArray), whose buffers of 64 KiB or more are
/// also page-locked) instead copy with the CUDA driver between host memory and the
/// array's device buffer. False on the CPU build, or when
/// [`FastPaths::direct_copies`](crate::fast::FastPaths::direct_copies) is off
/// ([`FastPaths::page_locking`](crate::fast::FastPaths::page_locking) off keeps
/// host buffers pageable).
pub fn cuda_direct_copies_active() -> bool {
    ffi::cuda_direct_copies_active()
}

/// A memory limit for a scope: lowers the limit (never raises it) while the
/// guard lives and puts the previous limit back when the last guard is
/// dropped.
///
/// The limit is a guideline for graph evaluation: MLX allocates an array's
/// buffer when it queues the array's computation, so evaluating a large
/// graph can run far ahead of the device and hold the buffers of many
/// queued steps at once. Above the limit, evaluation waits for queued work
/// to finish before queuing more, which bounds that run-ahead (allocations
/// themselves never fail because of it).
///
/// Guards may overlap, on one thread or several: the limit in force is the
/// lowest of the live guards' limits and the limit before the first of them.
#[must_use = "the limit is restored when the guard is dropped"]
#[derive(Debug)]
pub struct MemoryLimitGuard {
    id: u64,
    previous: usize,
}

/// The live guards' limits and the limit before the first of them.
struct Guards {
    base: usize,
    next_id: u64,
    live: Vec<(u64, usize)>,
}

static GUARDS: std::sync::Mutex<Guards> = std::sync::Mutex::new(Guards {
    base: 0,
    next_id: 0,
    live: Vec::new(),
});

fn guards() -> std::sync::MutexGuard<'static, Guards> {
    // The state stays consistent even if a holder panicked (every update
    // is a single assignment or push/remove).
    GUARDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Guards {
    fn apply(&self) -> usize {
        let limit = self
            .live
            .iter()
            .map(|&(_, l)| l)
            .fold(self.base, usize::min);
        set_memory_limit(limit)
    }
}

impl MemoryLimitGuard {
    /// Lowers the limit to `bytes` (or keeps the current one if it is lower).
    pub fn new(bytes: usize) -> Self {
        let mut g = guards();
        if g.live.is_empty() {
            // Read the current limit (setting it back at once).
            let current = set_memory_limit(usize::MAX);
            set_memory_limit(current);
            g.base = current;
        }
        let id = g.next_id;
        g.next_id += 1;
        g.live.push((id, bytes));
        let previous = g.apply();
        MemoryLimitGuard { id, previous }
    }

    /// The limit in force just before this guard.
    pub fn previous(&self) -> usize {
        self.previous
    }
}

impl Drop for MemoryLimitGuard {
    fn drop(&mut self) {
        let mut g = guards();
        g.live.retain(|&(id, _)| id != self.id);
        g.apply();
    }
}
