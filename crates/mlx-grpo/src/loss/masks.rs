//! The token and sequence masks of the GRPO loss: high-entropy tokens (TRL's
//! `get_high_entropy_mask`) and off-policy sequences (`get_off_policy_mask`).
//!
//! Both are computed on the device with no host round trip and carry no
//! gradient.

use mlx_tensor::{Array, Dtype, where_};

use super::exact::{fused_multiply_add, two_product};
use crate::error::Result;

/// The `q`-quantile of the entries of `values` where `mask` is non-zero, as
/// `torch.quantile` computes it (linear interpolation) on the float32 values:
/// sort the `n` selected values; the position `r = f32(q) * (n - 1)` is taken
/// exactly, `w = f32(r - floor(r))`; the result is torch's `lerp` between the
/// values at `floor(r)` and `ceil(r)`, `fma(w, b - a, a)` for `w < 0.5`, else
/// `fma(a - b, 1 - w, b)`.
///
/// `values` and `mask` have the same shape (any); the result is an f32
/// scalar with no gradient. If no entry is selected the result is
/// meaningless (callers check the count).
pub fn masked_quantile(values: &Array, mask: &Array, q: f64) -> Result<Array> {
    let values = values
        .stop_gradient()?
        .as_type(Dtype::F32)?
        .flatten(0, -1)?;
    let selected = mask.flatten(0, -1)?.ne(&mask.scalar_like(0.0)?)?;
    let inf = Array::scalar_as(f64::INFINITY, Dtype::F32)?;
    // Unselected entries sort after every selected one.
    let sorted = where_(&selected, &values, &inf)?.sort(0)?;
    let count = selected.as_type(Dtype::F32)?.sum(0, false)?;
    let last = count.sub_scalar(1.0)?.clip(Some(0.0), None)?;

    // r = q * last exactly, as the pair p + e.
    let (p, e) = two_product(&Array::scalar_as(q, Dtype::F32)?, &last)?;
    let floor_p = p.floor()?;
    let zero = e.scalar_like(0.0)?;
    let below_integer = p.eq(&floor_p)?.logical_and(&e.lt(&zero)?)?;
    let below_idx = where_(&below_integer, &floor_p.sub_scalar(1.0)?, &floor_p)?;
    let weight = p.subtract(&below_idx)?.add(&e)?;
    let above_idx = below_idx.add(&weight.gt(&zero)?.as_type(Dtype::F32)?)?;

    let below = sorted.take(&below_idx.as_type(Dtype::I32)?, Some(0))?;
    let above = sorted.take(&above_idx.as_type(Dtype::I32)?, Some(0))?;
    let diff = above.subtract(&below)?;
    let small = weight.abs()?.lt(&weight.scalar_like(0.5)?)?;
    let from_below = fused_multiply_add(&weight, &diff, &below)?;
    let one_minus = weight.scalar_like(1.0)?.subtract(&weight)?;
    let from_above = fused_multiply_add(&diff.negative()?, &one_minus, &above)?;
    Ok(where_(&small, &from_below, &from_above)?)
}

/// TRL's `get_high_entropy_mask(entropies, mask, threshold)`: 1 for the valid
/// tokens whose entropy is at least the `threshold`-quantile of the valid
/// tokens' entropies, else 0. Ties at the quantile are kept; with no valid
/// token the mask is all 0. The loss passes `threshold = 1 -
/// top_entropy_quantile`.
///
/// `entropies` and `mask` are `[B, T]`; the result is a `[B, T]` array of
/// `entropies`' dtype, with no gradient.
pub fn high_entropy_mask(entropies: &Array, mask: &Array, threshold: f64) -> Result<Array> {
    let entropies = entropies.stop_gradient()?;
    let mask = mask.as_type(entropies.dtype())?;
    let cutoff = masked_quantile(&entropies, &mask, threshold)?.as_type(entropies.dtype())?;
    let masked = entropies.multiply(&mask)?;
    let valid = mask.ne(&mask.scalar_like(0.0)?)?;
    let keep = masked.ge(&cutoff)?.logical_and(&valid)?;
    Ok(keep.as_type(entropies.dtype())?)
}

/// TRL's `get_off_policy_mask` (DeepSeek-V3.2's off-policy sequence masking):
/// 1 (keep) for a sequence whose advantage is non-negative or whose mean
/// per-token `sampling - logp` over its valid tokens is at most `threshold`,
/// else 0.
///
/// `advantages` is `[B, 1]` (or `[B, T]`), `per_token_logps`,
/// `sampling_per_token_logps` and `mask` are `[B, T]`. NaN log-ratios count as
/// 0. The result has `per_token_logps`' dtype, shape `[B, 1]` (the broadcast
/// of the advantages' shape), and no gradient.
pub fn off_policy_mask(
    advantages: &Array,
    per_token_logps: &Array,
    sampling_per_token_logps: &Array,
    mask: &Array,
    threshold: f64,
) -> Result<Array> {
    let dtype = per_token_logps.dtype();
    let mask = mask.as_type(dtype)?;
    let kl = sampling_per_token_logps
        .stop_gradient()?
        .subtract(&per_token_logps.stop_gradient()?)?
        .nan_to_num(0.0, f32::MAX, f32::MIN)?;
    let seq_kl = kl.multiply(&mask)?.sum(-1, true)?;
    let count = mask.sum(-1, true)?.clip(Some(1.0), None)?;
    let avg = seq_kl.divide(&count)?;
    let advantages = advantages.stop_gradient()?;
    let positive = advantages.ge(&advantages.scalar_like(0.0)?)?;
    let low_kl = avg.le(&avg.scalar_like(threshold)?)?;
    Ok(positive.logical_or(&low_kl)?.as_type(dtype)?)
}
