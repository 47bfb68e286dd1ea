//! Error-free transformations on float arrays (Knuth's two-sum, Dekker's
//! two-product with Veltkamp splitting) and a fused multiply-add built from
//! them. The torch-compatible quantile needs products and sums rounded once,
//! as torch computes them (in double precision, or with a hardware FMA),
//! while MLX devices compute in single precision only.
//!
//! Every operation is a separate MLX kernel, so no compiler contracts or
//! reassociates across them.

use mlx_tensor::Array;

use crate::error::Result;

/// `(s, t)` with `s = fl(a + b)` and `s + t = a + b` exactly.
pub(crate) fn two_sum(a: &Array, b: &Array) -> Result<(Array, Array)> {
    let s = a.add(b)?;
    let b_virtual = s.subtract(a)?;
    let a_virtual = s.subtract(&b_virtual)?;
    let t = a.subtract(&a_virtual)?.add(&b.subtract(&b_virtual)?)?;
    Ok((s, t))
}

/// `(hi, lo)` with `hi + lo = a`, each holding at most half the significand
/// (Veltkamp's split, factor `2^12 + 1` for f32).
fn split(a: &Array) -> Result<(Array, Array)> {
    let c = a.mul_scalar(4097.0)?;
    let hi = c.subtract(&c.subtract(a)?)?;
    let lo = a.subtract(&hi)?;
    Ok((hi, lo))
}

/// `(p, e)` with `p = fl(a * b)` and `p + e = a * b` exactly (barring
/// overflow and underflow).
pub(crate) fn two_product(a: &Array, b: &Array) -> Result<(Array, Array)> {
    let p = a.multiply(b)?;
    let (a_hi, a_lo) = split(a)?;
    let (b_hi, b_lo) = split(b)?;
    let e = a_hi
        .multiply(&b_hi)?
        .subtract(&p)?
        .add(&a_hi.multiply(&b_lo)?)?
        .add(&a_lo.multiply(&b_hi)?)?
        .add(&a_lo.multiply(&b_lo)?)?;
    Ok((p, e))
}

/// `a * b + c` with (almost always) a single rounding, like a hardware FMA:
/// the exact product and sum are carried as pairs and rounded at the end.
pub(crate) fn fused_multiply_add(a: &Array, b: &Array, c: &Array) -> Result<Array> {
    let (p, e) = two_product(a, b)?;
    let (s, t) = two_sum(&p, c)?;
    Ok(s.add(&t.add(&e)?)?)
}
