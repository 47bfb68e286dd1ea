//! Shape manipulation: reshape, transpose, concatenate, split, slice, pad…

use mlx_ffi::ffi;

use crate::array::check;
use crate::{Array, Error, Result};

/// Builds the bridge's list type from arrays.
pub(crate) fn to_array_vec(arrays: &[&Array]) -> mlx_ffi::cxx::UniquePtr<ffi::ArrayVec> {
    let mut v = ffi::array_vec_new();
    for a in arrays {
        if let Some(pinned) = v.as_mut() {
            ffi::array_vec_push(pinned, a.raw());
        }
    }
    v
}

/// Unpacks the bridge's list type.
pub(crate) fn from_array_vec(v: &ffi::ArrayVec) -> Result<Vec<Array>> {
    (0..ffi::array_vec_len(v))
        .map(|i| {
            ffi::array_vec_get(v, i)
                .map(Array::from_raw)
                .map_err(|e| crate::array::mlx_error("array_list", &[], e))
        })
        .collect()
}

impl Array {
    /// The same elements with a new shape (one dimension may be -1).
    #[track_caller]
    pub fn reshape(&self, shape: &[i32]) -> Result<Array> {
        check("reshape", &[self], ffi::reshape(self.raw(), shape))
    }

    /// Permutes the axes.
    #[track_caller]
    pub fn transpose(&self, axes: &[i32]) -> Result<Array> {
        check(
            "transpose",
            &[self],
            ffi::transpose(self.raw(), axes, false),
        )
    }

    /// Reverses the order of all axes (the matrix transpose for 2-D).
    #[track_caller]
    pub fn t(&self) -> Result<Array> {
        check("t", &[self], ffi::transpose(self.raw(), &[], true))
    }

    /// Swaps two axes.
    #[track_caller]
    pub fn swapaxes(&self, axis1: i32, axis2: i32) -> Result<Array> {
        check("swapaxes", &[self], ffi::swapaxes(self.raw(), axis1, axis2))
    }

    /// Moves one axis to a new position.
    #[track_caller]
    pub fn moveaxis(&self, source: i32, destination: i32) -> Result<Array> {
        check(
            "moveaxis",
            &[self],
            ffi::moveaxis(self.raw(), source, destination),
        )
    }

    /// Inserts size-1 axes at `axes`.
    #[track_caller]
    pub fn expand_dims(&self, axes: &[i32]) -> Result<Array> {
        check("expand_dims", &[self], ffi::expand_dims(self.raw(), axes))
    }

    /// Removes the size-1 axes listed (all of them when `axes` is empty).
    #[track_caller]
    pub fn squeeze(&self, axes: &[i32]) -> Result<Array> {
        check(
            "squeeze",
            &[self],
            ffi::squeeze(self.raw(), axes, axes.is_empty()),
        )
    }

    /// Merges axes `start..=end` into one.
    #[track_caller]
    pub fn flatten(&self, start: i32, end: i32) -> Result<Array> {
        check("flatten", &[self], ffi::flatten(self.raw(), start, end))
    }

    /// Broadcasts to `shape` (a view).
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[i32]) -> Result<Array> {
        check(
            "broadcast_to",
            &[self],
            ffi::broadcast_to(self.raw(), shape),
        )
    }

    /// Splits into `parts` equal pieces along `axis`.
    #[track_caller]
    pub fn split(&self, parts: i32, axis: i32) -> Result<Vec<Array>> {
        let v = crate::array::check_with(
            "split",
            &[self],
            ffi::split_sections(self.raw(), parts, axis),
        )?;
        v.as_ref()
            .map(from_array_vec)
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Splits along `axis` before each of `indices`.
    #[track_caller]
    pub fn split_at(&self, indices: &[i32], axis: i32) -> Result<Vec<Array>> {
        let v = crate::array::check_with(
            "split_at",
            &[self],
            ffi::split_at(self.raw(), indices, axis),
        )?;
        v.as_ref()
            .map(from_array_vec)
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// The strided slice `start[i]..stop[i]` step `strides[i]` on every axis.
    #[track_caller]
    pub fn slice(&self, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<Array> {
        check(
            "slice",
            &[self],
            ffi::slice(self.raw(), start, stop, strides),
        )
    }

    /// Slices one axis with Python semantics for `start`/`stop` (negative
    /// values count from the end, out-of-range values are clamped) and a
    /// positive `step`.
    #[track_caller]
    pub fn slice_axis(&self, axis: i32, start: i32, stop: Option<i32>, step: i32) -> Result<Array> {
        let shape = self.shape();
        let ndim = shape.ndim() as i32;
        let ax = if axis < 0 { axis + ndim } else { axis };
        if !(0..ndim).contains(&ax) {
            return Err(Error::Invalid {
                op: "slice_axis",
                message: format!("axis {axis} is out of range for {}", self.describe()),
            });
        }
        if step <= 0 {
            return Err(Error::Invalid {
                op: "slice_axis",
                message: format!("step must be positive, got {step}"),
            });
        }
        let n = shape[ax as usize];
        let norm = |i: i32| if i < 0 { (i + n).max(0) } else { i.min(n) };
        let begin = norm(start);
        let end = norm(stop.unwrap_or(n)).max(begin);
        let mut starts = vec![0; ndim as usize];
        let mut stops = shape.0.clone();
        let mut strides = vec![1; ndim as usize];
        starts[ax as usize] = begin;
        stops[ax as usize] = end;
        strides[ax as usize] = step;
        self.slice(&starts, &stops, &strides)
    }

    /// `len` elements of `axis` starting at `start`.
    #[track_caller]
    pub fn narrow(&self, axis: i32, start: i32, len: i32) -> Result<Array> {
        self.slice_axis(axis, start, Some(start + len), 1)
    }

    /// A copy with the strided region `start..stop` step `strides` replaced by `update`.
    #[track_caller]
    pub fn slice_update(
        &self,
        update: &Array,
        start: &[i32],
        stop: &[i32],
        strides: &[i32],
    ) -> Result<Array> {
        check(
            "slice_update",
            &[self, update],
            ffi::slice_update(self.raw(), update.raw(), start, stop, strides),
        )
    }

    /// Pads `axes` with `low[i]` values before and `high[i]` after.
    #[track_caller]
    pub fn pad(&self, axes: &[i32], low: &[i32], high: &[i32], value: f64) -> Result<Array> {
        let v = self.scalar_like(value)?;
        check(
            "pad",
            &[self],
            ffi::pad(self.raw(), axes, low, high, v.raw()),
        )
    }

    /// Repeats each element `repeats` times along `axis` (`None`: flattened).
    #[track_caller]
    pub fn repeat(&self, repeats: i32, axis: Option<i32>) -> Result<Array> {
        check(
            "repeat",
            &[self],
            ffi::repeat(self.raw(), repeats, axis.unwrap_or(0), axis.is_none()),
        )
    }

    /// Tiles the array `reps[i]` times along each axis.
    #[track_caller]
    pub fn tile(&self, reps: &[i32]) -> Result<Array> {
        check("tile", &[self], ffi::tile(self.raw(), reps))
    }

    /// Rolls elements by `shift` along `axis` (`None`: flattened).
    #[track_caller]
    pub fn roll(&self, shift: i32, axis: Option<i32>) -> Result<Array> {
        check(
            "roll",
            &[self],
            ffi::roll(self.raw(), shift, axis.unwrap_or(0), axis.is_none()),
        )
    }
}

/// Joins arrays along an existing axis.
#[track_caller]
pub fn concatenate(arrays: &[&Array], axis: i32) -> Result<Array> {
    let v = to_array_vec(arrays);
    match v.as_ref() {
        Some(list) => check("concatenate", arrays, ffi::concatenate(list, axis)),
        None => Err(Error::Invalid {
            op: "concatenate",
            message: "no arrays".into(),
        }),
    }
}

/// Joins arrays along a new axis.
#[track_caller]
pub fn stack(arrays: &[&Array], axis: i32) -> Result<Array> {
    let v = to_array_vec(arrays);
    match v.as_ref() {
        Some(list) => check("stack", arrays, ffi::stack(list, axis)),
        None => Err(Error::Invalid {
            op: "stack",
            message: "no arrays".into(),
        }),
    }
}
