//! Random numbers with explicit keys.
//!
//! MLX's random functions take an optional key. Passing `None` draws from a
//! global key sequence that is **per thread** (and seeded from the clock on
//! threads that never call [`seed`]), so reproducible code passes explicit
//! keys: [`key`] makes one from a seed and [`split`] derives independent keys.

use mlx_ffi::ffi;

use crate::array::check;
use crate::{Array, Dtype, Result};

/// A key (`u32[2]`) from a seed.
#[track_caller]
pub fn key(seed: u64) -> Result<Array> {
    check("random::key", &[], ffi::random_key(seed))
}

/// Seeds this thread's global key sequence.
pub fn seed(seed: u64) {
    ffi::random_seed(seed);
}

/// Splits a key into `num` new keys (shape `[num, 2]`).
#[track_caller]
pub fn split(key: &Array, num: i32) -> Result<Array> {
    check("random::split", &[key], ffi::random_split(key.raw(), num))
}

/// Splits a key in two: `(next_key, subkey)`.
#[track_caller]
pub fn split2(key: &Array) -> Result<(Array, Array)> {
    let keys = split(key, 2)?;
    let a = keys.take(&Array::scalar(0u32)?, Some(0))?;
    let b = keys.take(&Array::scalar(1u32)?, Some(0))?;
    Ok((a, b))
}

fn key_parts(key: Option<&Array>) -> Result<(Array, bool)> {
    match key {
        Some(k) => Ok((k.clone(), true)),
        None => Ok((Array::scalar(0u32)?, false)),
    }
}

/// Uniform samples in `[low, high)`.
#[track_caller]
pub fn uniform(
    low: f64,
    high: f64,
    shape: &[i32],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    let (k, has) = key_parts(key)?;
    let lo = Array::scalar_as(low, dtype)?;
    let hi = Array::scalar_as(high, dtype)?;
    check(
        "random::uniform",
        &[],
        ffi::random_uniform(lo.raw(), hi.raw(), shape, dtype.to_ffi(), k.raw(), has),
    )
}

/// Normal samples with mean `loc` and standard deviation `scale`.
#[track_caller]
pub fn normal(
    shape: &[i32],
    dtype: Dtype,
    loc: f32,
    scale: f32,
    key: Option<&Array>,
) -> Result<Array> {
    let (k, has) = key_parts(key)?;
    check(
        "random::normal",
        &[],
        ffi::random_normal(shape, dtype.to_ffi(), loc, scale, k.raw(), has),
    )
}

/// Integers uniformly in `[low, high)`.
#[track_caller]
pub fn randint(
    low: i64,
    high: i64,
    shape: &[i32],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    let (k, has) = key_parts(key)?;
    let lo = Array::scalar_int_as(low, dtype)?;
    let hi = Array::scalar_int_as(high, dtype)?;
    check(
        "random::randint",
        &[],
        ffi::random_randint(lo.raw(), hi.raw(), shape, dtype.to_ffi(), k.raw(), has),
    )
}

/// Booleans that are true with probability `p` (broadcast to `shape`).
#[track_caller]
pub fn bernoulli(p: &Array, shape: &[i32], key: Option<&Array>) -> Result<Array> {
    let (k, has) = key_parts(key)?;
    check(
        "random::bernoulli",
        &[p],
        ffi::random_bernoulli(p.raw(), shape, k.raw(), has),
    )
}

/// Normal samples truncated to `[lower, upper]`.
#[track_caller]
pub fn truncated_normal(
    lower: f64,
    upper: f64,
    shape: &[i32],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    let (k, has) = key_parts(key)?;
    let lo = Array::scalar_as(lower, dtype)?;
    let hi = Array::scalar_as(upper, dtype)?;
    check(
        "random::truncated_normal",
        &[],
        ffi::random_truncated_normal(lo.raw(), hi.raw(), shape, dtype.to_ffi(), k.raw(), has),
    )
}

/// Standard Gumbel samples.
#[track_caller]
pub fn gumbel(shape: &[i32], dtype: Dtype, key: Option<&Array>) -> Result<Array> {
    let (k, has) = key_parts(key)?;
    check(
        "random::gumbel",
        &[],
        ffi::random_gumbel(shape, dtype.to_ffi(), k.raw(), has),
    )
}

/// Samples category indices from unnormalised log-probabilities along
/// `axis` (`u32`). `num_samples = None` draws one per distribution, removing
/// `axis`; `Some(n)` draws `n`, in a new last axis.
#[track_caller]
pub fn categorical(
    logits: &Array,
    axis: i32,
    num_samples: Option<i32>,
    key: Option<&Array>,
) -> Result<Array> {
    let (k, has) = key_parts(key)?;
    check(
        "random::categorical",
        &[logits],
        ffi::random_categorical(logits.raw(), axis, num_samples.unwrap_or(0), k.raw(), has),
    )
}

/// A random permutation of `0..n`.
#[track_caller]
pub fn permutation(n: i32, key: Option<&Array>) -> Result<Array> {
    let (k, has) = key_parts(key)?;
    check(
        "random::permutation",
        &[],
        ffi::random_permutation(n, k.raw(), has),
    )
}
