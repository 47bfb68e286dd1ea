//! The [`Array`] handle: construction, inspection, evaluation and read-back.

use std::fmt;
use std::panic::Location;

use mlx_ffi::cxx::{Exception, UniquePtr};
use mlx_ffi::ffi::{self, MlxArray};

use crate::{Dtype, Element, Error, Result, Shape};

/// An n-dimensional MLX array.
///
/// An `Array` is a handle to a node of MLX's lazy computation graph: building
/// it with an operation records the operation; its data exists once it is
/// evaluated ([`Array::eval`], [`eval`](crate::eval), or a read-back such as
/// [`Array::to_vec`] or [`Array::item`]).
///
/// `Clone` copies the handle, not the data (both handles see the same
/// buffer). `Array` is `Send` but not `Sync`: see the crate docs for the
/// thread contract.
pub struct Array {
    raw: UniquePtr<MlxArray>,
}

// SAFETY: an `mlx::core::array` is a reference-counted handle whose count is
// atomic; moving it to another thread is sound. It is not `Sync` because
// evaluation mutates the shared node without locking.
unsafe impl Send for Array {}

impl Clone for Array {
    fn clone(&self) -> Self {
        Array {
            raw: ffi::array_clone(self.raw()),
        }
    }
}

impl Array {
    /// Wraps a handle returned by the bridge. The bridge never returns null.
    pub(crate) fn from_raw(raw: UniquePtr<MlxArray>) -> Self {
        Array { raw }
    }

    /// The bridge handle (never null by construction).
    pub(crate) fn raw(&self) -> &MlxArray {
        // `UniquePtr`s here always come from `std::make_unique` on the C++ side.
        match self.raw.as_ref() {
            Some(raw) => raw,
            None => unreachable_null(),
        }
    }

    /// Builds an array from a slice and a shape; the data is copied.
    #[track_caller]
    pub fn from_slice<T: Element>(data: &[T], shape: &[i32]) -> Result<Array> {
        let expected = checked_numel("from_slice", shape)?;
        if expected != data.len() {
            return Err(Error::DataLength {
                op: "from_slice",
                len: data.len(),
                shape: shape.to_vec(),
                expected,
            });
        }
        let mut bytes = Vec::with_capacity(data.len() * T::DTYPE.size_of());
        for &value in data {
            value.extend_le_bytes(&mut bytes);
        }
        Self::from_bytes(&bytes, shape, T::DTYPE)
    }

    /// Builds a 1-D array from a vector (copied).
    #[track_caller]
    pub fn from_vec<T: Element>(data: Vec<T>) -> Result<Array> {
        let len = i32::try_from(data.len()).map_err(|_| Error::OutOfRange {
            op: "from_vec",
            what: "length",
            value: data.len() as i128,
        })?;
        Self::from_slice(&data, &[len])
    }

    /// Builds an array from little-endian bytes of the given dtype.
    #[track_caller]
    pub fn from_bytes(bytes: &[u8], shape: &[i32], dtype: Dtype) -> Result<Array> {
        check(
            "from_bytes",
            &[],
            ffi::array_from_bytes(bytes, shape, dtype.to_ffi()),
        )
    }

    /// A 1-D array of `dtype` holding the bytes of `parts` one after
    /// another: one allocation and one copy (spread over threads when
    /// large), however many parts. The parts' total length must be a whole
    /// number of elements.
    #[track_caller]
    pub fn from_byte_parts(parts: &[&[u8]], dtype: Dtype) -> Result<Array> {
        let ranges: Vec<usize> = parts
            .iter()
            .flat_map(|p| [p.as_ptr() as usize, p.len()])
            .collect();
        // SAFETY: every range is a live shared borrow for the whole call.
        let made = unsafe { ffi::array_from_byte_parts(&ranges, dtype.to_ffi()) };
        check("from_byte_parts", &[], made)
    }

    /// A 0-dimensional array holding `value`.
    #[track_caller]
    pub fn scalar<T: Element>(value: T) -> Result<Array> {
        Self::from_slice(&[value], &[])
    }

    /// A 0-dimensional array of `dtype` holding `value` (converted).
    #[track_caller]
    pub fn scalar_as(value: f64, dtype: Dtype) -> Result<Array> {
        check("scalar", &[], ffi::array_scalar_f64(value, dtype.to_ffi()))
    }

    /// A 0-dimensional array of `dtype` holding the integer `value` (converted).
    #[track_caller]
    pub fn scalar_int_as(value: i64, dtype: Dtype) -> Result<Array> {
        check("scalar", &[], ffi::array_scalar_i64(value, dtype.to_ffi()))
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        Shape(ffi::array_shape(self.raw()))
    }

    /// The size of dimension `axis` (negative counts from the end), if it exists.
    pub fn dim(&self, axis: i32) -> Option<i32> {
        let shape = ffi::array_shape(self.raw());
        let n = shape.len() as i32;
        let axis = if axis < 0 { axis + n } else { axis };
        (0..n).contains(&axis).then(|| shape[axis as usize])
    }

    /// The size of dimension `axis` (negative counts from the end), or an
    /// error naming the axis and the shape when the array has no such axis:
    /// for code that needs the size, where [`Array::dim`]'s `None` would
    /// otherwise become a silent 0.
    #[track_caller]
    pub fn axis_size(&self, axis: i32) -> Result<i32> {
        self.dim(axis).ok_or_else(|| crate::Error::Invalid {
            op: "axis_size",
            message: format!("no axis {axis} in an array of shape {}", self.shape()),
        })
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        ffi::array_ndim(self.raw())
    }

    /// Number of elements.
    pub fn size(&self) -> usize {
        ffi::array_size(self.raw())
    }

    /// Bytes of the logical data (`size * dtype.size_of()`).
    pub fn nbytes(&self) -> usize {
        ffi::array_nbytes(self.raw())
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        Dtype::from_ffi(ffi::array_dtype(self.raw()))
    }

    /// An identifier of the graph node (equal for clones of one handle).
    pub fn id(&self) -> usize {
        ffi::array_id(self.raw())
    }

    /// Evaluates the array (and what it depends on).
    #[track_caller]
    pub fn eval(&self) -> Result<()> {
        check_with("eval", &[self], ffi::array_eval(self.raw()))
    }

    /// Evaluates and returns the elements in row-major order as `T`,
    /// converting from the array's dtype when it differs. Views (transposes,
    /// broadcasts, strided slices) are read in logical order.
    #[track_caller]
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let source = if self.dtype() == T::DTYPE {
            self.clone()
        } else {
            self.as_type(T::DTYPE)?
        };
        let mut bytes = vec![0u8; source.nbytes()];
        check_with(
            "to_vec",
            &[self],
            ffi::array_to_bytes(source.raw(), &mut bytes),
        )?;
        let width = T::DTYPE.size_of();
        Ok(bytes.chunks_exact(width).map(T::from_le_bytes).collect())
    }

    /// Evaluates a one-element array and returns its value as `T`.
    #[track_caller]
    pub fn item<T: Element>(&self) -> Result<T> {
        if self.size() != 1 {
            return Err(Error::NotScalar {
                op: "item",
                expected: 1,
                shape: self.shape().0,
            });
        }
        let values = self.to_vec::<T>()?;
        values.into_iter().next().ok_or(Error::NotScalar {
            op: "item",
            expected: 1,
            shape: self.shape().0,
        })
    }

    /// The array's bytes in row-major order (evaluates).
    #[track_caller]
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.nbytes()];
        check_with(
            "to_bytes",
            &[self],
            ffi::array_to_bytes(self.raw(), &mut bytes),
        )?;
        Ok(bytes)
    }

    /// Writes the array's bytes in row-major order into `out` (evaluates);
    /// `out` must hold exactly [`Self::nbytes`] bytes.
    #[track_caller]
    pub fn write_bytes(&self, out: &mut [u8]) -> Result<()> {
        check_with("write_bytes", &[self], ffi::array_to_bytes(self.raw(), out))
    }

    /// Writes the array's bytes in row-major order into `outs`, one after
    /// another (evaluates); their lengths must add up to
    /// [`Self::nbytes`]. One read-back however many parts, spread over
    /// threads when large.
    #[track_caller]
    pub fn write_byte_parts(&self, outs: &mut [&mut [u8]]) -> Result<()> {
        let ranges: Vec<usize> = outs
            .iter_mut()
            .flat_map(|p| [p.as_mut_ptr() as usize, p.len()])
            .collect();
        // SAFETY: every range is a live exclusive borrow for the whole call,
        // so they are writable and do not overlap.
        let written = unsafe { ffi::array_to_byte_parts(self.raw(), &ranges) };
        check_with("write_byte_parts", &[self], written)
    }

    /// Short description like `f32[2, 3]`, used in error messages.
    pub fn describe(&self) -> String {
        format!("{}{}", self.dtype(), self.shape())
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array({})", self.describe())
    }
}

#[cold]
fn unreachable_null() -> ! {
    // Every handle is created by `std::make_unique` in the bridge; a null one
    // is a bug in this crate, not a user error.
    unreachable!("mlx-tensor: null array handle")
}

pub(crate) fn checked_numel(op: &'static str, shape: &[i32]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in shape {
        if d < 0 {
            return Err(Error::OutOfRange {
                op,
                what: "dimension",
                value: d as i128,
            });
        }
        n = n.checked_mul(d as usize).ok_or(Error::OutOfRange {
            op,
            what: "element count",
            value: i128::MAX,
        })?;
    }
    Ok(n)
}

/// Converts a bridge result into an `Array`, attaching the op, its inputs and
/// the caller's location to an MLX exception.
#[track_caller]
pub(crate) fn check(
    op: &'static str,
    inputs: &[&Array],
    result: std::result::Result<UniquePtr<MlxArray>, Exception>,
) -> Result<Array> {
    let location = Location::caller();
    result
        .map(Array::from_raw)
        .map_err(|e| mlx_error_at(op, inputs, e, location))
}

/// Like [`check`] for bridge calls that return something else.
#[track_caller]
pub(crate) fn check_with<T>(
    op: &'static str,
    inputs: &[&Array],
    result: std::result::Result<T, Exception>,
) -> Result<T> {
    let location = Location::caller();
    result.map_err(|e| mlx_error_at(op, inputs, e, location))
}

#[track_caller]
pub(crate) fn mlx_error(op: &'static str, inputs: &[&Array], e: Exception) -> Error {
    mlx_error_at(op, inputs, e, Location::caller())
}

pub(crate) fn mlx_error_at(
    op: &'static str,
    inputs: &[&Array],
    e: Exception,
    location: &'static Location<'static>,
) -> Error {
    let inputs = inputs
        .iter()
        .map(|a| a.describe())
        .collect::<Vec<_>>()
        .join(", ");
    let message = e.what().to_string();
    // Errors raised by Rust closures inside transformations come back with
    // their own text; keep it as is.
    Error::Mlx {
        op,
        inputs,
        message,
        location,
    }
}
