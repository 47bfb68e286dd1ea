//! Random numbers with explicit keys.
//!
//! MLX's random functions take an optional key. Passing `None` draws from a
//! global key sequence that is **per thread** (and seeded from the clock on
//! threads that never call [`seed`]), so reproducible code passes explicit
//! keys: [`key`] makes one from a seed and [`split`] derives independent keys.
//!
//! The `*_rows` functions take one key per row (`keys` of shape `[B, 2]`,
//! `u32`) and draw a batch `[B, ...]` whose row `i` is exactly the draw
//! of the single-key function with key `keys[i]`: a row's numbers never
//! depend on the other rows (MLX batches the keys with `vmap`).

use mlx_ffi::ffi;

use crate::array::check;
use crate::{Array, Dtype, Error, Result};

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

/// The number of rows of a batch of keys: `keys` must be `u32[B, 2]` with
/// `B >= 1`.
#[track_caller]
pub fn key_rows(op: &'static str, keys: &Array) -> Result<i32> {
    let shape = keys.shape();
    if keys.dtype() != Dtype::U32 || shape.0.len() != 2 || shape.0[1] != 2 || shape.0[0] < 1 {
        return Err(Error::Invalid {
            op,
            message: format!(
                "keys must be u32[B, 2] with B >= 1 (one key per row), got {}{}",
                keys.dtype(),
                shape
            ),
        });
    }
    Ok(shape.0[0])
}

/// Standard Gumbel samples `[B, ...shape]`, row `i` drawn with `keys[i]`
/// (`keys`: `u32[B, 2]`): row `i` equals [`gumbel`]`(shape, dtype,
/// Some(keys[i]))`.
#[track_caller]
pub fn gumbel_rows(keys: &Array, shape: &[i32], dtype: Dtype) -> Result<Array> {
    key_rows("random::gumbel_rows", keys)?;
    check(
        "random::gumbel_rows",
        &[keys],
        ffi::random_gumbel_rows(keys.raw(), shape, dtype.to_ffi()),
    )
}

/// Uniform samples in `[0, 1)` of shape `[B, ...shape]`, row `i` drawn with
/// `keys[i]` (`keys`: `u32[B, 2]`): row `i` equals [`uniform`]`(0, 1, shape,
/// dtype, Some(keys[i]))`.
#[track_caller]
pub fn uniform_rows(keys: &Array, shape: &[i32], dtype: Dtype) -> Result<Array> {
    key_rows("random::uniform_rows", keys)?;
    check(
        "random::uniform_rows",
        &[keys],
        ffi::random_uniform_rows(keys.raw(), shape, dtype.to_ffi()),
    )
}

/// Splits each key of `keys` (`u32[B, 2]`) into `num` new keys:
/// `[B, num, 2]`, row `i` equal to [`split`]`(keys[i], num)`.
#[track_caller]
pub fn split_rows(keys: &Array, num: i32) -> Result<Array> {
    key_rows("random::split_rows", keys)?;
    check(
        "random::split_rows",
        &[keys],
        ffi::random_split_rows(keys.raw(), num),
    )
}

/// Splits each key of `keys` (`u32[B, 2]`) in two: `(next_keys, subkeys)`,
/// both `[B, 2]`, row `i` equal to [`split2`]`(keys[i])`.
#[track_caller]
pub fn split2_rows(keys: &Array) -> Result<(Array, Array)> {
    let both = split_rows(keys, 2)?;
    let a = both.take(&Array::scalar(0u32)?, Some(1))?;
    let b = both.take(&Array::scalar(1u32)?, Some(1))?;
    Ok((a, b))
}
