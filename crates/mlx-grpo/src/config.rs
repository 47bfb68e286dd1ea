//! [`GrpoConfig`]: every GRPO training setting, with TRL 1.16's field names and
//! defaults (and transformers' `TrainingArguments` names and defaults for the
//! optimiser, schedule and bookkeeping fields).
//!
//! Load a config from TOML or JSON with [`GrpoConfig::from_file`], override
//! single fields from a command line with [`GrpoConfig::set`], then call
//! [`GrpoConfig::validate`] before training. Values that TRL derives in its
//! `__post_init__` (the generation batch size, steps per generation, the upper
//! clip bound) are read through accessors such as
//! [`GrpoConfig::generation_batch_size`], so that the struct keeps exactly what
//! the user wrote and round-trips through serde.
//!
//! ```
//! use mlx_grpo::config::{GrpoConfig, LossType};
//!
//! let mut cfg = GrpoConfig::from_toml_str("num_generations = 4\nper_device_train_batch_size = 4\n")?;
//! cfg.set("loss_type", "grpo")?;
//! cfg.set("--gradient-accumulation-steps", "2")?;
//! cfg.validate()?;
//! assert_eq!(cfg.loss_type, LossType::Grpo);
//! assert_eq!(cfg.generation_batch_size(), 8); // per_device_train_batch_size * steps_per_generation
//! # Ok::<(), mlx_grpo::Error>(())
//! ```

mod adapters;
mod enums;
mod overrides;
mod sampling_checks;
mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use adapters::{QWEN_DEFAULT_LORA_TARGETS, attach_peft_adapters};
pub use enums::{
    DynamicSamplingOnCap, ImportanceSamplingLevel, ImportanceSamplingMode, LossType,
    LrSchedulerType, MultiObjectiveAggregation, Optim, ScaleRewards,
};
pub use validate::{ConfigWarning, MAX_SEQUENCE_TOKENS};

use crate::error::{Error, Result};

/// GRPO training configuration.
///
/// Field names and defaults follow TRL 1.16's `GRPOConfig`; fields inherited
/// from transformers' `TrainingArguments` follow transformers 5 (with TRL's
/// overrides: `learning_rate = 1e-6`, `logging_steps = 10`). Fields of TRL that
/// concern vLLM, DeepSpeed, multimodal inputs or the Hub are left out; the
/// adapter fields are those of TRL's `ModelConfig` (`use_peft`, `lora_r`, …).
/// Unknown fields are rejected when loading, so a misspelt key is an error
/// rather than a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpoConfig {
    // ---- data ----
    /// Completions sampled per prompt (the group size G). At least 2.
    pub num_generations: usize,
    /// Longest prompt, in tokens: a rendered prompt that is longer keeps only
    /// its last `max_prompt_length` tokens (left truncation, as TRL applied
    /// it through its tokenizer's `truncation_side = "left"` up to 0.27), and
    /// the first cut of a run is reported on standard error. `None` keeps
    /// prompts whole. (TRL has since removed the field and never truncates;
    /// kept here because a fixed bound is useful on small devices.)
    pub max_prompt_length: Option<usize>,
    /// Most tokens generated per completion. Also the constant divisor of the
    /// `dr_grpo` loss.
    pub max_completion_length: usize,
    /// Generate a rollout this many prompts at a time (each with its
    /// `num_generations` completions) instead of all at once, so that the
    /// KV cache holds only one chunk's rows: `64 × (prompt + completion)`
    /// positions of a Qwen3-0.6B cache are ~3 GB. Fewer rows per decoding
    /// step make the rollout slower; `None` (default) generates the whole
    /// batch at once. Chunking only bounds memory: every completion row
    /// samples with its own keys, so a chunked rollout samples the same
    /// completions as an unchunked one. Not a TRL field.
    pub generation_chunk_prompts: Option<usize>,
    /// Shuffle the prompts each epoch.
    pub shuffle_dataset: bool,

    // ---- generation ----
    /// Completions generated at once. `None` derives it as
    /// `per_device_train_batch_size * steps_per_generation`. Mutually exclusive
    /// with `steps_per_generation`.
    pub generation_batch_size: Option<usize>,
    /// Optimisation micro-steps served by one generation batch. `None` derives
    /// it from `generation_batch_size`, or else uses
    /// `gradient_accumulation_steps`.
    pub steps_per_generation: Option<usize>,
    /// Sampling temperature; the training log-probabilities use the same value.
    pub temperature: f64,
    /// Nucleus-sampling threshold in (0, 1]; 1 disables it.
    pub top_p: f64,
    /// Keep only the k most likely tokens; 0 disables it.
    pub top_k: usize,
    /// Minimum probability relative to the most likely token, in [0, 1].
    pub min_p: Option<f64>,
    /// Penalty for tokens already present (> 1 discourages repetition).
    pub repetition_penalty: f64,

    // ---- loss ----
    /// KL coefficient. 0 disables the reference model.
    pub beta: f64,
    /// Optimisation passes over each generation batch (μ in the GRPO paper).
    pub num_iterations: usize,
    /// Lower clip range: ratios below `1 - epsilon` are clipped.
    pub epsilon: f64,
    /// Upper clip range; `None` means `epsilon`. For `cispo` it is the cap on
    /// the importance weight itself.
    pub epsilon_high: Option<f64>,
    /// Two-sided clipping cap on the unclipped ratio (INTELLECT-2); `None`
    /// disables it.
    pub delta: Option<f64>,
    /// Token- or sequence-level importance ratios.
    pub importance_sampling_level: ImportanceSamplingLevel,
    /// Loss formulation.
    pub loss_type: LossType,
    /// SAPO gate temperature for tokens with positive advantage.
    pub sapo_temperature_pos: f64,
    /// SAPO gate temperature for tokens with non-positive advantage.
    pub sapo_temperature_neg: f64,
    /// VESPO power exponent k for non-negative advantages.
    pub vespo_k_pos: f64,
    /// VESPO decay λ for non-negative advantages.
    pub vespo_lambda_pos: f64,
    /// VESPO power exponent k for negative advantages.
    pub vespo_k_neg: f64,
    /// VESPO decay λ for negative advantages.
    pub vespo_lambda_neg: f64,
    /// Drop truncated completions (no EOS) from the loss.
    pub mask_truncated_completions: bool,
    /// Keep only the top-ρ quantile of tokens by entropy in the policy loss;
    /// 1 keeps all tokens.
    pub top_entropy_quantile: f64,
    /// Coefficient of the entropy bonus (`loss -= coef * mean entropy`).
    pub entropy_coef: f64,
    /// Adapt `entropy_coef` each optimiser step towards `entropy_target`.
    pub use_adaptive_entropy: bool,
    /// Lower bound of the adaptive entropy coefficient.
    pub entropy_coef_min: f64,
    /// Upper bound of the adaptive entropy coefficient.
    pub entropy_coef_max: f64,
    /// Step of the adaptive entropy coefficient.
    pub entropy_coef_delta: f64,
    /// Target mean token entropy (nats) of adaptive entropy control.
    pub entropy_target: f64,
    /// Off-policy sequence masking threshold (DeepSeek-V3.2); `None` disables it.
    pub off_policy_mask_threshold: Option<f64>,
    /// Multiply the KL term by the importance ratio (unbiased reverse-KL gradient).
    pub use_bias_correction_kl: bool,
    /// Mix the policy into the reference model every `ref_model_sync_steps` (TR-DPO).
    pub sync_ref_model: bool,
    /// α of the reference update `ref = α·policy + (1-α)·ref`.
    pub ref_model_mixup_alpha: f64,
    /// Steps between reference-model updates.
    pub ref_model_sync_steps: usize,
    /// Most tool-calling turns per rollout; `None` means no limit.
    pub max_tool_calling_iterations: Option<usize>,
    /// Weight of the router load-balancing loss added to the training loss
    /// of a mixture-of-experts model (TRL's `router_aux_loss_coef`; no
    /// effect on dense models, 0 disables it). Used instead of the model
    /// config's value, as in TRL.
    pub router_aux_loss_coef: f64,

    // ---- rollout-versus-training correction (TRL's vLLM importance sampling) ----
    /// Correct for the mismatch between the sampler's log-probabilities
    /// (recorded while decoding: packed weights, decoding kernels, the KV
    /// cache's dtype) and the training forward's (TRL
    /// `vllm_importance_sampling_correction`). When on, the old
    /// log-probabilities are always computed, the importance ratio
    /// `exp(old_logp - sampling_logp)` is shaped by
    /// `vllm_importance_sampling_mode` and multiplies the per-token policy
    /// loss (before the KL term; VESPO takes it into its gamma weights), the
    /// sampler's log-probabilities replace the old ones in the off-policy
    /// mask, and the `sampling/*` metrics are logged, all as TRL does with
    /// vLLM. **Off by default**: TRL's default `True` only acts with vLLM,
    /// and its own-generation path (the analogue of this trainer's sampler)
    /// never corrects; turning it on costs one more forward pass per
    /// generation batch.
    pub vllm_importance_sampling_correction: bool,
    /// How the correction's ratios are computed and bounded (TRL
    /// `vllm_importance_sampling_mode`, default `sequence_mask`).
    pub vllm_importance_sampling_mode: ImportanceSamplingMode,
    /// Upper bound C_max of the correction's ratios (TRL
    /// `vllm_importance_sampling_clip_max`, default 3; `None`: no upper
    /// bound). The deprecated TRL name `vllm_importance_sampling_cap` is
    /// accepted in config files.
    #[serde(alias = "vllm_importance_sampling_cap")]
    pub vllm_importance_sampling_clip_max: Option<f64>,
    /// Lower bound C_min of the correction's ratios (TRL
    /// `vllm_importance_sampling_clip_min`, default `None`: no lower bound).
    pub vllm_importance_sampling_clip_min: Option<f64>,

    // ---- dynamic sampling (DAPO) ----
    /// Drop the prompt groups whose completions all got the same reward (no
    /// advantage, so no policy gradient) and generate more prompts until the
    /// generation batch holds only informative groups (DAPO's dynamic
    /// sampling). Extra prompts continue the sampler's order, so with
    /// `max_steps = -1` a run goes through more than `num_train_epochs` of
    /// the data. Single-process runs only. Not a TRL field.
    pub dynamic_sampling: bool,
    /// Most generation rounds dynamic sampling adds to the first one for
    /// one generation batch (0: only drop uniform groups of the first).
    pub dynamic_sampling_max_extra_rounds: usize,
    /// What to do when the extra rounds are used up with the batch not yet
    /// full: `train_on_kept` (default) or `pad_with_dropped`.
    pub dynamic_sampling_on_cap: DynamicSamplingOnCap,

    // ---- generation overlapped with training ----
    /// Generate the next generation batch while the current one trains
    /// (one-step off-policy GRPO): a second thread samples batch `k + 1`
    /// with the weights batch `k` starts training from, so on a GPU the
    /// decoding and the training kernels run side by side instead of in
    /// turn. The samples are then one optimizer step (one generation batch)
    /// old when they train; the rollout-versus-training correction
    /// (`vllm_importance_sampling_correction`, required) weighs each token
    /// by the ratio of the training policy to the policy that sampled it.
    /// With a frozen policy the run is the synchronous run bit for bit.
    /// Memory: once an update replaces the weights, the sampling thread
    /// still holds the previous ones (trained weights twice; with adapters,
    /// only the adapters twice) and its KV cache lives beside the training
    /// pass's activations. Off by default. Not a TRL field.
    pub overlap_generation: bool,

    // ---- rewards ----
    /// One weight per reward function; `None` weighs each by 1.
    pub reward_weights: Option<Vec<f32>>,
    /// How rewards are scaled into advantages.
    pub scale_rewards: ScaleRewards,
    /// How several reward functions are combined.
    pub multi_objective_aggregation: MultiObjectiveAggregation,

    // ---- optimisation (transformers TrainingArguments) ----
    /// Completions per micro-batch.
    pub per_device_train_batch_size: usize,
    /// Micro-batches accumulated per optimiser step.
    pub gradient_accumulation_steps: usize,
    /// Peak learning rate (TRL default 1e-6).
    pub learning_rate: f64,
    /// Learning-rate schedule.
    pub lr_scheduler_type: LrSchedulerType,
    /// Warmup: a step count when >= 1, a fraction of the total steps when < 1
    /// (transformers 5 semantics).
    pub warmup_steps: f64,
    /// Warmup as a fraction of the total steps (transformers 4 name); when set
    /// it must lie in [0, 1] and `warmup_steps` must be 0.
    pub warmup_ratio: Option<f64>,
    /// Weight decay.
    pub weight_decay: f64,
    /// Adam β1.
    pub adam_beta1: f64,
    /// Adam β2.
    pub adam_beta2: f64,
    /// Adam ε.
    pub adam_epsilon: f64,
    /// Gradient clipping norm; 0 disables clipping.
    pub max_grad_norm: f64,
    /// Gradient checkpointing (`gradient_checkpointing`; on by default, as
    /// in TRL's `GRPOConfig`): the training forward pass keeps only each decoder
    /// layer's input and recomputes the layer's activations in the backward
    /// pass, trading about one more forward pass of compute for most of the
    /// activation memory. Values and gradients are unchanged.
    pub gradient_checkpointing: bool,
    /// Working memory, in MiB, that a training step may hold beyond the
    /// weights, the optimizer state and the running gradient sum: during
    /// the loss and backward passes MLX's memory limit is lowered to that
    /// total, so evaluation waits for queued work instead of allocating far
    /// ahead of the device (which otherwise keeps the buffers of many queued
    /// layers and logit chunks alive at once). `None` leaves the limit
    /// alone. Not a TRL field.
    pub training_memory_headroom_mb: Option<usize>,
    /// Working memory, in MiB, that the rollout's decoding may hold beyond
    /// the weights and the KV cache at its final size
    /// ([`BatchOptions::memory_headroom_mb`](mlx_lm::generate::BatchOptions::memory_headroom_mb)):
    /// bounds the cache copies that decoding ahead of the device makes, at
    /// some cost in speed when the bound is tight. `None` (default) leaves
    /// the limit alone. Not a TRL field.
    pub generation_memory_headroom_mb: Option<usize>,
    /// Keeps the optimizer state (AdamW's two moments: twice the trainable
    /// weights' bytes) in host memory between updates, as DeepSpeed's
    /// `offload_optimizer` does: the rollout and the loss and backward
    /// passes run without it on the device, and each update brings one
    /// group of parameters' state over at a time
    /// ([`Optimizer::set_state_on_host`](mlx_nn::optim::Optimizer::set_state_on_host)).
    /// The updates are bit for bit the same; each step copies the state to
    /// the device and back once. Off by default. Not a TRL field.
    pub offload_optimizer_state: bool,
    /// Optimiser.
    pub optim: Optim,
    /// Random seed (sampler shuffling, generation).
    pub seed: u64,
    /// Total optimiser steps; a negative value trains for `num_train_epochs`.
    pub max_steps: i64,
    /// Epochs over the dataset when `max_steps` is negative.
    pub num_train_epochs: f64,

    // ---- bookkeeping ----
    /// Optimiser steps between metric logs.
    pub logging_steps: usize,
    /// Optimiser steps between checkpoints.
    pub save_steps: usize,
    /// Most checkpoints kept in `output_dir`; `None` keeps all.
    pub save_total_limit: Option<usize>,
    /// Where checkpoints and logs go.
    pub output_dir: PathBuf,
    /// Checkpoint to resume from.
    pub resume_from_checkpoint: Option<PathBuf>,
    /// Log a sample of (prompt, completion) pairs every `logging_steps`.
    pub log_completions: bool,
    /// How many completions to print when logging them; `None` prints all.
    pub num_completions_to_print: Option<usize>,

    // ---- adapters (TRL's `ModelConfig`, applied by `attach_peft_adapters`) ----
    /// Train LoRA adapters instead of the whole model (TRL's `use_peft`).
    pub use_peft: bool,
    /// Adapter rank (TRL's `lora_r`, default 16).
    pub lora_r: i32,
    /// Adapter scale numerator (TRL's `lora_alpha`, default 32).
    pub lora_alpha: f32,
    /// Dropout on the adapters' input (TRL's `lora_dropout`, default 0.05).
    pub lora_dropout: f32,
    /// Module names to adapt (TRL's `lora_target_modules`): names such as
    /// `q_proj`, or `["all-linear"]`. `None` takes PEFT's default for Qwen
    /// models, `q_proj` and `v_proj`.
    pub lora_target_modules: Option<Vec<String>>,
    /// rsLoRA scaling `lora_alpha / sqrt(r)` (TRL's `use_rslora`).
    pub use_rslora: bool,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            num_generations: 8,
            max_prompt_length: None,
            max_completion_length: 512,
            generation_chunk_prompts: None,
            shuffle_dataset: true,
            generation_batch_size: None,
            steps_per_generation: None,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: None,
            repetition_penalty: 1.0,
            beta: 0.0,
            num_iterations: 1,
            epsilon: 0.2,
            epsilon_high: None,
            delta: None,
            importance_sampling_level: ImportanceSamplingLevel::Token,
            loss_type: LossType::Dapo,
            sapo_temperature_pos: 1.0,
            sapo_temperature_neg: 1.05,
            vespo_k_pos: 2.0,
            vespo_lambda_pos: 3.0,
            vespo_k_neg: 3.0,
            vespo_lambda_neg: 2.0,
            mask_truncated_completions: false,
            top_entropy_quantile: 1.0,
            entropy_coef: 0.0,
            use_adaptive_entropy: false,
            entropy_coef_min: 0.0,
            entropy_coef_max: 1.0,
            entropy_coef_delta: 0.005,
            entropy_target: 0.2,
            off_policy_mask_threshold: None,
            use_bias_correction_kl: true,
            sync_ref_model: false,
            ref_model_mixup_alpha: 0.6,
            ref_model_sync_steps: 512,
            max_tool_calling_iterations: None,
            router_aux_loss_coef: 0.001,
            vllm_importance_sampling_correction: false,
            vllm_importance_sampling_mode: ImportanceSamplingMode::SequenceMask,
            vllm_importance_sampling_clip_max: Some(3.0),
            vllm_importance_sampling_clip_min: None,
            dynamic_sampling: false,
            overlap_generation: false,
            dynamic_sampling_max_extra_rounds: 4,
            dynamic_sampling_on_cap: DynamicSamplingOnCap::TrainOnKept,
            reward_weights: None,
            scale_rewards: ScaleRewards::Group,
            multi_objective_aggregation: MultiObjectiveAggregation::SumThenNormalize,
            per_device_train_batch_size: 8,
            gradient_accumulation_steps: 1,
            learning_rate: 1e-6,
            lr_scheduler_type: LrSchedulerType::Linear,
            warmup_steps: 0.0,
            warmup_ratio: None,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            gradient_checkpointing: true,
            training_memory_headroom_mb: Some(1024),
            generation_memory_headroom_mb: None,
            offload_optimizer_state: false,
            optim: Optim::AdamW,
            seed: 42,
            max_steps: -1,
            num_train_epochs: 3.0,
            logging_steps: 10,
            save_steps: 500,
            save_total_limit: None,
            output_dir: PathBuf::from("trainer_output"),
            resume_from_checkpoint: None,
            log_completions: false,
            num_completions_to_print: None,
            use_peft: false,
            lora_r: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.05,
            lora_target_modules: None,
            use_rslora: false,
        }
    }
}

impl GrpoConfig {
    /// Loads a config from a `.toml` or `.json` file; missing fields take their
    /// defaults. Does not validate: call [`GrpoConfig::validate`] after any
    /// overrides.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match ext.as_deref() {
            Some("toml") => "TOML",
            Some("json") => "JSON",
            _ => {
                return Err(Error::UnsupportedConfigFormat {
                    path: path.to_path_buf(),
                });
            }
        };
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed = if format == "TOML" {
            toml::from_str(&text).map_err(|e| e.to_string())
        } else {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|message| Error::ConfigParse {
            path: path.to_path_buf(),
            format,
            message,
        })
    }

    /// Parses a config from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::ConfigParse {
            path: PathBuf::from("<string>"),
            format: "TOML",
            message: e.to_string(),
        })
    }

    /// Parses a config from JSON text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::ConfigParse {
            path: PathBuf::from("<string>"),
            format: "JSON",
            message: e.to_string(),
        })
    }

    /// The config as pretty-printed JSON (for checkpoints and logs).
    pub fn to_json_pretty(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::InvalidConfig {
            message: e.to_string(),
        })
    }

    /// Steps per generation as TRL resolves it: the explicit value, else
    /// `generation_batch_size / per_device_train_batch_size`, else
    /// `gradient_accumulation_steps`.
    pub fn steps_per_generation(&self) -> usize {
        match (self.steps_per_generation, self.generation_batch_size) {
            (Some(steps), _) => steps,
            (None, Some(batch)) => batch / self.per_device_train_batch_size.max(1),
            (None, None) => self.gradient_accumulation_steps,
        }
    }

    /// Generation batch size as TRL resolves it: the explicit value, else
    /// `per_device_train_batch_size * steps_per_generation()`.
    pub fn generation_batch_size(&self) -> usize {
        self.generation_batch_size
            .unwrap_or_else(|| self.per_device_train_batch_size * self.steps_per_generation())
    }

    /// Distinct prompts per generation batch: `generation_batch_size() / num_generations`.
    pub fn prompts_per_generation(&self) -> usize {
        self.generation_batch_size() / self.num_generations.max(1)
    }

    /// Micro-steps between two generations: `steps_per_generation() * num_iterations`.
    pub fn generate_every(&self) -> usize {
        self.steps_per_generation() * self.num_iterations
    }

    /// The upper clip bound: `epsilon_high`, or `epsilon` when unset.
    pub fn epsilon_high(&self) -> f64 {
        self.epsilon_high.unwrap_or(self.epsilon)
    }

    /// Whether old log-probabilities must be recorded at generation time. TRL
    /// skips them (using the current, detached log-probabilities) when every
    /// generation batch is consumed within one optimiser step, i.e. when
    /// `gradient_accumulation_steps` is a multiple of `generate_every()`,
    /// unless the rollout-versus-training correction is on
    /// (`vllm_importance_sampling_correction`), which always needs them.
    pub fn needs_old_logps(&self) -> bool {
        let every = self.generate_every().max(1);
        !self.gradient_accumulation_steps.is_multiple_of(every)
            || self.vllm_importance_sampling_correction
    }

    /// Optimiser steps in one epoch over `num_prompts` prompts, as the
    /// transformers trainer counts them with TRL's repeat sampler:
    /// `ceil(floor(num_prompts / prompts_per_generation()) * generate_every() / gradient_accumulation_steps)`,
    /// and at least 1.
    pub fn optimizer_steps_per_epoch(&self, num_prompts: usize) -> usize {
        let per_batch = self.prompts_per_generation().max(1);
        let micro_steps = (num_prompts / per_batch) * self.generate_every();
        let accumulation = self.gradient_accumulation_steps.max(1);
        micro_steps.div_ceil(accumulation).max(1)
    }

    /// Total optimiser steps: `max_steps` when positive, else
    /// `ceil(num_train_epochs * optimizer_steps_per_epoch(num_prompts))`.
    pub fn total_optimizer_steps(&self, num_prompts: usize) -> usize {
        match usize::try_from(self.max_steps) {
            Ok(steps) if steps > 0 => steps,
            _ => {
                let per_epoch = self.optimizer_steps_per_epoch(num_prompts) as f64;
                (self.num_train_epochs.max(0.0) * per_epoch).ceil() as usize
            }
        }
    }

    /// Warmup steps for a run of `total_steps` optimiser steps:
    /// `ceil(total_steps * warmup_ratio)` when `warmup_ratio` is set, else
    /// `warmup_steps` when it is >= 1, else `ceil(total_steps * warmup_steps)`.
    pub fn warmup_steps_for(&self, total_steps: usize) -> usize {
        let fraction = |f: f64| (total_steps as f64 * f.max(0.0)).ceil() as usize;
        match self.warmup_ratio {
            Some(ratio) => fraction(ratio),
            None if self.warmup_steps >= 1.0 => self.warmup_steps as usize,
            None => fraction(self.warmup_steps),
        }
    }

    /// The reward weights for `num_functions` reward functions: the configured
    /// ones (which must have that length, as TRL requires) or all 1.
    pub fn reward_weights_for(&self, num_functions: usize) -> Result<Vec<f32>> {
        match &self.reward_weights {
            None => Ok(vec![1.0; num_functions]),
            Some(w) if w.len() == num_functions => Ok(w.clone()),
            Some(w) => Err(Error::RewardWeightCount {
                weights: w.len(),
                functions: num_functions,
            }),
        }
    }
}
