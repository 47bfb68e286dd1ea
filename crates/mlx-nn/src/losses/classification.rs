//! Likelihood-based losses: NLL, KL divergence, binary cross-entropy.

use mlx_tensor::Array;

use super::{Reduction, apply_weights, check_same_shape, reduce};
use crate::Result;

/// Negative log-likelihood: `-log_probs[target]` along `axis`, reduced.
/// `log_probs` are log-probabilities, `targets` integer class indices.
pub fn nll(log_probs: &Array, targets: &Array, axis: i32, reduction: Reduction) -> Result<Array> {
    let picked = log_probs
        .take_along_axis(&targets.expand_dims(&[axis])?, axis)?
        .squeeze(&[axis])?;
    reduce(picked.negative()?, reduction, None)
}

/// Kullback–Leibler divergence `KL(target ‖ input)` from log-probabilities:
/// `sum(exp(targets) · (targets - inputs))` along `axis`, reduced.
pub fn kl_div(inputs: &Array, targets: &Array, axis: i32, reduction: Reduction) -> Result<Array> {
    let loss = targets
        .exp()?
        .multiply(&targets.subtract(inputs)?)?
        .sum(axis, false)?;
    reduce(loss, reduction, None)
}

/// Binary cross-entropy from logits: `log(1 + e^x) - x·y`, optionally
/// weighted, reduced.
pub fn binary_cross_entropy_with_logits(
    logits: &Array,
    targets: &Array,
    weights: Option<&Array>,
    reduction: Reduction,
) -> Result<Array> {
    check_same_shape("binary_cross_entropy", logits, targets)?;
    let softplus = logits.scalar_like(0.0)?.logaddexp(logits)?;
    let loss = softplus.subtract(&logits.multiply(targets)?)?;
    let loss = apply_weights(loss, weights, "binary_cross_entropy")?;
    reduce(loss, reduction, weights)
}

/// Binary cross-entropy from probabilities:
/// `-(y·log p + (1 - y)·log(1 - p))` with each log clipped below at `-100`,
/// optionally weighted, reduced.
pub fn binary_cross_entropy(
    probs: &Array,
    targets: &Array,
    weights: Option<&Array>,
    reduction: Reduction,
) -> Result<Array> {
    check_same_shape("binary_cross_entropy", probs, targets)?;
    let log_p = probs.log()?.clip(Some(-100.0), None)?;
    let log_not_p = probs
        .scalar_like(1.0)?
        .subtract(probs)?
        .log()?
        .clip(Some(-100.0), None)?;
    let not_y = targets.scalar_like(1.0)?.subtract(targets)?;
    let loss = targets
        .multiply(&log_p)?
        .add(&not_y.multiply(&log_not_p)?)?
        .negative()?;
    let loss = apply_weights(loss, weights, "binary_cross_entropy")?;
    reduce(loss, reduction, weights)
}
