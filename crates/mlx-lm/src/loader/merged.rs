//! Writing a model with its adapters folded in (mlx-lm's `fuse`, PEFT's
//! `merge_and_unload`), also over a quantized base (QLoRA).

use std::path::Path;

use mlx_nn::{ModuleExt, ParamMap};
use mlx_tensor::Quantized;
use serde_json::Value;

use super::adapter_attach::{fuse_attached_adapters, fuse_attached_adapters_requantized};
use super::quantize::{model_quantization, packed_module_specs, save_quantized_model};
use super::save::{SaveOptions, save_checkpoint, save_model};
use crate::files::{read_json_optional, write_json};
use crate::models::{Model, ModelConfig};
use crate::{Error, Result};

/// How [`save_merged_model`] writes a model whose base has packed
/// (quantized) weights. For a model without packed weights both write the
/// same dense checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergedFormat {
    /// mlx-lm's `fuse`: each adapted quantized layer is dequantized, the
    /// update added and the sum quantized again with the layer's group size
    /// and bits; the other packed layers stay as they are. Written in
    /// mlx-lm's quantized layout (see [`save_quantized_model`]), which our
    /// loader and mlx-lm's read, with the setting most packed layers use as
    /// the default ([`model_quantization`]). Float layers that mlx-lm's rule
    /// quantizes with that setting are quantized too: the same as the base
    /// for checkpoints mlx-lm wrote, but a layer a checkpoint keeps dense
    /// by a per-module `false` entry comes out quantized; Qwen3-MoE routers,
    /// which loading dequantizes, are quantized anew (8 bits, group 64).
    #[default]
    Requantized,
    /// mlx-lm's `fuse --dequantize`: the adapted layers are fused into
    /// dense ones and every packed weight dequantized; written as a dense
    /// Hugging Face checkpoint without a `quantization` entry.
    Dequantized,
}

/// Writes `model` with its attached adapters folded in to `dir` in
/// `format`; the model itself keeps its adapters. A model without adapters
/// is written as it is (quantized or, with [`MergedFormat::Dequantized`],
/// dequantized). `options` are those of [`save_model`]; with
/// `Requantized`, a float `options.dtype` casts the float weights before
/// the adapted layers are quantized again.
pub fn save_merged_model(
    model: &Model,
    dir: impl AsRef<Path>,
    format: MergedFormat,
    options: &SaveOptions,
) -> Result<()> {
    let dir = dir.as_ref();
    let mut merged = model.clone();
    match format {
        MergedFormat::Requantized => {
            fuse_attached_adapters_requantized(&mut merged)?;
            match model_quantization(&merged) {
                Some(spec) => save_quantized_model(&merged, dir, spec, options),
                None => save_model(&merged, dir, options),
            }
        }
        MergedFormat::Dequantized => {
            fuse_attached_adapters(&mut merged)?;
            let tensors = dequantized_tensors(&merged)?;
            save_checkpoint(dir, &merged.config(), &tensors, options)?;
            drop_quantization_entries(dir)
        }
    }
}

/// The model's checkpoint tensors with every packed module dequantized
/// (Hugging Face's layout: routed experts one tensor per expert).
fn dequantized_tensors(model: &Model) -> Result<ParamMap> {
    let mut params = model.parameters();
    let specs = packed_module_specs(model, &params);
    for (module, spec) in specs {
        let take = |part: &str, params: &mut ParamMap| {
            let key = format!("{module}.{part}");
            params.remove(&key).ok_or_else(|| Error::InvalidInput {
                message: format!("packed module `{module}` has no `{key}`"),
            })
        };
        let q = Quantized {
            weight: take("weight", &mut params)?,
            scales: take("scales", &mut params)?,
            biases: take("biases", &mut params)?,
            group_size: spec.group_size,
            bits: spec.bits,
        };
        params.insert(format!("{module}.weight"), q.dequantize()?);
    }
    match model.config() {
        ModelConfig::Qwen3Moe(_) => crate::models::experts::unstack_experts(params),
        ModelConfig::Qwen3(_) => Ok(params),
    }
}

/// Removes `quantization` and `quantization_config` from `dir/config.json`
/// (kept there from a quantized source's config).
fn drop_quantization_entries(dir: &Path) -> Result<()> {
    let path = dir.join("config.json");
    if let Some(Value::Object(mut config)) = read_json_optional(&path)? {
        config.remove("quantization");
        config.remove("quantization_config");
        write_json(&path, &Value::Object(config))?;
    }
    Ok(())
}
