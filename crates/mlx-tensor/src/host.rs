//! Copies of arrays in ordinary host memory, outside MLX's allocator.
//!
//! A [`HostArray`] holds an array's bytes in a host buffer of its own: it takes no
//! device memory and does not count in [`memory::active_memory`](crate::memory::active_memory).
//! Moving state that is idle most of the time (optimizer moments between
//! updates) to the host and back frees device memory for the work in
//! between, at the cost of one copy each way.

use crate::host_buffer::HostBuffer;
use crate::{Array, Dtype, Error, Result};

/// An array's shape, dtype and row-major little-endian bytes, in host memory.
///
/// Under MLX's CUDA backend a buffer of 64 KiB or more has its pages to
/// itself and is page-locked while the host array lives, so copies to and
/// from the device run at full bus speed (see [`memory::cuda_direct_copies_active`](crate::memory::cuda_direct_copies_active)).
pub struct HostArray {
    bytes: HostBuffer,
    shape: Vec<i32>,
    dtype: Dtype,
}

impl HostArray {
    fn new(bytes: HostBuffer, shape: Vec<i32>, dtype: Dtype) -> HostArray {
        HostArray {
            bytes,
            shape,
            dtype,
        }
    }
}

impl Clone for HostArray {
    fn clone(&self) -> HostArray {
        HostArray::new(self.bytes.clone(), self.shape.clone(), self.dtype)
    }
}

impl PartialEq for HostArray {
    fn eq(&self, other: &HostArray) -> bool {
        self.dtype == other.dtype && self.shape == other.shape && self.bytes[..] == other.bytes[..]
    }
}

impl Eq for HostArray {}

impl HostArray {
    /// Copies `array` to the host (evaluating it first).
    pub fn from_array(array: &Array) -> Result<HostArray> {
        // Locked before the copy, which then runs at bus speed.
        let mut host = HostArray::zeros(array.shape().0, array.dtype())?;
        array.write_bytes(&mut host.bytes)?;
        Ok(host)
    }

    /// A host array of zeros of `shape` and `dtype`.
    pub fn zeros(shape: Vec<i32>, dtype: Dtype) -> Result<HostArray> {
        let nbytes = Self::nbytes_of(&shape, dtype).ok_or_else(|| Error::Invalid {
            op: "HostArray::zeros",
            message: format!("{dtype}{shape:?} holds an impossible number of bytes"),
        })?;
        Ok(HostArray::new(HostBuffer::zeroed(nbytes)?, shape, dtype))
    }

    /// Copies `array` into this host copy, reusing its buffer when the
    /// sizes agree (no new host allocation on repeated copies of arrays of
    /// one shape).
    pub fn copy_from(&mut self, array: &Array) -> Result<()> {
        let nbytes = array.nbytes();
        if self.bytes.len() != nbytes {
            *self = HostArray::from_array(array)?;
            return Ok(());
        }
        array.write_bytes(&mut self.bytes)?;
        self.shape = array.shape().0;
        self.dtype = array.dtype();
        Ok(())
    }

    /// A new MLX array with these elements.
    pub fn to_array(&self) -> Result<Array> {
        Array::from_bytes(&self.bytes, &self.shape, self.dtype)
    }

    /// The shape.
    pub fn shape(&self) -> &[i32] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The row-major little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, writable in place (their length, shape and dtype stay).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// Bytes held (`size * dtype.size_of()`).
    pub fn nbytes(&self) -> usize {
        self.bytes.len()
    }

    /// Builds a host array from raw parts, checking that `bytes` has the
    /// length `shape` and `dtype` call for.
    pub fn from_parts(bytes: Vec<u8>, shape: Vec<i32>, dtype: Dtype) -> Result<HostArray> {
        let expected = Self::nbytes_of(&shape, dtype);
        if expected != Some(bytes.len()) {
            return Err(Error::Invalid {
                op: "HostArray::from_parts",
                message: format!(
                    "{dtype}{shape:?} needs {} bytes, got {}",
                    expected.map_or_else(|| "an impossible number of".into(), |n| n.to_string()),
                    bytes.len()
                ),
            });
        }
        Ok(HostArray::new(HostBuffer::copy_of(&bytes)?, shape, dtype))
    }

    /// The bytes an array of `shape` and `dtype` holds; `None` for negative
    /// dimensions or an overflowing count.
    fn nbytes_of(shape: &[i32], dtype: Dtype) -> Option<usize> {
        shape
            .iter()
            .try_fold(1usize, |n, &d| {
                usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
            })
            .and_then(|n| n.checked_mul(dtype.size_of()))
    }
}

impl std::fmt::Debug for HostArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostArray({}{:?})", self.dtype, self.shape)
    }
}
