//! Reductions, scans and normalisations over axes.

use mlx_ffi::ffi::{self, ReduceOp, ScanOp};

use crate::array::check;
use crate::{Array, Axes, Result};

macro_rules! reductions {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {
        impl Array {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $name(&self, axes: impl Into<Axes>, keepdims: bool) -> Result<Array> {
                    let axes = axes.into();
                    let (list, all) = axes.parts();
                    check(stringify!($name), &[self], ffi::reduce(ReduceOp::$op, self.raw(), list, all, keepdims))
                }
            )*
        }
    };
}

reductions! {
    /// Sum over `axes` (`Axes::All` for every axis).
    sum => Sum;
    /// Mean over `axes`.
    mean => Mean;
    /// Product over `axes`.
    prod => Prod;
    /// Maximum over `axes`.
    max => Max;
    /// Minimum over `axes`.
    min => Min;
    /// Whether all elements over `axes` are true.
    all => All;
    /// Whether any element over `axes` is true.
    any => Any;
    /// `log(sum(exp(x)))` over `axes`, computed stably.
    logsumexp => LogSumExp;
}

macro_rules! scans {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {
        impl Array {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $name(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
                    check(stringify!($name), &[self], ffi::scan(ScanOp::$op, self.raw(), axis, reverse, inclusive))
                }
            )*
        }
    };
}

scans! {
    /// Cumulative sum along `axis`.
    cumsum => CumSum;
    /// Cumulative product along `axis`.
    cumprod => CumProd;
    /// Cumulative maximum along `axis`.
    cummax => CumMax;
    /// Cumulative minimum along `axis`.
    cummin => CumMin;
    /// Cumulative `logsumexp` along `axis`.
    logcumsumexp => LogCumSumExp;
}

impl Array {
    /// Variance over `axes` with `ddof` delta degrees of freedom (1 = Bessel).
    #[track_caller]
    pub fn var(&self, axes: impl Into<Axes>, keepdims: bool, ddof: i32) -> Result<Array> {
        let axes = axes.into();
        let (list, all) = axes.parts();
        check(
            "var",
            &[self],
            ffi::var_std(self.raw(), list, all, keepdims, ddof, false),
        )
    }

    /// Standard deviation over `axes` with `ddof` delta degrees of freedom.
    #[track_caller]
    pub fn std(&self, axes: impl Into<Axes>, keepdims: bool, ddof: i32) -> Result<Array> {
        let axes = axes.into();
        let (list, all) = axes.parts();
        check(
            "std",
            &[self],
            ffi::var_std(self.raw(), list, all, keepdims, ddof, true),
        )
    }

    /// Index of the maximum along `axis` (`None`: over the flattened array). `u32`.
    #[track_caller]
    pub fn argmax(&self, axis: Option<i32>, keepdims: bool) -> Result<Array> {
        check(
            "argmax",
            &[self],
            ffi::arg_reduce(
                self.raw(),
                axis.unwrap_or(0),
                axis.is_none(),
                keepdims,
                true,
            ),
        )
    }

    /// Index of the minimum along `axis` (`None`: over the flattened array). `u32`.
    #[track_caller]
    pub fn argmin(&self, axis: Option<i32>, keepdims: bool) -> Result<Array> {
        check(
            "argmin",
            &[self],
            ffi::arg_reduce(
                self.raw(),
                axis.unwrap_or(0),
                axis.is_none(),
                keepdims,
                false,
            ),
        )
    }

    /// Softmax over `axes`. With `precise`, low-precision inputs are
    /// accumulated in `f32`.
    #[track_caller]
    pub fn softmax(&self, axes: impl Into<Axes>, precise: bool) -> Result<Array> {
        let axes = axes.into();
        let (list, all) = axes.parts();
        let op = if precise {
            ReduceOp::SoftmaxPrecise
        } else {
            ReduceOp::Softmax
        };
        check(
            "softmax",
            &[self],
            ffi::reduce(op, self.raw(), list, all, false),
        )
    }

    /// `x - logsumexp(x)` over `axes` (a log-softmax). With `precise`, the
    /// computation runs in `f32` for low-precision inputs and the result is
    /// cast back.
    #[track_caller]
    pub fn log_softmax(&self, axes: impl Into<Axes>, precise: bool) -> Result<Array> {
        let axes = axes.into();
        let dtype = self.dtype();
        let low_precision = matches!(dtype, crate::Dtype::F16 | crate::Dtype::BF16);
        let x = if precise && low_precision {
            self.as_type(crate::Dtype::F32)?
        } else {
            self.clone()
        };
        let out = x.subtract(&x.logsumexp(axes, true)?)?;
        if precise && low_precision {
            out.as_type(dtype)
        } else {
            Ok(out)
        }
    }
}
