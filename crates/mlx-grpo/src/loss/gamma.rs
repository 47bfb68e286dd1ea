//! VESPO's gamma weights (TRL's `get_gamma_weights`).

use mlx_tensor::{Array, where_};

use crate::error::Result;

/// The shape parameters of the gamma weighting, for non-negative (`pos`) and
/// negative (`neg`) advantages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaParams {
    /// Power exponent k for advantages >= 0.
    pub k_pos: f64,
    /// Decay λ for advantages >= 0.
    pub lambda_pos: f64,
    /// Power exponent k for advantages < 0.
    pub k_neg: f64,
    /// Decay λ for advantages < 0.
    pub lambda_neg: f64,
}

impl Default for GammaParams {
    /// TRL's defaults: `k_pos = 2, lambda_pos = 3, k_neg = 3, lambda_neg = 2`.
    fn default() -> Self {
        Self {
            k_pos: 2.0,
            lambda_pos: 3.0,
            k_neg: 3.0,
            lambda_neg: 2.0,
        }
    }
}

/// `ln(1e-8)`, the lower clamp of the log weights.
fn log_min() -> f64 {
    1e-8f64.ln()
}
/// The upper clamp of the log weights.
const LOG_MAX: f64 = 20.0;
/// The smallest λ used.
const LAMBDA_MIN: f64 = 1e-4;

/// The VESPO sequence weights `phi = e^λ · w^k · e^(-λ w)` (so `phi(1) = 1`),
/// computed in log space, with no gradient.
///
/// - `advantages`: `[B, 1]` (or anything broadcasting against `[B, 1]`);
///   `A >= 0` selects the `pos` parameters.
/// - `log_ratio`: `[B, T]` log-ratios `logp - old_logp`; clamped to
///   `[-20, 20]` and **summed** over valid tokens (not averaged).
/// - `mask`: float `[B, T]`.
/// - `importance_sampling_ratio`: optional `[B, T]` sampler correction; its
///   log, clamped to `[ln 1e-8, 20]`, is summed over all positions (unmasked,
///   as in TRL) and added.
///
/// The summed log weight is clamped to `[ln 1e-8, 20]`; λ is at least 1e-4;
/// NaN or infinite weights become 0. Returns `[B, 1]`.
pub fn gamma_weights(
    advantages: &Array,
    log_ratio: &Array,
    mask: &Array,
    importance_sampling_ratio: Option<&Array>,
    params: GammaParams,
) -> Result<Array> {
    let log_ratio = log_ratio.stop_gradient()?;
    let clamped = log_ratio.clip(Some(-20.0), Some(20.0))?;
    let mut seq = clamped.multiply(mask)?.sum(-1, true)?;
    if let Some(ratio) = importance_sampling_ratio {
        let log_is = ratio
            .stop_gradient()?
            .log()?
            .clip(Some(log_min()), Some(LOG_MAX))?;
        seq = seq.add(&log_is.sum(-1, true)?)?;
    }
    let log_w = seq.clip(Some(log_min()), Some(LOG_MAX))?;
    let w = log_w.exp()?;
    let nonneg = advantages
        .stop_gradient()?
        .ge(&advantages.scalar_like(0.0)?)?;
    let pick = |pos: f64, neg: f64| -> Result<Array> {
        let pos = Array::scalar_as(pos, log_w.dtype())?;
        let neg = Array::scalar_as(neg, log_w.dtype())?;
        Ok(where_(&nonneg, &pos, &neg)?)
    };
    let k = pick(params.k_pos, params.k_neg)?;
    let lambda = pick(params.lambda_pos, params.lambda_neg)?.clip(Some(LAMBDA_MIN), None)?;
    let log_phi = lambda
        .add(&k.multiply(&log_w)?)?
        .subtract(&lambda.multiply(&w)?)?;
    let phi = log_phi.exp()?;
    let finite = phi.is_finite()?;
    Ok(where_(&finite, &phi, &phi.zeros_like()?)?.stop_gradient()?)
}
