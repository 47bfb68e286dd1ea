//! LoRA adapters from a [`GrpoConfig`]: TRL's `ModelConfig` fields
//! (`use_peft`, `lora_r`, `lora_alpha`, `lora_dropout`,
//! `lora_target_modules`, `use_rslora`) turned into adapters attached to a
//! model before the trainer is built. The trainer then updates what is
//! trainable: the adapter factors only.

use mlx_lm::LanguageModel;
use mlx_lm::loader::attach_lora;
use mlx_nn::layers::{LayerSelection, LoraConfig, TargetModules};

use super::GrpoConfig;
use crate::error::Result;

/// PEFT's default target modules for Qwen models, used when
/// `lora_target_modules` is not given.
pub const QWEN_DEFAULT_LORA_TARGETS: [&str; 2] = ["q_proj", "v_proj"];

impl GrpoConfig {
    /// The adapters' hyper-parameters (PEFT's `LoraConfig`).
    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig {
            r: self.lora_r,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            use_rslora: self.use_rslora,
        }
    }

    /// The modules to adapt: `lora_target_modules` (`["all-linear"]` is
    /// every linear layer but the output layer), or
    /// [`QWEN_DEFAULT_LORA_TARGETS`].
    pub fn lora_targets(&self) -> TargetModules {
        match &self.lora_target_modules {
            Some(names) if names.len() == 1 && names[0] == "all-linear" => TargetModules::AllLinear,
            Some(names) => TargetModules::Names(names.clone()),
            None => TargetModules::Names(
                QWEN_DEFAULT_LORA_TARGETS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
        }
    }

    /// Problems of the adapter fields, when `use_peft` is on.
    pub(super) fn check_adapters(&self, problems: &mut Vec<String>) {
        if !self.use_peft {
            return;
        }
        if self.lora_r <= 0 {
            problems.push(format!("lora_r must be positive, got {}", self.lora_r));
        }
        if !self.lora_alpha.is_finite() {
            problems.push(format!(
                "lora_alpha must be finite, got {}",
                self.lora_alpha
            ));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            problems.push(format!(
                "lora_dropout must lie in [0, 1), got {}",
                self.lora_dropout
            ));
        }
        if self
            .lora_target_modules
            .as_ref()
            .is_some_and(|names| names.is_empty())
        {
            problems.push("lora_target_modules must name at least one module".into());
        }
    }
}

/// With `use_peft`, wraps the modules `config` targets (in every block) in
/// fresh LoRA adapters drawn from `config.seed` and freezes everything
/// else, so training updates the adapters only (over a quantized model:
/// QLoRA). Returns the adapted module paths; without `use_peft` the model
/// is unchanged and the list is empty. Call it before building the
/// trainer. The trainer then switches adapter dropout (`lora_dropout > 0`)
/// off for rollouts and on for the training forward, checkpoints the
/// adapters alone and uses the base with the adapters off as the reference
/// model (see [`crate::trainer::adapters`]). Save the trained adapters with
/// [`mlx_lm::loader::attached_adapters`] and
/// [`mlx_lm::loader::save_adapters`].
pub fn attach_peft_adapters<M: LanguageModel>(
    model: &mut M,
    config: &GrpoConfig,
) -> Result<Vec<String>> {
    if !config.use_peft {
        return Ok(Vec::new());
    }
    Ok(attach_lora(
        model,
        config.lora_config(),
        config.lora_targets(),
        LayerSelection::All,
        config.seed,
    )?)
}
