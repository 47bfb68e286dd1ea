//! Gathering, scattering, sorting and selecting.

use mlx_ffi::ffi;

use crate::array::check;
use crate::ops::shape_ops::to_array_vec;
use crate::{Array, Error, Result};

impl Array {
    /// Gathers `indices` along `axis` (`None`: from the flattened array).
    #[track_caller]
    pub fn take(&self, indices: &Array, axis: Option<i32>) -> Result<Array> {
        check(
            "take",
            &[self, indices],
            ffi::take(self.raw(), indices.raw(), axis.unwrap_or(0), axis.is_none()),
        )
    }

    /// Gathers along `axis` with `indices` of the same rank (NumPy's `take_along_axis`).
    #[track_caller]
    pub fn take_along_axis(&self, indices: &Array, axis: i32) -> Result<Array> {
        check(
            "take_along_axis",
            &[self, indices],
            ffi::take_along_axis(self.raw(), indices.raw(), axis),
        )
    }

    /// A copy with `values` written at `indices` along `axis`.
    #[track_caller]
    pub fn put_along_axis(&self, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
        check(
            "put_along_axis",
            &[self, indices, values],
            ffi::put_along_axis(self.raw(), indices.raw(), values.raw(), axis),
        )
    }

    /// A copy with `values` added at `indices` along `axis` (duplicates accumulate).
    #[track_caller]
    pub fn scatter_add_axis(&self, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
        check(
            "scatter_add_axis",
            &[self, indices, values],
            ffi::scatter_add_axis(self.raw(), indices.raw(), values.raw(), axis),
        )
    }

    /// General scatter-add: `indices[i]` index axis `axes[i]`; `updates` has
    /// the broadcast index shape followed by the slice shape.
    #[track_caller]
    pub fn scatter_add(&self, indices: &[&Array], updates: &Array, axes: &[i32]) -> Result<Array> {
        let list = to_array_vec(indices);
        match list.as_ref() {
            Some(list) => check(
                "scatter_add",
                &[self, updates],
                ffi::scatter_add(self.raw(), list, updates.raw(), axes),
            ),
            None => Err(Error::Invalid {
                op: "scatter_add",
                message: "no index arrays".into(),
            }),
        }
    }

    /// Sorted copy along `axis`.
    #[track_caller]
    pub fn sort(&self, axis: i32) -> Result<Array> {
        check("sort", &[self], ffi::sort(self.raw(), axis, false))
    }

    /// Indices that sort along `axis` (`u32`).
    #[track_caller]
    pub fn argsort(&self, axis: i32) -> Result<Array> {
        check("argsort", &[self], ffi::sort(self.raw(), axis, true))
    }

    /// Partitions along `axis` so that element `kth` is in its sorted place.
    #[track_caller]
    pub fn partition(&self, kth: i32, axis: i32) -> Result<Array> {
        check(
            "partition",
            &[self],
            ffi::partition(self.raw(), kth, axis, false),
        )
    }

    /// Indices of [`Array::partition`] (`u32`).
    #[track_caller]
    pub fn argpartition(&self, kth: i32, axis: i32) -> Result<Array> {
        check(
            "argpartition",
            &[self],
            ffi::partition(self.raw(), kth, axis, true),
        )
    }

    /// The `k` largest values along `axis` (unordered).
    #[track_caller]
    pub fn topk(&self, k: i32, axis: i32) -> Result<Array> {
        check("topk", &[self], ffi::topk(self.raw(), k, axis))
    }
}
