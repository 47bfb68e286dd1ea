//! Element-wise arithmetic, math functions, comparisons and logic.

use mlx_ffi::ffi::{self, BinaryOp, UnaryOp};

use crate::array::check;
use crate::{Array, Dtype, Result};

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {
        impl Array {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $name(&self) -> Result<Array> {
                    check(stringify!($name), &[self], ffi::unary(UnaryOp::$op, self.raw()))
                }
            )*
        }
    };
}

macro_rules! binary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {
        impl Array {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $name(&self, other: &Array) -> Result<Array> {
                    check(stringify!($name), &[self, other], ffi::binary(BinaryOp::$op, self.raw(), other.raw()))
                }
            )*
        }
    };
}

unary_methods! {
    /// Absolute value.
    abs => Abs;
    /// Negation.
    negative => Negative;
    /// Sign (-1, 0 or 1).
    sign => Sign;
    /// Logical not (result is bool).
    logical_not => LogicalNot;
    /// `1 / x`.
    reciprocal => Reciprocal;
    /// Floor.
    floor => Floor;
    /// Ceiling.
    ceil => Ceil;
    /// `x * x`.
    square => Square;
    /// Square root.
    sqrt => Sqrt;
    /// `1 / sqrt(x)`.
    rsqrt => Rsqrt;
    /// `e^x`.
    exp => Exp;
    /// `e^x - 1`, accurate near 0.
    expm1 => Expm1;
    /// Natural logarithm.
    log => Log;
    /// Base-2 logarithm.
    log2 => Log2;
    /// Base-10 logarithm.
    log10 => Log10;
    /// `ln(1 + x)`, accurate near 0.
    log1p => Log1p;
    /// Sine.
    sin => Sin;
    /// Cosine.
    cos => Cos;
    /// Tangent.
    tan => Tan;
    /// Hyperbolic tangent.
    tanh => Tanh;
    /// Hyperbolic sine.
    sinh => Sinh;
    /// Hyperbolic cosine.
    cosh => Cosh;
    /// Inverse sine.
    arcsin => ArcSin;
    /// Inverse cosine.
    arccos => ArcCos;
    /// Inverse tangent.
    arctan => ArcTan;
    /// Logistic sigmoid `1 / (1 + e^-x)`.
    sigmoid => Sigmoid;
    /// Error function.
    erf => Erf;
    /// Inverse error function.
    erfinv => ErfInv;
    /// The same values with no gradient flowing back through them.
    stop_gradient => StopGradient;
    /// Whether each element is NaN.
    is_nan => IsNan;
    /// Whether each element is ±infinity.
    is_inf => IsInf;
    /// Whether each element is finite.
    is_finite => IsFinite;
    /// A copy with its own buffer.
    deep_copy => Copy;
    /// The same values in row-contiguous memory.
    contiguous => Contiguous;
}

binary_methods! {
    /// Element-wise `self + other` (broadcasting).
    add => Add;
    /// Element-wise `self - other` (broadcasting).
    subtract => Subtract;
    /// Element-wise `self * other` (broadcasting).
    multiply => Multiply;
    /// Element-wise `self / other` (broadcasting; integer inputs give floats).
    divide => Divide;
    /// Element-wise floor division.
    floor_divide => FloorDivide;
    /// Element-wise remainder (sign of the divisor).
    remainder => Remainder;
    /// Element-wise `self ^ other`.
    power => Power;
    /// Element-wise maximum.
    maximum => Maximum;
    /// Element-wise minimum.
    minimum => Minimum;
    /// `ln(e^self + e^other)`, computed stably.
    logaddexp => LogAddExp;
    /// Four-quadrant inverse tangent of `self / other`.
    arctan2 => ArcTan2;
    /// `self == other` (bool).
    eq => Equal;
    /// `self != other` (bool).
    ne => NotEqual;
    /// `self < other` (bool).
    lt => Less;
    /// `self <= other` (bool).
    le => LessEqual;
    /// `self > other` (bool).
    gt => Greater;
    /// `self >= other` (bool).
    ge => GreaterEqual;
    /// Logical and.
    logical_and => LogicalAnd;
    /// Logical or.
    logical_or => LogicalOr;
    /// Bitwise and.
    bitwise_and => BitwiseAnd;
    /// Bitwise or.
    bitwise_or => BitwiseOr;
    /// Bitwise xor.
    bitwise_xor => BitwiseXor;
    /// Left shift.
    left_shift => LeftShift;
    /// Right shift.
    right_shift => RightShift;
    /// Matrix product with NumPy's batching and broadcasting rules.
    matmul => Matmul;
    /// Outer product of two vectors (flattened first).
    outer => Outer;
    /// Inner product over the last axis.
    inner => Inner;
    /// Kronecker product.
    kron => Kron;
}

impl Array {
    /// A scalar with this array's dtype (for floats) or `f32` (for integer
    /// and bool arrays combined with a fractional value), so that
    /// `x * 0.5` keeps a bf16 `x` in bf16, as MLX does with Python scalars.
    #[track_caller]
    pub fn scalar_like(&self, value: f64) -> Result<Array> {
        let dtype = self.dtype();
        let keep = dtype.is_float() || (value.fract() == 0.0 && dtype != Dtype::Bool);
        let target = if keep { dtype } else { Dtype::F32 };
        Array::scalar_as(value, target)
    }

    /// `self + value` with `value` as a weakly typed scalar (see [`Array::scalar_like`]).
    #[track_caller]
    pub fn add_scalar(&self, value: f64) -> Result<Array> {
        self.add(&self.scalar_like(value)?)
    }

    /// `self - value` (weakly typed scalar).
    #[track_caller]
    pub fn sub_scalar(&self, value: f64) -> Result<Array> {
        self.subtract(&self.scalar_like(value)?)
    }

    /// `self * value` (weakly typed scalar).
    #[track_caller]
    pub fn mul_scalar(&self, value: f64) -> Result<Array> {
        self.multiply(&self.scalar_like(value)?)
    }

    /// `self / value` (weakly typed scalar).
    #[track_caller]
    pub fn div_scalar(&self, value: f64) -> Result<Array> {
        self.divide(&self.scalar_like(value)?)
    }

    /// `self ^ value` (weakly typed scalar).
    #[track_caller]
    pub fn pow_scalar(&self, value: f64) -> Result<Array> {
        self.power(&self.scalar_like(value)?)
    }

    /// Clamps to `[lo, hi]`; `None` leaves that side open.
    #[track_caller]
    pub fn clip(&self, lo: Option<f64>, hi: Option<f64>) -> Result<Array> {
        let lo_a = self.scalar_like(lo.unwrap_or(0.0))?;
        let hi_a = self.scalar_like(hi.unwrap_or(0.0))?;
        check(
            "clip",
            &[self],
            ffi::clip(
                self.raw(),
                lo_a.raw(),
                hi_a.raw(),
                lo.is_some(),
                hi.is_some(),
            ),
        )
    }

    /// Clamps between two arrays (broadcasting).
    #[track_caller]
    pub fn clip_arrays(&self, lo: &Array, hi: &Array) -> Result<Array> {
        check(
            "clip",
            &[self, lo, hi],
            ffi::clip(self.raw(), lo.raw(), hi.raw(), true, true),
        )
    }

    /// Converts to another dtype.
    #[track_caller]
    pub fn as_type(&self, dtype: Dtype) -> Result<Array> {
        check("as_type", &[self], ffi::astype(self.raw(), dtype.to_ffi()))
    }

    /// Reinterprets the bytes as another dtype (the last axis scales by the
    /// ratio of element sizes).
    #[track_caller]
    pub fn view_as(&self, dtype: Dtype) -> Result<Array> {
        check("view_as", &[self], ffi::view_as(self.raw(), dtype.to_ffi()))
    }

    /// Rounds to `decimals` decimal places.
    #[track_caller]
    pub fn round(&self, decimals: i32) -> Result<Array> {
        check("round", &[self], ffi::round(self.raw(), decimals))
    }

    /// Replaces NaN and ±infinity with finite values.
    #[track_caller]
    pub fn nan_to_num(&self, nan: f32, posinf: f32, neginf: f32) -> Result<Array> {
        check(
            "nan_to_num",
            &[self],
            ffi::nan_to_num(self.raw(), nan, posinf, neginf),
        )
    }

    /// SiLU (swish): `x * sigmoid(x)`.
    #[track_caller]
    pub fn silu(&self) -> Result<Array> {
        self.multiply(&self.sigmoid()?)
    }

    /// Whether two arrays have the same shape and values (a bool scalar).
    #[track_caller]
    pub fn array_equal(&self, other: &Array, equal_nan: bool) -> Result<Array> {
        check(
            "array_equal",
            &[self, other],
            ffi::array_equal(self.raw(), other.raw(), equal_nan),
        )
    }

    /// Whether all elements are close: `|a - b| <= atol + rtol * |b|` (a bool scalar).
    #[track_caller]
    pub fn allclose(&self, other: &Array, rtol: f64, atol: f64) -> Result<Array> {
        check(
            "allclose",
            &[self, other],
            ffi::allclose(self.raw(), other.raw(), rtol, atol, false),
        )
    }
}

/// Selects from `x` where `condition` is true, else from `y` (broadcasting).
#[track_caller]
pub fn where_(condition: &Array, x: &Array, y: &Array) -> Result<Array> {
    check(
        "where",
        &[condition, x, y],
        ffi::where_cond(condition.raw(), x.raw(), y.raw()),
    )
}
