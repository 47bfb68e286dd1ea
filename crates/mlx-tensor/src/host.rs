//! Copies of arrays in ordinary host memory, outside MLX's allocator.
//!
//! A [`HostArray`] holds an array's bytes in a Rust `Vec`: it takes no
//! device memory and does not count in [`memory::active_memory`](crate::memory::active_memory).
//! Moving state that is idle most of the time (optimizer moments between
//! updates) to the host and back frees device memory for the work in
//! between, at the cost of one copy each way.

use std::sync::Arc;

use mlx_ffi::{ffi, HostBytes};

use crate::array::check;
use crate::{Array, Dtype, Error, Result};

/// An array's shape, dtype and row-major little-endian bytes, in host memory.
///
/// The bytes are shared with the lazy arrays made by
/// [`HostArray::to_array`] until those are evaluated; writing to a host
/// array that such an array still shares copies the bytes first, so the
/// lazy array always loads the values it was made from.
#[derive(Clone, PartialEq, Eq)]
pub struct HostArray {
    bytes: Arc<Vec<u8>>,
    shape: Vec<i32>,
    dtype: Dtype,
}

impl HostArray {
    /// Copies `array` to the host (evaluating it first).
    pub fn from_array(array: &Array) -> Result<HostArray> {
        Ok(HostArray {
            bytes: Arc::new(array.to_bytes()?),
            shape: array.shape().0,
            dtype: array.dtype(),
        })
    }

    /// Copies `array` into this host copy, reusing its buffer when the
    /// sizes agree and no lazy array shares it (no new host allocation on
    /// repeated copies of arrays of one shape).
    pub fn copy_from(&mut self, array: &Array) -> Result<()> {
        let nbytes = array.nbytes();
        let Some(bytes) = Arc::get_mut(&mut self.bytes).filter(|b| b.len() == nbytes) else {
            *self = HostArray::from_array(array)?;
            return Ok(());
        };
        array.write_bytes(bytes)?;
        self.shape = array.shape().0;
        self.dtype = array.dtype();
        Ok(())
    }

    /// A new MLX array with these elements, loaded when it is evaluated:
    /// one copy from host memory into a buffer of its own (on a GPU,
    /// straight into device memory). It shares these bytes until then.
    pub fn to_array(&self) -> Result<Array> {
        HostArray::load(&[self], &self.shape, self.dtype)
    }

    /// A 1-D array of `dtype` holding the bytes of `parts` one after
    /// another, loaded when it is evaluated like [`HostArray::to_array`]:
    /// one allocation and one copy however many parts. The parts' total
    /// length must be a whole number of elements of `dtype`.
    pub fn concat_to_array(parts: &[&HostArray], dtype: Dtype) -> Result<Array> {
        let total: usize = parts.iter().map(|p| p.nbytes()).sum();
        let elements = i32::try_from(total / dtype.size_of()).map_err(|_| Error::Invalid {
            op: "HostArray::concat_to_array",
            message: format!("{total} bytes are too many elements for one array"),
        })?;
        if total % dtype.size_of() != 0 {
            return Err(Error::Invalid {
                op: "HostArray::concat_to_array",
                message: format!(
                    "{total} bytes are not whole elements of {dtype} ({} bytes)",
                    dtype.size_of()
                ),
            });
        }
        HostArray::load(parts, &[elements], dtype)
    }

    fn load(parts: &[&HostArray], shape: &[i32], dtype: Dtype) -> Result<Array> {
        if parts.iter().all(|p| p.bytes.is_empty()) {
            // Nothing to load: an empty array made at once.
            return Array::from_bytes(&[], shape, dtype);
        }
        let bytes = HostBytes(parts.iter().map(|p| Arc::clone(&p.bytes)).collect());
        check(
            "HostArray::to_array",
            &[],
            ffi::array_load_host(Box::new(bytes), shape, dtype.to_ffi()),
        )
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

    /// The bytes, writable in place (their length, shape and dtype stay;
    /// copied first if a lazy array made by [`HostArray::to_array`] still
    /// shares them).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        Arc::make_mut(&mut self.bytes).as_mut_slice()
    }

    /// Bytes held (`size * dtype.size_of()`).
    pub fn nbytes(&self) -> usize {
        self.bytes.len()
    }

    /// Builds a host array from raw parts, checking that `bytes` has the
    /// length `shape` and `dtype` call for.
    pub fn from_parts(bytes: Vec<u8>, shape: Vec<i32>, dtype: Dtype) -> Result<HostArray> {
        let elements = shape.iter().try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        });
        let expected = elements.and_then(|n| n.checked_mul(dtype.size_of()));
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
        Ok(HostArray {
            bytes: Arc::new(bytes),
            shape,
            dtype,
        })
    }
}

impl std::fmt::Debug for HostArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostArray({}{:?})", self.dtype, self.shape)
    }
}
