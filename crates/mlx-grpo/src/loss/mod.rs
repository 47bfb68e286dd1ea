//! The GRPO loss of TRL 1.16 (`GRPOTrainer._compute_loss`) on MLX arrays:
//! importance weights at the token or sequence level, the per-token loss of
//! every `loss_type`, `delta` capping, clipping, the KL penalty with its bias
//! correction, the off-policy and entropy masks, the entropy bonus, TRL's
//! reductions and TRL's metrics. `LOSS_NOTES.md` spells out each formula.
//!
//! [`GrpoLoss::compute`] builds the graph of one micro-batch's loss; call it
//! inside the closure of a gradient transformation with `per_token_logps`
//! computed from the model there, so that the loss is differentiated through
//! the model:
//!
//! ```no_run
//! use mlx_grpo::config::GrpoConfig;
//! use mlx_grpo::loss::{GrpoLoss, LossInputs, LossOutput};
//! use mlx_tensor::{transforms, Array};
//!
//! # fn demo(logits_to_logps: impl Fn(&Array) -> mlx_tensor::Result<Array>, params: Array) -> mlx_grpo::Result<()> {
//! let loss_fn = GrpoLoss::from_config(&GrpoConfig::default());
//! let advantages = Array::from_slice(&[0.5f32, -0.5], &[2])?;
//! let mask = Array::from_slice(&[1.0f32, 1.0, 1.0, 0.0], &[2, 2])?;
//! let layout = std::cell::RefCell::new(None);
//! let (outputs, grads) = transforms::value_and_grad(
//!     |xs: &[Array]| {
//!         let logps = logits_to_logps(&xs[0])?;
//!         let inputs = LossInputs::new(&logps, &advantages, &mask).with_num_items_in_batch(3.0);
//!         let out = loss_fn.compute(&inputs).map_err(|e| mlx_tensor::Error::Invalid {
//!             op: "grpo_loss",
//!             message: e.to_string(),
//!         })?;
//!         *layout.borrow_mut() = Some(out.layout());
//!         Ok(out.into_outputs())
//!     },
//!     &[params],
//!     &[0],
//! )?;
//! let layout = layout.into_inner().ok_or_else(|| mlx_grpo::Error::InvalidConfig {
//!     message: "the loss closure did not run".into(),
//! })?;
//! let out = LossOutput::from_outputs(&layout, outputs)?;
//! let metrics = out.metrics.to_map()?; // "entropy", "clip_ratio/low_mean", ...
//! # let _ = (grads, metrics);
//! # Ok(())
//! # }
//! ```
//!
//! The building blocks ([`high_entropy_mask`], [`off_policy_mask`],
//! [`gamma_weights`], [`importance_weights`], [`per_token_kl`]) are public
//! too. Everything runs on the device: the only read-back is the finiteness
//! check of the `[B]` advantages.

mod adaptive;
mod exact;
mod gamma;
mod inputs;
mod masks;
mod metrics;
mod output;
mod policy;
mod ratio;
mod reduce;
mod rollout_correction;
mod settings;

pub use adaptive::{ENTROPY_STATE_FILE, EntropyControl, EntropyControlState};
pub use gamma::{GammaParams, gamma_weights};
pub use inputs::{LossInputs, LossMode};
pub use masks::{high_entropy_mask, masked_quantile, off_policy_mask};
pub use metrics::{LossMetrics, global_masked_mean, masked_seq_mean, names, nanmax, nanmin};
pub use output::{EntropyWindow, LossOutput, OutputLayout};
pub use policy::{PolicyInputs, PolicyTerm, policy_term};
pub use ratio::{importance_weights, log_importance_weights, per_token_kl};
pub use reduce::{Divisors, Reduced, entropy_term, reduce};
pub use rollout_correction::{RolloutCorrection, SamplingStats, sampling_names};
pub use settings::LossSettings;

use mlx_tensor::{Array, Axes};

use crate::config::GrpoConfig;
use crate::error::Result;

/// The GRPO loss for one configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrpoLoss {
    settings: LossSettings,
}

impl GrpoLoss {
    /// The loss of a training config.
    pub fn from_config(cfg: &GrpoConfig) -> Self {
        Self::new(LossSettings::from_config(cfg))
    }

    /// The loss with explicit settings.
    pub fn new(settings: LossSettings) -> Self {
        Self { settings }
    }

    /// The settings.
    pub fn settings(&self) -> &LossSettings {
        &self.settings
    }

    /// The divisors of one micro-batch: the accumulation steps (1 in eval)
    /// and, for `dapo`/`cispo`/`vespo`, the window's token count.
    pub fn divisors(&self, inputs: &LossInputs<'_>) -> Divisors {
        let s = &self.settings;
        let gas = inputs
            .gradient_accumulation_steps
            .unwrap_or(s.gradient_accumulation_steps)
            .max(1);
        let train = inputs.mode == LossMode::Train;
        let window_tokens = inputs.num_items_in_batch.map(|n| {
            // f32 arithmetic in TRL's order: clamp(N, 1) / processes * gas / spg.
            let tokens = (n as f32).max(1.0);
            if train {
                tokens * gas as f32 / s.steps_per_generation.max(1) as f32
            } else {
                tokens
            }
        });
        Divisors {
            accumulation: if train { gas as f64 } else { 1.0 },
            window_tokens,
        }
    }

    /// The metric names [`GrpoLoss::compute`] logs for inputs with (or
    /// without) entropies, in order.
    pub fn metric_names(&self, has_entropies: bool) -> Vec<&'static str> {
        let s = &self.settings;
        let mut out = Vec::new();
        if s.uses_entropy_bonus() {
            out.extend([names::POLICY_LOSS, names::ENTROPY_COEF]);
        }
        if s.beta != 0.0 {
            out.push(names::KL);
        }
        if has_entropies {
            out.push(names::ENTROPY);
        }
        if s.is_clipped_surrogate() {
            out.extend([
                names::CLIP_LOW_MEAN,
                names::CLIP_HIGH_MEAN,
                names::CLIP_REGION_MEAN,
                names::CLIP_LOW_MIN,
                names::CLIP_HIGH_MAX,
            ]);
        } else if s.loss_type == crate::config::LossType::Cispo {
            out.push(names::CISPO_CLIP_RATIO);
        } else if s.loss_type == crate::config::LossType::Vespo {
            out.push(names::VESPO_PHI_SEQ_MEAN);
        }
        out
    }

    /// Builds the loss of one micro-batch and its metrics.
    ///
    /// Checks the inputs first ([`LossInputs::validate`]: shapes, dtypes,
    /// inputs the settings need, finite advantages). The loss carries the
    /// gradient of `per_token_logps` (and of `entropies` through the entropy
    /// bonus); the metrics carry none.
    pub fn compute(&self, inputs: &LossInputs<'_>) -> Result<LossOutput> {
        inputs.validate(&self.settings)?;
        let s = &self.settings;
        let logps = inputs.per_token_logps;
        let mask = inputs.completion_mask.as_type(logps.dtype())?;
        let advantages = match inputs.advantages.ndim() {
            1 => inputs.advantages.expand_dims(&[1])?,
            _ => inputs.advantages.clone(),
        };
        let old = match inputs.old_per_token_logps {
            Some(old) => old.clone(),
            None => logps.stop_gradient()?,
        };

        let entropy_mask = match (s.uses_entropy_mask(), inputs.entropies) {
            (true, Some(h)) => Some(high_entropy_mask(h, &mask, 1.0 - s.top_entropy_quantile)?),
            _ => None,
        };
        let off_policy = match s.off_policy_mask_threshold {
            Some(threshold) => {
                let sampling = inputs.sampling_per_token_logps.unwrap_or(&old);
                Some(off_policy_mask(
                    &advantages,
                    logps,
                    sampling,
                    &mask,
                    threshold,
                )?)
            }
            None => None,
        };

        let log_ratio = logps.subtract(&old)?;
        let weights = importance_weights(&log_ratio, &mask, s.importance_sampling_level)?;
        let kl = match inputs.ref_per_token_logps {
            Some(reference) if s.beta != 0.0 => {
                let bias = s.use_bias_correction_kl.then_some(&weights);
                Some(per_token_kl(logps, reference, bias)?)
            }
            _ => None,
        };

        let term = policy_term(
            s,
            &PolicyInputs {
                per_token_logps: logps,
                log_ratio: &log_ratio,
                weights: &weights,
                advantages: &advantages,
                mask: &mask,
                importance_sampling_ratio: inputs.importance_sampling_ratio,
            },
        )?;
        let mut per_token = term.loss.clone();
        if let Some(o) = &off_policy {
            per_token = per_token.multiply(o)?;
        }
        if let Some(e) = &entropy_mask {
            per_token = per_token.multiply(e)?;
        }
        if let Some(ratio) = inputs.importance_sampling_ratio
            && s.loss_type != crate::config::LossType::Vespo
        {
            per_token = per_token.multiply(ratio)?;
        }
        if let Some(kl) = &kl {
            per_token = per_token.add(&kl.mul_scalar(s.beta)?)?;
        }

        let divisors = self.divisors(inputs);
        let reduced = reduce(s, &per_token, &mask, &divisors)?;
        let mut loss = reduced.loss;
        let mut metrics = LossMetrics::new();
        let mut entropy_window = None;

        if s.uses_entropy_bonus()
            && let Some(h) = inputs.entropies
        {
            let effective = match &entropy_mask {
                Some(e) => mask.multiply(e)?,
                None => mask.clone(),
            };
            let coef = inputs.entropy_coef.unwrap_or(s.entropy_coef);
            let bonus = entropy_term(h, &effective, divisors.accumulation)?;
            loss = loss.subtract(&bonus.mul_scalar(coef)?)?;
            metrics.push(names::POLICY_LOSS, &reduced.policy_loss)?;
            metrics.push(names::ENTROPY_COEF, &Array::scalar_as(coef, logps.dtype())?)?;
            if s.use_adaptive_entropy && inputs.mode == LossMode::Train {
                let h = h.stop_gradient()?;
                entropy_window = Some(EntropyWindow {
                    entropy_sum: h.multiply(&effective)?.sum(Axes::All, false)?,
                    tokens: effective.sum(Axes::All, false)?,
                });
            }
        }

        self.push_metrics(&mut metrics, inputs, &mask, &advantages, kl.as_ref(), &term)?;
        Ok(LossOutput {
            loss,
            metrics,
            entropy_window,
        })
    }

    fn push_metrics(
        &self,
        metrics: &mut LossMetrics,
        inputs: &LossInputs<'_>,
        mask: &Array,
        advantages: &Array,
        kl: Option<&Array>,
        term: &PolicyTerm,
    ) -> Result<()> {
        let s = &self.settings;
        if let Some(kl) = kl {
            metrics.push(names::KL, &global_masked_mean(kl, mask)?)?;
        }
        if let Some(h) = inputs.entropies {
            metrics.push(names::ENTROPY, &global_masked_mean(h, mask)?)?;
        }
        let advantages = advantages.stop_gradient()?;
        let zero = advantages.scalar_like(0.0)?;
        match (&term.clip_ratio, &term.phi) {
            (Some(ratio), _) if s.is_clipped_surrogate() => {
                let ratio = ratio.stop_gradient()?;
                let low = ratio
                    .lt(&ratio.scalar_like(1.0 - s.epsilon_low)?)?
                    .logical_and(&advantages.lt(&zero)?)?;
                let high = ratio
                    .gt(&ratio.scalar_like(1.0 + s.epsilon_high)?)?
                    .logical_and(&advantages.gt(&zero)?)?;
                let region = low.logical_or(&high)?;
                let dtype = ratio.dtype();
                let (low, high, region) = (
                    low.as_type(dtype)?,
                    high.as_type(dtype)?,
                    region.as_type(dtype)?,
                );
                metrics.push(names::CLIP_LOW_MEAN, &global_masked_mean(&low, mask)?)?;
                metrics.push(names::CLIP_HIGH_MEAN, &global_masked_mean(&high, mask)?)?;
                metrics.push(names::CLIP_REGION_MEAN, &global_masked_mean(&region, mask)?)?;
                metrics.push(names::CLIP_LOW_MIN, &nanmin(&masked_seq_mean(&low, mask)?)?)?;
                metrics.push(
                    names::CLIP_HIGH_MAX,
                    &nanmax(&masked_seq_mean(&high, mask)?)?,
                )?;
            }
            (Some(ratio), _) => {
                let ratio = ratio.stop_gradient()?;
                let capped = ratio
                    .gt(&ratio.scalar_like(s.epsilon_high)?)?
                    .logical_and(&advantages.gt(&zero)?)?
                    .as_type(ratio.dtype())?;
                metrics.push(names::CISPO_CLIP_RATIO, &global_masked_mean(&capped, mask)?)?;
            }
            (None, Some(phi)) => {
                metrics.push(names::VESPO_PHI_SEQ_MEAN, &global_masked_mean(phi, mask)?)?;
            }
            (None, None) => {}
        }
        Ok(())
    }
}
