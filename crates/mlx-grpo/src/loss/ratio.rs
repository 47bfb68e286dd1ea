//! Importance weights and the KL estimator.

use mlx_tensor::Array;

use crate::config::ImportanceSamplingLevel;
use crate::error::Result;

/// The log importance weights of the current policy against the old one.
///
/// `log_ratio = per_token_logps - old_per_token_logps`, `[B, T]`. At the
/// `token` level that is the result; at the `sequence` level it is the mean
/// log-ratio over each sequence's valid tokens,
/// `sum_t(log_ratio * mask) / max(sum_t(mask), 1)`, shaped `[B, 1]`.
/// `mask` is a float `[B, T]` array. The result carries the gradient of
/// `log_ratio`.
pub fn log_importance_weights(
    log_ratio: &Array,
    mask: &Array,
    level: ImportanceSamplingLevel,
) -> Result<Array> {
    Ok(match level {
        ImportanceSamplingLevel::Token => log_ratio.clone(),
        ImportanceSamplingLevel::Sequence => {
            let total = log_ratio.multiply(mask)?.sum(-1, true)?;
            let count = mask.sum(-1, true)?.clip(Some(1.0), None)?;
            total.divide(&count)?
        }
    })
}

/// The importance weights `exp(log_importance_weights(..))` (TRL's `coef_1`),
/// `[B, T]` or `[B, 1]`.
pub fn importance_weights(
    log_ratio: &Array,
    mask: &Array,
    level: ImportanceSamplingLevel,
) -> Result<Array> {
    Ok(log_importance_weights(log_ratio, mask, level)?.exp()?)
}

/// The per-token k3 estimator of `KL(policy || reference)`:
/// `exp(ref - logp) - (ref - logp) - 1`, `[B, T]`, differentiable in
/// `per_token_logps`. With `weights` (the importance weights, for TRL's
/// `use_bias_correction_kl`) the result is multiplied by them.
pub fn per_token_kl(
    per_token_logps: &Array,
    ref_per_token_logps: &Array,
    weights: Option<&Array>,
) -> Result<Array> {
    let diff = ref_per_token_logps.subtract(per_token_logps)?;
    let kl = diff.exp()?.subtract(&diff)?.sub_scalar(1.0)?;
    Ok(match weights {
        Some(w) => kl.multiply(w)?,
        None => kl,
    })
}
