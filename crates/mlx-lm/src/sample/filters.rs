//! The filters of the sampling chain and the final draw, each on a batch of
//! log-probabilities `[B, V]` (or `[V]`): removed tokens get `-inf`.
//!
//! Each function validates its setting the way mlx-lm does and returns
//! [`Error::InvalidSampling`] for a value it would reject.

use mlx_tensor::{Array, Dtype, random, where_};

use crate::error::{Error, Result};

fn invalid(parameter: &'static str, message: String) -> Error {
    Error::InvalidSampling { parameter, message }
}

fn vocab_of(logprobs: &Array) -> Result<i32> {
    logprobs.dim(-1).ok_or_else(|| {
        invalid(
            "logprobs",
            "expected an array with a vocabulary axis".into(),
        )
    })
}

fn neg_inf_like(x: &Array) -> Result<Array> {
    Ok(x.scalar_like(f64::NEG_INFINITY)?)
}

/// Keeps the smallest set of most likely tokens whose probability mass
/// reaches `top_p` (nucleus sampling).
///
/// In ascending order of probability, the leading tokens whose strictly
/// higher-ranked mass is still at least `top_p` of the total are dropped;
/// every token at least as likely as the first kept one stays (ties kept).
pub fn apply_top_p(logprobs: &Array, top_p: f64) -> Result<Array> {
    let sorted = logprobs.sort(-1)?;
    let sorted_probs = sorted.as_type(Dtype::F32)?.exp()?;
    let mass_above = sorted_probs.cumsum(-1, true, false)?;
    let total = mass_above
        .slice_axis(-1, 0, Some(1), 1)?
        .add(&sorted_probs.slice_axis(-1, 0, Some(1), 1)?)?;
    let num_dropped = mass_above.ge(&total.mul_scalar(top_p)?)?.sum(-1, true)?;
    let threshold = sorted.take_along_axis(&num_dropped, -1)?;
    Ok(where_(
        &logprobs.lt(&threshold)?,
        &neg_inf_like(logprobs)?,
        logprobs,
    )?)
}

/// Removes tokens less likely than `min_p` times the most likely token's
/// probability, keeping at least the `min_tokens_to_keep` most likely.
pub fn apply_min_p(logprobs: &Array, min_p: f64, min_tokens_to_keep: usize) -> Result<Array> {
    if !(0.0..=1.0).contains(&min_p) {
        return Err(invalid(
            "min_p",
            format!("has to be in [0, 1], got {min_p}"),
        ));
    }
    if min_tokens_to_keep < 1 {
        return Err(invalid(
            "min_tokens_to_keep",
            "has to be a positive integer, got 0".into(),
        ));
    }
    let top = logprobs.max(-1, true)?;
    let scaled_min_p = top.add_scalar(min_p.ln())?;
    let mut remove = logprobs.lt(&scaled_min_p)?;
    if min_tokens_to_keep > 1 {
        let vocab = vocab_of(logprobs)?;
        let keep = i32::try_from(min_tokens_to_keep)
            .ok()
            .filter(|k| *k <= vocab)
            .ok_or_else(|| {
                invalid(
                    "min_tokens_to_keep",
                    format!("{min_tokens_to_keep} is larger than the vocabulary ({vocab})"),
                )
            })?;
        let top_indices = logprobs
            .argpartition(-keep, -1)?
            .slice_axis(-1, -keep, None, 1)?;
        remove = remove.put_along_axis(&top_indices, &Array::scalar(false)?, -1)?;
    }
    Ok(where_(&remove, &neg_inf_like(logprobs)?, logprobs)?)
}

/// Keeps the `top_k` most likely tokens (`0 < top_k < V`).
pub fn apply_top_k(logprobs: &Array, top_k: usize) -> Result<Array> {
    let vocab = vocab_of(logprobs)?;
    let k = i32::try_from(top_k)
        .ok()
        .filter(|k| 0 < *k && *k < vocab)
        .ok_or_else(|| invalid("top_k", format!("has to be in (0, {vocab}), got {top_k}")))?;
    let mask_idx = logprobs
        .negative()?
        .argpartition(k - 1, -1)?
        .slice_axis(-1, k, None, 1)?;
    Ok(logprobs.put_along_axis(
        &mask_idx,
        &Array::scalar_as(f64::NEG_INFINITY, logprobs.dtype())?,
        -1,
    )?)
}

/// Exclude Top Choices: with probability `probability`, removes every token
/// more likely than the least likely token above `threshold`, except the
/// `special_tokens`. One uniform number is drawn with `key` (the same for
/// every row) whether or not the tokens end up removed.
pub fn apply_xtc(
    logprobs: &Array,
    probability: f64,
    threshold: f64,
    special_tokens: &[u32],
    key: Option<&Array>,
) -> Result<Array> {
    let removed = xtc_removed(logprobs, probability, threshold, special_tokens)?;
    let u = random::uniform(0.0, 1.0, &[], Dtype::F32, key)?;
    xtc_choose(logprobs, &removed, &u, probability)
}

/// [`apply_xtc`] with one key per row (`keys`: `u32[B, 2]` for logprobs
/// `[B, V]`): row `r` draws its own uniform number with `keys[r]` and
/// removes its top choices or not on its own.
pub fn apply_xtc_rows(
    logprobs: &Array,
    probability: f64,
    threshold: f64,
    special_tokens: &[u32],
    keys: &Array,
) -> Result<Array> {
    check_key_rows(logprobs, keys)?;
    let removed = xtc_removed(logprobs, probability, threshold, special_tokens)?;
    let u = random::uniform_rows(keys, &[1], Dtype::F32)?;
    xtc_choose(logprobs, &removed, &u, probability)
}

/// `logprobs` with XTC's top choices removed (settings validated).
fn xtc_removed(
    logprobs: &Array,
    probability: f64,
    threshold: f64,
    special_tokens: &[u32],
) -> Result<Array> {
    if !(0.0..=0.5).contains(&threshold) {
        return Err(invalid(
            "xtc_threshold",
            format!("has to be in [0, 0.5], got {threshold}"),
        ));
    }
    if !(0.0..=1.0).contains(&probability) {
        return Err(invalid(
            "xtc_probability",
            format!("has to be in [0, 1], got {probability}"),
        ));
    }
    let probs = logprobs.softmax(-1, false)?;
    let above = where_(
        &probs.gt(&probs.scalar_like(threshold)?)?,
        &probs,
        &probs.scalar_like(f64::INFINITY)?,
    )?;
    let mut mask = probs.gt(&above.min(-1, true)?)?;
    if !special_tokens.is_empty() {
        let vocab = vocab_of(logprobs)?;
        let mut protect = vec![false; usize::try_from(vocab).unwrap_or(0)];
        for &t in special_tokens {
            match protect.get_mut(t as usize) {
                Some(slot) => *slot = true,
                None => {
                    return Err(invalid(
                        "xtc_special_tokens",
                        format!("token {t} is outside the vocabulary ({vocab})"),
                    ));
                }
            }
        }
        let protect = Array::from_slice(&protect, &[vocab])?;
        mask = mask.logical_and(&protect.logical_not()?)?;
    }
    Ok(where_(&mask, &neg_inf_like(logprobs)?, logprobs)?)
}

/// `removed` where the uniform draw `u` is at most `probability`,
/// `logprobs` elsewhere.
fn xtc_choose(logprobs: &Array, removed: &Array, u: &Array, probability: f64) -> Result<Array> {
    let skip = u.gt(&Array::scalar_as(probability, Dtype::F32)?)?;
    Ok(where_(&skip, logprobs, removed)?)
}

/// Checks that `keys` holds one key per row of `logprobs` (`[B, V]`).
fn check_key_rows(logprobs: &Array, keys: &Array) -> Result<()> {
    let rows = random::key_rows("sampling keys", keys)?;
    let batch = logprobs.ndim() == 2 && logprobs.dim(0) == Some(rows);
    if !batch {
        return Err(invalid(
            "keys",
            format!(
                "{rows} per-row keys for log-probabilities of shape {}",
                logprobs.shape()
            ),
        ));
    }
    Ok(())
}

/// Draws one token per row from `softmax(logprobs / temperature)` (Gumbel-max
/// with `key`); `u32` ids of shape `[B]`.
pub fn categorical_sampling(
    logprobs: &Array,
    temperature: f64,
    key: Option<&Array>,
) -> Result<Array> {
    let scaled = logprobs.mul_scalar(1.0 / temperature)?;
    Ok(random::categorical(&scaled, -1, None, key)?)
}

/// [`categorical_sampling`] with one key per row (`keys`: `u32[B, 2]` for
/// logprobs `[B, V]`): row `r`'s Gumbel noise is drawn with `keys[r]` alone,
/// so its token does not depend on the other rows.
pub fn categorical_sampling_rows(
    logprobs: &Array,
    temperature: f64,
    keys: &Array,
) -> Result<Array> {
    check_key_rows(logprobs, keys)?;
    let scaled = logprobs.mul_scalar(1.0 / temperature)?;
    let vocab = vocab_of(logprobs)?;
    let noise = random::gumbel_rows(keys, &[vocab], scaled.dtype())?;
    Ok(scaled.add(&noise)?.argmax(Some(-1), false)?)
}

/// The most likely token of each row (`u32` ids of shape `[B]`).
pub fn greedy(logprobs: &Array) -> Result<Array> {
    Ok(logprobs.argmax(Some(-1), false)?)
}
