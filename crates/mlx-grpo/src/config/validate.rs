//! `GrpoConfig::validate`: the checks of TRL's `GRPOConfig.__post_init__`,
//! `GRPOTrainer.__init__` and transformers' `TrainingArguments`, plus range
//! checks that TRL leaves to a later crash.

use std::fmt;

use super::{GrpoConfig, ImportanceSamplingLevel, LossType};
use crate::error::{Error, Result};

/// The longest prompt + completion, in tokens, a config may ask for: array
/// dimensions (and token positions) are `i32`.
pub const MAX_SEQUENCE_TOKENS: usize = i32::MAX as usize;

/// A setting that is allowed but probably not what was meant; TRL logs the
/// same situations as warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// What is odd, naming the fields and values.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl GrpoConfig {
    /// Checks the config and returns the warnings for settings that are legal
    /// but dubious.
    ///
    /// Rejected, as TRL rejects them: `generation_batch_size` and
    /// `steps_per_generation` both set; a `generation_batch_size` that is not a
    /// multiple of `per_device_train_batch_size` or of `num_generations`;
    /// `num_generations < 2`; `sync_ref_model` with `beta = 0`; a zero
    /// `logging_steps`; a negative `warmup_steps`. Also rejected: zero batch
    /// sizes or step counts, non-finite or out-of-range numbers (temperature
    /// <= 0, `top_p` outside (0, 1], quantiles and probabilities outside
    /// [0, 1], negative `beta`, SAPO temperatures <= 0, ...), `max_steps = 0`,
    /// no training length at all, the `vllm_importance_sampling_*` settings
    /// TRL rejects (`clip_min >= clip_max`, a `*_truncate` mode without
    /// bounds, `vespo` with a `sequence_*` mode), dynamic sampling with
    /// several processes, and a `max_completion_length` (plus
    /// `max_prompt_length`) beyond [`MAX_SEQUENCE_TOKENS`]. Every problem
    /// found is listed in the one error. The bound of the model's positions
    /// is checked by [`GrpoConfig::check_fits_model`] once the model is known.
    ///
    /// Warned, as TRL warns: `luspo` without sequence-level importance
    /// sampling, `vespo` with it, and sequence-level importance sampling with a
    /// token-summing loss (`bnpo`, `dr_grpo`, `dapo`, `cispo`); also a `delta`
    /// that does not exceed `1 + epsilon_high`.
    pub fn validate(&self) -> Result<Vec<ConfigWarning>> {
        self.validate_for_processes(1)
    }

    /// [`GrpoConfig::validate`] for a data-parallel run of `processes`
    /// processes: as in TRL, only the global generation batch
    /// (`processes × generation_batch_size()`) must be a multiple of
    /// `num_generations`, so a prompt's group may straddle processes.
    pub fn validate_for_processes(&self, processes: usize) -> Result<Vec<ConfigWarning>> {
        let mut problems = Vec::new();
        self.check_batching(processes.max(1), &mut problems);
        self.check_sequence_bound(&mut problems);
        self.check_ranges(&mut problems);
        self.check_schedule(&mut problems);
        self.check_adapters(&mut problems);
        self.check_rollout_correction(&mut problems);
        self.check_dynamic_sampling(processes, &mut problems);
        self.check_overlap_generation(&mut problems);
        if problems.is_empty() {
            Ok(self.warnings())
        } else {
            Err(Error::InvalidConfig {
                message: problems.join("; "),
            })
        }
    }

    /// The warnings of [`GrpoConfig::validate`] alone.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut out = Vec::new();
        let mut warn = |message: String| out.push(ConfigWarning { message });
        let level = self.importance_sampling_level;
        if self.loss_type == LossType::Luspo && level != ImportanceSamplingLevel::Sequence {
            warn(format!(
                "loss_type = \"luspo\" is meant for importance_sampling_level = \"sequence\" (got \"{level}\")"
            ));
        }
        if self.loss_type == LossType::Vespo && level != ImportanceSamplingLevel::Token {
            warn(format!(
                "loss_type = \"vespo\" computes sequence-level weights itself; importance_sampling_level should be \
                 \"token\" (got \"{level}\")"
            ));
        }
        let token_summing = matches!(
            self.loss_type,
            LossType::Bnpo | LossType::DrGrpo | LossType::Dapo | LossType::Cispo
        );
        if level == ImportanceSamplingLevel::Sequence && token_summing {
            warn(format!(
                "importance_sampling_level = \"sequence\" with loss_type = \"{}\" sums per-token terms, which weighs \
                 each sequence by its length; GSPO uses loss_type = \"grpo\"",
                self.loss_type
            ));
        }
        if let Some(delta) = self.delta {
            let upper = 1.0 + self.epsilon_high();
            if delta <= upper {
                warn(format!(
                    "delta = {delta} does not exceed 1 + epsilon_high = {upper}, so it caps ratios that clipping \
                     already bounds"
                ));
            }
        }
        out
    }

    fn check_batching(&self, processes: usize, problems: &mut Vec<String>) {
        let mut fail = |m: String| problems.push(m);
        if self.num_generations < 2 {
            fail(format!(
                "num_generations = {} but GRPO needs at least 2 generations per prompt to compute advantages",
                self.num_generations
            ));
        }
        for (name, value) in [
            (
                "per_device_train_batch_size",
                self.per_device_train_batch_size,
            ),
            (
                "gradient_accumulation_steps",
                self.gradient_accumulation_steps,
            ),
            ("num_iterations", self.num_iterations),
            ("max_completion_length", self.max_completion_length),
            ("logging_steps", self.logging_steps),
            ("save_steps", self.save_steps),
        ] {
            if value == 0 {
                fail(format!("{name} must be at least 1 (got 0)"));
            }
        }
        for (name, value) in [
            ("generation_batch_size", self.generation_batch_size),
            ("steps_per_generation", self.steps_per_generation),
            ("max_prompt_length", self.max_prompt_length),
            ("save_total_limit", self.save_total_limit),
        ] {
            if value == Some(0) {
                fail(format!("{name} must be at least 1 or unset (got 0)"));
            }
        }
        if self.sync_ref_model && self.ref_model_sync_steps == 0 {
            fail(
                "ref_model_sync_steps must be at least 1 when sync_ref_model = true (got 0)"
                    .to_string(),
            );
        }
        let per_device = self.per_device_train_batch_size;
        match (self.generation_batch_size, self.steps_per_generation) {
            (Some(gbs), Some(spg)) => fail(format!(
                "generation_batch_size ({gbs}) and steps_per_generation ({spg}) cannot both be set; set one and the \
                 other is derived from per_device_train_batch_size"
            )),
            (Some(gbs), None) if per_device > 0 && !gbs.is_multiple_of(per_device) => {
                fail(format!(
                    "generation_batch_size ({gbs}) must be divisible by per_device_train_batch_size ({per_device})"
                ))
            }
            _ => {}
        }
        let gbs = self.generation_batch_size().saturating_mul(processes);
        if self.num_generations > 0 && !gbs.is_multiple_of(self.num_generations) {
            fail(format!(
                "generation_batch_size ({gbs}{}) must be divisible by num_generations ({}) so that every prompt \
                 group is complete",
                if self.generation_batch_size.is_none() {
                    format!(
                        " = per_device_train_batch_size {} * steps_per_generation {}{}",
                        self.per_device_train_batch_size,
                        self.steps_per_generation(),
                        if processes > 1 {
                            format!(" * {processes} processes")
                        } else {
                            String::new()
                        }
                    )
                } else {
                    String::new()
                },
                self.num_generations
            ));
        }
        if self.sync_ref_model && self.beta == 0.0 {
            fail(
                "sync_ref_model = true needs a reference model, but beta = 0 disables it; set beta > 0 or \
                 sync_ref_model = false"
                    .to_string(),
            );
        }
    }

    /// The longest rows generation and training may build: at most
    /// `max_prompt_length` (1 when unset: every prompt has at least one
    /// token) plus `max_completion_length` tokens. `None` when that sum
    /// overflows.
    pub fn max_sequence_tokens(&self) -> Option<usize> {
        self.max_prompt_length
            .unwrap_or(1)
            .checked_add(self.max_completion_length)
    }

    /// Rejects a `max_completion_length` (with `max_prompt_length`) whose
    /// rows cannot fit a model with `max_position_embeddings` positions:
    /// the error names both settings. Called by the trainer once the model
    /// is known.
    pub fn check_fits_model(&self, max_position_embeddings: usize) -> Result<()> {
        let needed = self.max_sequence_tokens();
        if needed.is_some_and(|n| n <= max_position_embeddings) {
            return Ok(());
        }
        let prompt = match self.max_prompt_length {
            Some(p) => format!("max_prompt_length ({p})"),
            None => "a 1-token prompt".to_string(),
        };
        Err(Error::InvalidConfig {
            message: format!(
                "max_completion_length = {} with {prompt} needs {} positions, but the model has \
                 max_position_embeddings = {max_position_embeddings}",
                self.max_completion_length,
                needed.map_or_else(|| "more than usize::MAX".to_string(), |n| n.to_string())
            ),
        })
    }

    /// `max_prompt_length + max_completion_length` must be a row length the
    /// arrays can index ([`MAX_SEQUENCE_TOKENS`]).
    fn check_sequence_bound(&self, problems: &mut Vec<String>) {
        let fits = self
            .max_sequence_tokens()
            .is_some_and(|n| n <= MAX_SEQUENCE_TOKENS);
        if !fits {
            problems.push(format!(
                "max_completion_length = {}{} exceeds the longest sequence of {MAX_SEQUENCE_TOKENS} tokens",
                self.max_completion_length,
                match self.max_prompt_length {
                    Some(p) => format!(" plus max_prompt_length = {p}"),
                    None => String::new(),
                }
            ));
        }
    }

    fn check_ranges(&self, problems: &mut Vec<String>) {
        let mut check = |name: &str, value: f64, ok: bool, expected: &str| {
            if !value.is_finite() || !ok {
                problems.push(format!("{name} = {value} but it must be {expected}"));
            }
        };
        check(
            "temperature",
            self.temperature,
            self.temperature > 0.0,
            "> 0",
        );
        check(
            "top_p",
            self.top_p,
            self.top_p > 0.0 && self.top_p <= 1.0,
            "in (0, 1]",
        );
        if let Some(min_p) = self.min_p {
            check("min_p", min_p, (0.0..=1.0).contains(&min_p), "in [0, 1]");
        }
        if let Some(mb) = self.training_memory_headroom_mb {
            check(
                "training_memory_headroom_mb",
                mb as f64,
                mb >= 1,
                ">= 1 (or none)",
            );
        }
        if let Some(mb) = self.generation_memory_headroom_mb {
            check(
                "generation_memory_headroom_mb",
                mb as f64,
                mb >= 1,
                ">= 1 (or none)",
            );
        }
        if let Some(chunk) = self.generation_chunk_prompts {
            check(
                "generation_chunk_prompts",
                chunk as f64,
                chunk >= 1,
                ">= 1 (or none)",
            );
        }
        check(
            "repetition_penalty",
            self.repetition_penalty,
            self.repetition_penalty > 0.0,
            "> 0",
        );
        check("beta", self.beta, self.beta >= 0.0, ">= 0");
        check("epsilon", self.epsilon, self.epsilon >= 0.0, ">= 0");
        if let Some(high) = self.epsilon_high {
            check("epsilon_high", high, high >= 0.0, ">= 0");
        }
        if let Some(delta) = self.delta {
            check("delta", delta, delta > 0.0, "> 0");
        }
        check(
            "sapo_temperature_pos",
            self.sapo_temperature_pos,
            self.sapo_temperature_pos > 0.0,
            "> 0",
        );
        check(
            "sapo_temperature_neg",
            self.sapo_temperature_neg,
            self.sapo_temperature_neg > 0.0,
            "> 0",
        );
        for (name, value) in [
            ("vespo_k_pos", self.vespo_k_pos),
            ("vespo_lambda_pos", self.vespo_lambda_pos),
            ("vespo_k_neg", self.vespo_k_neg),
            ("vespo_lambda_neg", self.vespo_lambda_neg),
            ("entropy_coef", self.entropy_coef),
            ("entropy_coef_delta", self.entropy_coef_delta),
            ("entropy_target", self.entropy_target),
            ("router_aux_loss_coef", self.router_aux_loss_coef),
        ] {
            check(name, value, true, "finite");
        }
        let q = self.top_entropy_quantile;
        check(
            "top_entropy_quantile",
            q,
            (0.0..=1.0).contains(&q),
            "in [0, 1]",
        );
        let alpha = self.ref_model_mixup_alpha;
        check(
            "ref_model_mixup_alpha",
            alpha,
            (0.0..=1.0).contains(&alpha),
            "in [0, 1]",
        );
        if let Some(threshold) = self.off_policy_mask_threshold {
            check("off_policy_mask_threshold", threshold, true, "finite");
        }
        let (lo, hi) = (self.entropy_coef_min, self.entropy_coef_max);
        check(
            "entropy_coef_min",
            lo,
            lo <= hi,
            &format!("<= entropy_coef_max ({hi})"),
        );
        check(
            "learning_rate",
            self.learning_rate,
            self.learning_rate >= 0.0,
            ">= 0",
        );
        check(
            "weight_decay",
            self.weight_decay,
            self.weight_decay >= 0.0,
            ">= 0",
        );
        check(
            "adam_beta1",
            self.adam_beta1,
            (0.0..1.0).contains(&self.adam_beta1),
            "in [0, 1)",
        );
        check(
            "adam_beta2",
            self.adam_beta2,
            (0.0..1.0).contains(&self.adam_beta2),
            "in [0, 1)",
        );
        check(
            "adam_epsilon",
            self.adam_epsilon,
            self.adam_epsilon >= 0.0,
            ">= 0",
        );
        check(
            "max_grad_norm",
            self.max_grad_norm,
            self.max_grad_norm >= 0.0,
            ">= 0 (0 disables clipping)",
        );
        if let Some(weights) = &self.reward_weights
            && let Some((i, w)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite())
        {
            problems.push(format!(
                "reward_weights[{i}] = {w} but every weight must be finite"
            ));
        }
    }

    fn check_schedule(&self, problems: &mut Vec<String>) {
        if self.max_steps == 0 {
            problems.push("max_steps = 0 trains nothing; set max_steps > 0, or -1 to train for num_train_epochs".into());
        }
        if self.max_steps < 0 && !(self.num_train_epochs.is_finite() && self.num_train_epochs > 0.0)
        {
            problems.push(format!(
                "max_steps = {} means epoch-based training, but num_train_epochs = {} is not > 0",
                self.max_steps, self.num_train_epochs
            ));
        }
        if !(self.warmup_steps.is_finite() && self.warmup_steps >= 0.0) {
            problems.push(format!(
                "warmup_steps = {} but it must be >= 0",
                self.warmup_steps
            ));
        }
        if let Some(ratio) = self.warmup_ratio {
            if !(ratio.is_finite() && (0.0..=1.0).contains(&ratio)) {
                problems.push(format!("warmup_ratio = {ratio} but it must be in [0, 1]"));
            }
            if self.warmup_steps != 0.0 {
                problems.push(format!(
                    "warmup_ratio ({ratio}) and warmup_steps ({}) cannot both be set; warmup_steps < 1 is read as a \
                     ratio",
                    self.warmup_steps
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> GrpoConfig {
        GrpoConfig {
            num_generations: 4,
            per_device_train_batch_size: 4,
            ..GrpoConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid() -> std::result::Result<(), Box<dyn std::error::Error>> {
        assert_eq!(GrpoConfig::default().validate()?, vec![]);
        Ok(())
    }

    #[test]
    fn processes_share_prompt_groups() {
        // 2 completions per process, 4 per prompt: whole groups only across
        // two processes (TRL checks the global batch).
        let cfg = GrpoConfig {
            num_generations: 4,
            per_device_train_batch_size: 2,
            steps_per_generation: Some(1),
            ..GrpoConfig::default()
        };
        assert!(cfg.validate().is_err());
        assert!(cfg.validate_for_processes(2).is_ok());
        let err = cfg
            .validate_for_processes(3)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("* 3 processes"), "{err}");
    }

    #[test]
    fn rejects_indivisible_generation_batch() {
        let cfg = GrpoConfig {
            num_generations: 3,
            ..small()
        };
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(
            msg.contains("generation_batch_size (4") && msg.contains("num_generations (3)"),
            "{msg}"
        );
    }

    #[test]
    fn rejects_both_batch_knobs_and_reports_all_problems() {
        let cfg = GrpoConfig {
            generation_batch_size: Some(8),
            steps_per_generation: Some(2),
            temperature: 0.0,
            ..small()
        };
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(msg.contains("cannot both be set"), "{msg}");
        assert!(msg.contains("temperature = 0"), "{msg}");
    }

    #[test]
    fn rejects_single_generation_and_sync_without_beta() {
        let msg = GrpoConfig {
            num_generations: 1,
            ..small()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(msg.contains("num_generations = 1"), "{msg}");
        let msg = GrpoConfig {
            sync_ref_model: true,
            ..small()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("sync_ref_model") && msg.contains("beta = 0"),
            "{msg}"
        );
    }

    #[test]
    fn warns_like_trl() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let cfg = GrpoConfig {
            loss_type: LossType::Luspo,
            ..small()
        };
        let warnings = cfg.validate()?;
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].message.contains("luspo"));
        let cfg = GrpoConfig {
            importance_sampling_level: ImportanceSamplingLevel::Sequence,
            ..small()
        };
        assert!(cfg.validate()?[0].message.contains("dapo"));
        Ok(())
    }
}
