//! [`LossSettings`]: the configuration fields that shape the GRPO loss.

use crate::config::{GrpoConfig, ImportanceSamplingLevel, LossType};

/// The settings of one GRPO loss, taken from a [`GrpoConfig`] by
/// [`LossSettings::from_config`]. Fields have TRL's names; `epsilon_low` is
/// TRL's name for `epsilon`.
///
/// The values are used as given: check them with
/// [`GrpoConfig::validate`](crate::config::GrpoConfig::validate) first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossSettings {
    /// The policy-loss formulation.
    pub loss_type: LossType,
    /// Token- or sequence-level importance ratios.
    pub importance_sampling_level: ImportanceSamplingLevel,
    /// KL coefficient; 0 leaves the KL term (and `ref_per_token_logps`) out.
    pub beta: f64,
    /// Lower clip range: ratios below `1 - epsilon_low` are clipped.
    pub epsilon_low: f64,
    /// Upper clip range (`1 + epsilon_high`); the weight cap itself for `cispo`.
    pub epsilon_high: f64,
    /// Cap on the unclipped ratio; `None` disables it.
    pub delta: Option<f64>,
    /// SAPO gate temperature for positive advantages.
    pub sapo_temperature_pos: f64,
    /// SAPO gate temperature for non-positive advantages.
    pub sapo_temperature_neg: f64,
    /// VESPO power exponent for non-negative advantages.
    pub vespo_k_pos: f64,
    /// VESPO decay for non-negative advantages.
    pub vespo_lambda_pos: f64,
    /// VESPO power exponent for negative advantages.
    pub vespo_k_neg: f64,
    /// VESPO decay for negative advantages.
    pub vespo_lambda_neg: f64,
    /// Fraction of valid tokens, by entropy, kept in the policy loss; 1 keeps all.
    pub top_entropy_quantile: f64,
    /// Off-policy sequence-mask threshold; `None` disables the mask.
    pub off_policy_mask_threshold: Option<f64>,
    /// Multiply the KL term by the importance ratio.
    pub use_bias_correction_kl: bool,
    /// Coefficient of the entropy bonus.
    pub entropy_coef: f64,
    /// Adaptive entropy control: the bonus is on even when `entropy_coef` is 0.
    pub use_adaptive_entropy: bool,
    /// Divisor of the `dr_grpo` loss (with the batch size).
    pub max_completion_length: usize,
    /// Micro-batches per optimiser step (TRL's `current_gradient_accumulation_steps`).
    pub gradient_accumulation_steps: usize,
    /// Micro-batches per generation batch.
    pub steps_per_generation: usize,
}

impl LossSettings {
    /// The loss settings of a training config (with TRL's derived values:
    /// `epsilon_high` defaults to `epsilon`, `steps_per_generation` is resolved).
    pub fn from_config(cfg: &GrpoConfig) -> Self {
        Self {
            loss_type: cfg.loss_type,
            importance_sampling_level: cfg.importance_sampling_level,
            beta: cfg.beta,
            epsilon_low: cfg.epsilon,
            epsilon_high: cfg.epsilon_high(),
            delta: cfg.delta,
            sapo_temperature_pos: cfg.sapo_temperature_pos,
            sapo_temperature_neg: cfg.sapo_temperature_neg,
            vespo_k_pos: cfg.vespo_k_pos,
            vespo_lambda_pos: cfg.vespo_lambda_pos,
            vespo_k_neg: cfg.vespo_k_neg,
            vespo_lambda_neg: cfg.vespo_lambda_neg,
            top_entropy_quantile: cfg.top_entropy_quantile,
            off_policy_mask_threshold: cfg.off_policy_mask_threshold,
            use_bias_correction_kl: cfg.use_bias_correction_kl,
            entropy_coef: cfg.entropy_coef,
            use_adaptive_entropy: cfg.use_adaptive_entropy,
            max_completion_length: cfg.max_completion_length,
            gradient_accumulation_steps: cfg.gradient_accumulation_steps,
            steps_per_generation: cfg.steps_per_generation(),
        }
    }

    /// Whether the entropy mask is on (`top_entropy_quantile < 1`).
    pub fn uses_entropy_mask(&self) -> bool {
        self.top_entropy_quantile < 1.0
    }

    /// Whether the entropy bonus is on (`entropy_coef != 0` or adaptive control).
    pub fn uses_entropy_bonus(&self) -> bool {
        self.entropy_coef != 0.0 || self.use_adaptive_entropy
    }

    /// Whether the loss is normalised by `num_items_in_batch` (`dapo`,
    /// `cispo`, `vespo`).
    pub fn needs_num_items_in_batch(&self) -> bool {
        matches!(
            self.loss_type,
            LossType::Dapo | LossType::Cispo | LossType::Vespo
        )
    }

    /// Whether the loss type is one of the clipped-surrogate family (`grpo`,
    /// `bnpo`, `dr_grpo`, `dapo`, `luspo`), which log the clip metrics.
    pub fn is_clipped_surrogate(&self) -> bool {
        matches!(
            self.loss_type,
            LossType::Grpo | LossType::Bnpo | LossType::DrGrpo | LossType::Dapo | LossType::Luspo
        )
    }
}
