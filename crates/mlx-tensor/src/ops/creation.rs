//! Arrays built from nothing: zeros, ones, ranges, identity matrices.

use mlx_ffi::ffi;

use crate::array::check;
use crate::{Array, Dtype, Result};

impl Array {
    /// An array of `shape` filled with `value` (converted to `dtype`).
    #[track_caller]
    pub fn full(shape: &[i32], value: f64, dtype: Dtype) -> Result<Array> {
        let v = Array::scalar_as(value, dtype)?;
        check("full", &[], ffi::full(shape, v.raw(), dtype.to_ffi()))
    }

    /// Zeros of `shape` and `dtype`.
    #[track_caller]
    pub fn zeros(shape: &[i32], dtype: Dtype) -> Result<Array> {
        Self::full(shape, 0.0, dtype)
    }

    /// Ones of `shape` and `dtype`.
    #[track_caller]
    pub fn ones(shape: &[i32], dtype: Dtype) -> Result<Array> {
        Self::full(shape, 1.0, dtype)
    }

    /// Zeros with this array's shape and dtype.
    #[track_caller]
    pub fn zeros_like(&self) -> Result<Array> {
        Self::zeros(&self.shape(), self.dtype())
    }

    /// Ones with this array's shape and dtype.
    #[track_caller]
    pub fn ones_like(&self) -> Result<Array> {
        Self::ones(&self.shape(), self.dtype())
    }

    /// `start, start + step, …` up to (excluding) `stop`.
    #[track_caller]
    pub fn arange(start: f64, stop: f64, step: f64, dtype: Dtype) -> Result<Array> {
        check(
            "arange",
            &[],
            ffi::arange(start, stop, step, dtype.to_ffi()),
        )
    }

    /// `num` evenly spaced values from `start` to `stop` (inclusive).
    #[track_caller]
    pub fn linspace(start: f64, stop: f64, num: i32, dtype: Dtype) -> Result<Array> {
        check(
            "linspace",
            &[],
            ffi::linspace(start, stop, num, dtype.to_ffi()),
        )
    }

    /// An `n × m` matrix with ones on diagonal `k`.
    #[track_caller]
    pub fn eye(n: i32, m: i32, k: i32, dtype: Dtype) -> Result<Array> {
        check("eye", &[], ffi::eye(n, m, k, dtype.to_ffi()))
    }

    /// An `n × m` matrix with ones on and below diagonal `k`.
    #[track_caller]
    pub fn tri(n: i32, m: i32, k: i32, dtype: Dtype) -> Result<Array> {
        check("tri", &[], ffi::tri(n, m, k, dtype.to_ffi()))
    }

    /// Zeroes the elements above diagonal `k` of the last two axes.
    #[track_caller]
    pub fn tril(&self, k: i32) -> Result<Array> {
        check("tril", &[self], ffi::tril(self.raw(), k, false))
    }

    /// Zeroes the elements below diagonal `k` of the last two axes.
    #[track_caller]
    pub fn triu(&self, k: i32) -> Result<Array> {
        check("triu", &[self], ffi::tril(self.raw(), k, true))
    }
}
