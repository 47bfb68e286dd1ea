//! The byte buffer behind a [`HostArray`](crate::HostArray).
//!
//! Under MLX's CUDA backend a buffer of [`PINNABLE_BYTES`] or more is
//! page-locked for its whole life, so the CUDA driver copies it at bus speed
//! instead of staging it through its own buffers. Locking works on whole
//! pages, and two locked ranges may not share one, so such a buffer gets an
//! allocation of its own, aligned to and padded to [`PINNABLE_BYTES`] (a
//! multiple of every page size Linux uses). Smaller buffers are ordinary,
//! unlocked heap allocations.

use std::alloc::{self, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use mlx_ffi::ffi;

use crate::{Error, Result};

/// The size from which a host buffer is page-locked under MLX's CUDA
/// backend, and its alignment.
pub(crate) const PINNABLE_BYTES: usize = 64 << 10;

/// Zero-initialised bytes on the host, in an allocation of their own.
pub(crate) struct HostBuffer {
    ptr: NonNull<u8>,
    len: usize,
    /// Whether the allocation is page-locked (unlocked before it is freed).
    locked: bool,
}

// SAFETY: `HostBuffer` owns its allocation exclusively, as `Vec<u8>` does.
unsafe impl Send for HostBuffer {}
// SAFETY: shared access only reads through `&[u8]`.
unsafe impl Sync for HostBuffer {}

impl HostBuffer {
    /// `len` zero bytes; an error (not an abort) when the allocation fails.
    pub(crate) fn zeroed(len: usize) -> Result<HostBuffer> {
        let layout = Self::layout(len)?;
        // SAFETY: `layout` has a non-zero size (at least its alignment).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| Error::Invalid {
            op: "HostArray",
            message: format!("could not allocate {len} bytes of host memory"),
        })?;
        let locked = len >= PINNABLE_BYTES
            && ffi::cuda_direct_copies_active()
            // SAFETY: the range is this new allocation, which shares no page
            // with another buffer and stays allocated until `drop` unlocks
            // it.
            && unsafe { ffi::cuda_pin_host(ptr.as_ptr() as usize, len) };
        Ok(HostBuffer { ptr, len, locked })
    }

    /// A copy of `bytes`.
    pub(crate) fn copy_of(bytes: &[u8]) -> Result<HostBuffer> {
        let mut out = HostBuffer::zeroed(bytes.len())?;
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// The allocation for `len` bytes: [`PINNABLE_BYTES`]-aligned and
    /// padded to a multiple of it from that size on, else byte-aligned
    /// (never of size zero).
    fn layout(len: usize) -> Result<Layout> {
        let align = if len >= PINNABLE_BYTES {
            PINNABLE_BYTES
        } else {
            1
        };
        len.max(1)
            .checked_next_multiple_of(align)
            .and_then(|size| Layout::from_size_align(size, align).ok())
            .ok_or_else(|| Error::Invalid {
                op: "HostArray",
                message: format!("{len} bytes are more than a host buffer can hold"),
            })
    }
}

impl Clone for HostBuffer {
    /// Like `Vec::clone`, aborts through `handle_alloc_error` when the
    /// allocation fails.
    fn clone(&self) -> HostBuffer {
        match HostBuffer::copy_of(self) {
            Ok(copy) => copy,
            Err(_) => match Self::layout(self.len) {
                Ok(layout) => alloc::handle_alloc_error(layout),
                // Unreachable: `self` was allocated with this layout.
                Err(_) => alloc::handle_alloc_error(Layout::new::<u8>()),
            },
        }
    }
}

impl Deref for HostBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to an initialised allocation of at least
        // `len` bytes that lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for HostBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        if self.locked {
            // SAFETY: the allocation was locked by `zeroed` and is still
            // allocated.
            unsafe { ffi::cuda_unpin_host(self.ptr.as_ptr() as usize) };
        }
        // The layout was valid when the buffer was made, so it still is.
        if let Ok(layout) = Self::layout(self.len) {
            // SAFETY: `ptr` was allocated with this layout and is freed once.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_own_whole_aligned_blocks() -> Result<()> {
        for len in [
            0,
            1,
            4095,
            PINNABLE_BYTES - 1,
            PINNABLE_BYTES,
            3 * PINNABLE_BYTES + 5,
        ] {
            let mut b = HostBuffer::zeroed(len)?;
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
            b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8);
            let c = HostBuffer::copy_of(&b)?;
            assert_eq!(&c[..], &b[..]);
            if len >= PINNABLE_BYTES {
                assert_eq!(b.as_ptr() as usize % PINNABLE_BYTES, 0);
                let layout = HostBuffer::layout(len)?;
                assert_eq!(layout.size() % PINNABLE_BYTES, 0);
                assert!(layout.size() >= len);
            }
        }
        Ok(())
    }

    #[test]
    fn impossible_sizes_are_errors() {
        assert!(HostBuffer::zeroed(usize::MAX - 10).is_err());
    }
}
