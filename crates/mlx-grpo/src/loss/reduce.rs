//! Reductions of the per-token loss to the micro-batch loss, per `loss_type`,
//! and the entropy bonus.

use mlx_tensor::{Array, Axes};

use super::settings::LossSettings;
use crate::config::LossType;
use crate::error::Result;

/// The numbers a reduction divides by, resolved for one micro-batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Divisors {
    /// TRL's `current_gradient_accumulation_steps` in training, 1 in eval.
    pub accumulation: f64,
    /// For `dapo`/`cispo`/`vespo`: the token count of one accumulation window,
    /// `max(num_items_in_batch, 1) * gas / steps_per_generation` in training
    /// (`max(num_items_in_batch, 1)` in eval), computed in f32 as TRL does.
    pub window_tokens: Option<f32>,
}

/// The reduced loss, before and after the accumulation divisor.
#[derive(Debug)]
pub struct Reduced {
    /// The loss returned for this micro-batch (divided for accumulation where
    /// TRL divides).
    pub loss: Array,
    /// TRL's `policy_loss`: the loss before the accumulation divisor.
    pub policy_loss: Array,
}

/// Reduces the per-token loss `per_token_loss` (`[B, T]` or `[B, 1]`) with
/// the float mask `mask` (`[B, T]`) as TRL does for `settings.loss_type`:
///
/// | loss type | reduction |
/// |---|---|
/// | `grpo`, `sapo` | `mean_i(sum_t(L m) / max(len_i, 1)) / gas` |
/// | `bnpo` | `sum(L m) / max(sum(m), 1) / gas` |
/// | `dr_grpo` | `sum(L m) / (B * max_completion_length) / gas` |
/// | `dapo`, `cispo`, `vespo` | `sum(L m) / window_tokens` |
/// | `luspo` | `mean_i(sum_t(L m)) / gas` |
pub fn reduce(
    settings: &LossSettings,
    per_token_loss: &Array,
    mask: &Array,
    divisors: &Divisors,
) -> Result<Reduced> {
    let masked = per_token_loss.multiply(mask)?;
    let policy_loss = match settings.loss_type {
        LossType::Grpo | LossType::Sapo => {
            let lengths = mask.sum(-1, false)?.clip(Some(1.0), None)?;
            masked
                .sum(-1, false)?
                .divide(&lengths)?
                .mean(Axes::All, false)?
        }
        LossType::Bnpo => {
            let tokens = mask.sum(Axes::All, false)?.clip(Some(1.0), None)?;
            masked.sum(Axes::All, false)?.divide(&tokens)?
        }
        LossType::DrGrpo => {
            let rows = f64::from(masked.axis_size(0)?);
            let divisor = rows * settings.max_completion_length as f64;
            masked.sum(Axes::All, false)?.div_scalar(divisor)?
        }
        LossType::Dapo | LossType::Cispo | LossType::Vespo => {
            let tokens = divisors.window_tokens.unwrap_or(1.0);
            let loss = masked
                .sum(Axes::All, false)?
                .div_scalar(f64::from(tokens))?;
            return Ok(Reduced {
                policy_loss: loss.clone(),
                loss,
            });
        }
        LossType::Luspo => masked.sum(-1, false)?.mean(Axes::All, false)?,
    };
    let loss = policy_loss.div_scalar(divisors.accumulation)?;
    Ok(Reduced { loss, policy_loss })
}

/// The entropy term the bonus subtracts: the mean entropy over the tokens
/// selected by `effective_mask` (`mask`, times the entropy mask when there is
/// one), divided by the accumulation divisor:
/// `sum(H M) / max(sum(M), 1) / accumulation`. Carries the gradient of
/// `entropies`.
pub fn entropy_term(entropies: &Array, effective_mask: &Array, accumulation: f64) -> Result<Array> {
    let total = entropies.multiply(effective_mask)?.sum(Axes::All, false)?;
    let count = effective_mask
        .sum(Axes::All, false)?
        .clip(Some(1.0), None)?;
    Ok(total.divide(&count)?.div_scalar(accumulation)?)
}
