//! The trainer's handling of a model with LoRA adapters attached (by
//! [`crate::config::attach_peft_adapters`] or
//! [`mlx_lm::loader::load_and_attach_adapters`]), as TRL does with a PEFT
//! model:
//!
//! - checkpoints hold the adapters in PEFT's layout
//!   (`adapter_config.json`, `adapter_model.safetensors`) instead of the
//!   whole model, and resuming puts the saved factors back into the
//!   attached adapters (the frozen base comes from where the model was
//!   loaded);
//! - with β > 0 the reference model is the base with the adapters switched
//!   off ([`reference_without_adapters`]), which shares every weight with
//!   the policy: no second copy;
//! - adapter dropout is off while rolling out (generation, old and
//!   reference log-probabilities) and on in the training forward, where
//!   its masks come from a key derived from the seed, the step and the
//!   rank, so a resumed run draws the same masks;
//! - the trained model can be written merged ([`save_merged_model`]): in
//!   Hugging Face's layout, or over a quantized base (QLoRA) re-quantized
//!   in mlx-lm's layout or dequantized ([`MergedFormat`]), as mlx-lm's
//!   `fuse` does.

use std::path::Path;

use mlx_lm::loader::{
    ADAPTER_CONFIG, AdapterFormat, PEFT_WEIGHTS, SaveOptions, attached_adapters, block_count,
    load_adapters, save_adapters, set_adapters_enabled, set_adapters_training,
};
use mlx_lm::models::Model;
use mlx_nn::{ModuleExt, ParamMap};

pub use mlx_lm::loader::{MergedFormat, has_adapters};

use crate::config::GrpoConfig;
use crate::{Error, Result};

/// With adapters and β > 0 the reference is the frozen base, which
/// TR-DPO's reference updates (`sync_ref_model`) cannot move: that
/// combination is refused.
pub fn check_reference(config: &GrpoConfig, model: &Model) -> Result<()> {
    if config.beta != 0.0 && config.sync_ref_model && has_adapters(model) {
        return Err(Error::InvalidConfig {
            message: "sync_ref_model with LoRA adapters: the reference model is the base with the \
                      adapters switched off and cannot be synchronised; turn sync_ref_model off"
                .into(),
        });
    }
    Ok(())
}

/// Writes the model's attached adapters into `dir` in PEFT's layout.
pub fn save_adapter_checkpoint(model: &Model, dir: &Path) -> Result<()> {
    let adapters = attached_adapters(model)?
        .ok_or_else(|| Error::internal("saving adapters of a model that has none attached"))?;
    save_adapters(&adapters, dir, AdapterFormat::Peft, block_count(model))?;
    Ok(())
}

/// Puts the adapter factors saved in `checkpoint` (PEFT's layout) into the
/// model's attached adapters. The checkpoint must adapt the same modules
/// with the same settings (rank, alpha, dropout, rsLoRA); factors are cast
/// to the attached adapters' dtype.
pub fn restore_adapters(model: &mut Model, checkpoint: &Path) -> Result<()> {
    let weights = checkpoint.join(PEFT_WEIGHTS);
    if !weights.is_file() {
        return Err(Error::checkpoint(
            &weights,
            PEFT_WEIGHTS,
            "missing: the model has adapters attached, but this checkpoint holds none (it was \
             saved from a model without adapters)",
        ));
    }
    let config_path = checkpoint.join(ADAPTER_CONFIG);
    let (saved, _) = load_adapters(checkpoint)?;
    let current = attached_adapters(model)?
        .ok_or_else(|| Error::internal("restoring adapters into a model that has none"))?;
    if saved.config != current.config {
        return Err(Error::checkpoint(
            &config_path,
            "r, lora_alpha, lora_dropout, use_rslora",
            format!(
                "saved {:?} but the attached adapters have {:?}",
                saved.config, current.config
            ),
        ));
    }
    let saved_names: Vec<&String> = saved.modules.keys().collect();
    let current_names: Vec<&String> = current.modules.keys().collect();
    if saved_names != current_names {
        let missing: Vec<&&String> = current_names
            .iter()
            .filter(|m| !saved.modules.contains_key(**m))
            .collect();
        let extra: Vec<&&String> = saved_names
            .iter()
            .filter(|m| !current.modules.contains_key(**m))
            .collect();
        return Err(Error::checkpoint(
            &weights,
            "target modules",
            format!(
                "the checkpoint lacks adapters of {missing:?} and has adapters of {extra:?} \
                 that the model does not"
            ),
        ));
    }
    let mut values = ParamMap::new();
    for (path, factors) in &saved.modules {
        let Some(attached) = current.modules.get(path) else {
            continue;
        };
        for (suffix, value, like) in [
            ("lora_A.weight", &factors.a, &attached.a),
            ("lora_B.weight", &factors.b, &attached.b),
        ] {
            let name = format!("{path}.{suffix}");
            if value.shape() != like.shape() {
                return Err(Error::checkpoint(
                    &weights,
                    format!("base_model.model.{name}"),
                    format!(
                        "shape {:?}, but the attached adapter's is {:?}",
                        value.shape().0,
                        like.shape().0
                    ),
                ));
            }
            values.insert(name, value.as_type(like.dtype())?);
        }
    }
    model.update(&values)?;
    model.eval_params()?;
    Ok(())
}

/// The reference model of GRPO with adapters: the policy with every
/// adapter switched off, i.e. the frozen base. It shares the policy's
/// arrays (no weight is copied).
pub fn reference_without_adapters(model: &Model) -> Result<Model> {
    let mut reference = model.clone();
    set_adapters_enabled(&mut reference, false)?;
    Ok(reference)
}

/// Switches adapter dropout off for rolling out (`false`) or on for the
/// training forward (`true`); when switching it on, seeds the random key
/// sequence the dropout masks are drawn from with `seed`, `step` and `rank`
/// (so the masks of a step are the same in a resumed run). A model without
/// adapters is left alone (and the key sequence unseeded). Each block
/// draws its masks from a key of its own, so gradient checkpointing
/// recomputes a block with the masks of its first pass.
pub fn set_adapter_mode(model: &mut Model, training: bool, seed: u64, step: usize, rank: usize) {
    if !has_adapters(model) {
        return;
    }
    set_adapters_training(model, training);
    if training {
        let stream = (step as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add((rank as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9));
        mlx_tensor::random::seed(seed ^ stream ^ 0x4c6f_5241_4472_6f70);
    }
}

/// Writes the model with its adapters folded into the weights (PEFT's
/// `merge_and_unload`, mlx-lm's `fuse`) to `dir`; the model itself keeps
/// its adapters. A model without adapters is written as it is. Over a dense
/// base both formats write Hugging Face's layout; over a quantized base
/// (QLoRA) `format` chooses between the adapted layers quantized again
/// with their group size and bits, the other layers kept packed (mlx-lm's
/// quantized layout, [`MergedFormat::Requantized`]), and a dense model
/// with every weight dequantized (Hugging Face's layout, no `quantization`
/// entry, [`MergedFormat::Dequantized`]; mlx-lm's `fuse --dequantize`).
pub fn save_merged_model(
    model: &Model,
    dir: &Path,
    format: MergedFormat,
    options: &SaveOptions,
) -> Result<()> {
    mlx_lm::loader::save_merged_model(model, dir, format, options)?;
    Ok(())
}
