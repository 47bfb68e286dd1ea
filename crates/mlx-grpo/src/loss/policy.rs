//! The per-token policy loss of each `loss_type`, before masks, the KL term
//! and the reduction.

use mlx_tensor::{Array, where_};

use super::gamma::{GammaParams, gamma_weights};
use super::settings::LossSettings;
use crate::config::LossType;
use crate::error::Result;

/// The per-token policy loss and what the metrics need from it.
#[derive(Debug)]
pub struct PolicyTerm {
    /// The loss, `[B, T]` or `[B, 1]` (sequence-level ratios), with gradient.
    pub loss: Array,
    /// The ratio the clip metrics look at: TRL's `coef_1` after the `delta`
    /// cap for the clipped-surrogate family, the raw ratio for `cispo`; `None`
    /// for `sapo` and `vespo`.
    pub clip_ratio: Option<Array>,
    /// VESPO's gamma weights `[B, 1]`, for its metric.
    pub phi: Option<Array>,
}

/// Inputs of [`policy_term`].
#[derive(Debug, Clone, Copy)]
pub struct PolicyInputs<'a> {
    /// Current log-probabilities `[B, T]`, with gradient.
    pub per_token_logps: &'a Array,
    /// `per_token_logps - old_per_token_logps`, `[B, T]`.
    pub log_ratio: &'a Array,
    /// Importance weights (`coef_1`), `[B, T]` or `[B, 1]`.
    pub weights: &'a Array,
    /// Advantages, `[B, 1]` (or `[B, T]`).
    pub advantages: &'a Array,
    /// Float mask `[B, T]`.
    pub mask: &'a Array,
    /// The sampler's importance-sampling correction, for VESPO.
    pub importance_sampling_ratio: Option<&'a Array>,
}

/// The per-token policy loss of `settings.loss_type`:
///
/// - `grpo`, `bnpo`, `dr_grpo`, `dapo`, `luspo`: `-min(w1 A, w2 A)` with
///   `w2 = clip(w, 1 - epsilon_low, 1 + epsilon_high)` and `w1 = min(w,
///   delta)` (or `w` without `delta`);
/// - `cispo`: `-stop_gradient(min(w, epsilon_high)) A logp`;
/// - `sapo`: `-(4 / tau) sigmoid(tau (w - 1)) A`, `tau` = the positive
///   temperature where `A > 0`, else the negative one;
/// - `vespo`: `-phi A logp` with the gamma weights `phi` (no gradient).
pub fn policy_term(settings: &LossSettings, inputs: &PolicyInputs<'_>) -> Result<PolicyTerm> {
    let w = inputs.weights;
    let adv = inputs.advantages;
    match settings.loss_type {
        LossType::Grpo | LossType::Bnpo | LossType::DrGrpo | LossType::Dapo | LossType::Luspo => {
            let clipped = w.clip(
                Some(1.0 - settings.epsilon_low),
                Some(1.0 + settings.epsilon_high),
            )?;
            let capped = match settings.delta {
                Some(delta) => w.clip(None, Some(delta))?,
                None => w.clone(),
            };
            let loss = capped
                .multiply(adv)?
                .minimum(&clipped.multiply(adv)?)?
                .negative()?;
            Ok(PolicyTerm {
                loss,
                clip_ratio: Some(capped),
                phi: None,
            })
        }
        LossType::Cispo => {
            let cap = w.clip(None, Some(settings.epsilon_high))?.stop_gradient()?;
            let loss = cap
                .negative()?
                .multiply(adv)?
                .multiply(inputs.per_token_logps)?;
            Ok(PolicyTerm {
                loss,
                clip_ratio: Some(w.clone()),
                phi: None,
            })
        }
        LossType::Sapo => {
            let positive = adv.gt(&adv.scalar_like(0.0)?)?;
            let pos = Array::scalar_as(settings.sapo_temperature_pos, w.dtype())?;
            let neg = Array::scalar_as(settings.sapo_temperature_neg, w.dtype())?;
            let tau = where_(&positive, &pos, &neg)?;
            let gate = tau
                .multiply(&w.sub_scalar(1.0)?)?
                .sigmoid()?
                .mul_scalar(4.0)?
                .divide(&tau)?;
            let loss = gate.negative()?.multiply(adv)?;
            Ok(PolicyTerm {
                loss,
                clip_ratio: None,
                phi: None,
            })
        }
        LossType::Vespo => {
            let params = GammaParams {
                k_pos: settings.vespo_k_pos,
                lambda_pos: settings.vespo_lambda_pos,
                k_neg: settings.vespo_k_neg,
                lambda_neg: settings.vespo_lambda_neg,
            };
            let phi = gamma_weights(
                adv,
                inputs.log_ratio,
                inputs.mask,
                inputs.importance_sampling_ratio,
                params,
            )?;
            let loss = phi
                .negative()?
                .multiply(adv)?
                .multiply(inputs.per_token_logps)?;
            Ok(PolicyTerm {
                loss,
                clip_ratio: None,
                phi: Some(phi),
            })
        }
    }
}
