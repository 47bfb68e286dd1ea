//! Range checks of configuration values that would otherwise give NaN
//! outputs or overflow shape arithmetic; every error names the field and
//! its value.

use crate::{Error, Result};

fn bad(field: &str, message: String) -> Error {
    Error::ModelConfig {
        field: field.into(),
        message,
    }
}

/// `value` must be finite and positive, also once narrowed to `f32` (what
/// the kernels compute with).
pub(crate) fn positive_finite(field: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0 && (value as f32).is_finite() && value as f32 > 0.0) {
        return Err(bad(
            field,
            format!("must be a finite positive number, got {value}"),
        ));
    }
    Ok(())
}

/// `value` must be finite and not negative, also once narrowed to `f32`.
pub(crate) fn non_negative_finite(field: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value >= 0.0 && (value as f32).is_finite()) {
        return Err(bad(
            field,
            format!("must be a finite non-negative number, got {value}"),
        ));
    }
    Ok(())
}

/// The product of `factors` as a 32-bit shape entry (a projection's width);
/// an error naming `field` when it overflows.
pub(crate) fn width(field: &str, factors: &[i32]) -> Result<i32> {
    factors
        .iter()
        .try_fold(1i32, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| {
            bad(
                field,
                format!("the width {factors:?} multiplies to more than {}", i32::MAX),
            )
        })
}

/// A weight of shape `dims` must have an element count, and a byte size
/// (at up to 8 bytes an element), that fit the address space.
pub(crate) fn weight(field: &str, dims: &[i32]) -> Result<()> {
    let bytes = dims
        .iter()
        .try_fold(8i64, |acc, &d| acc.checked_mul(i64::from(d)))
        .filter(|&b| isize::try_from(b).is_ok());
    if bytes.is_none() {
        return Err(bad(
            field,
            format!("a weight of shape {dims:?} is too large to address"),
        ));
    }
    Ok(())
}
