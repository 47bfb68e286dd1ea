//! Writing models quantized as mlx-lm's `quantize_model` + `save_model` do.
//!
//! Every linear layer and embedding table whose input width is a multiple
//! of the group size is quantized (affine mode) into packed `weight`,
//! `scales` and `biases`. For Qwen3-MoE the routed experts are quantized
//! stacked (`….mlp.switch_mlp.{gate,up,down}_proj`, `[experts, out, in]`,
//! groups along the input axis) and the routers (`….mlp.gate`) at 8 bits,
//! group size 64, as mlx-lm's Qwen3-MoE `quant_predicate` asks; each router
//! gets a per-module entry in `config.json`'s `quantization`. Modules that
//! are already packed are written as they are, with a per-module entry when
//! their setting is not the default.

use std::collections::BTreeMap;
use std::path::Path;

use mlx_nn::{ModuleExt, ParamMap};
use serde_json::{Map, Value, json};

use super::adapter_attach::has_adapters;
use super::quantized::QuantizationSpec;
use super::save::{SaveOptions, save_checkpoint};
use crate::files::{read_json_optional, write_json};
use crate::models::{Model, ModelConfig, Projection, TokenEmbedding};
use crate::{Error, LanguageModel, Result};

/// The setting mlx-lm's Qwen3-MoE quantizes its routers with.
pub const MOE_ROUTER_SPEC: QuantizationSpec = QuantizationSpec {
    group_size: 64,
    bits: 8,
};

/// Quantizes checkpoint-named `tensors` as `mlx_lm.convert -q` does: every
/// 2-D `*.weight` (linear layers and embeddings) whose last axis is a
/// multiple of the group size becomes packed `weight`, `scales`, `biases`;
/// everything else is kept.
pub fn quantize_tensors(tensors: &ParamMap, spec: QuantizationSpec) -> Result<ParamMap> {
    Ok(quantize_by_rule(tensors, spec, |_| None)?.0)
}

/// Quantizes `tensors` with `spec`, or the setting `special(module)` gives
/// (2-D weights, and stacked 3-D `switch_mlp` expert weights). Returns the
/// tensors and the modules quantized with their own setting.
fn quantize_by_rule(
    tensors: &ParamMap,
    spec: QuantizationSpec,
    special: impl Fn(&str) -> Option<QuantizationSpec>,
) -> Result<(ParamMap, BTreeMap<String, QuantizationSpec>)> {
    spec.validate().map_err(|message| Error::ModelConfig {
        field: "quantization".into(),
        message,
    })?;
    let mut out = ParamMap::new();
    let mut overrides = BTreeMap::new();
    for (name, value) in tensors {
        let module = name.strip_suffix(".weight");
        let stacked = module.is_some_and(|m| m.contains(".switch_mlp.")) && value.ndim() == 3;
        // mlx-lm tests divisibility by the default group size first.
        let quantizable = module.is_some()
            && (value.ndim() == 2 || stacked)
            && value.dtype().is_float()
            && value
                .shape()
                .last()
                .is_some_and(|&d| d % spec.group_size == 0);
        match module {
            Some(module) if quantizable => {
                let own = special(module);
                let used = own.unwrap_or(spec);
                let width = value.shape().last().copied().unwrap_or(0);
                if width % used.group_size != 0 {
                    return Err(Error::ModelConfig {
                        field: "quantization".into(),
                        message: format!(
                            "`{name}` has input width {width}, not a multiple of group size {} \
                             that module `{module}` is quantized with",
                            used.group_size
                        ),
                    });
                }
                let q = value.quantize(used.group_size, used.bits)?;
                out.insert(format!("{module}.weight"), q.weight);
                out.insert(format!("{module}.scales"), q.scales);
                out.insert(format!("{module}.biases"), q.biases);
                if let Some(own) = own {
                    overrides.insert(module.to_string(), own);
                }
            }
            _ => {
                out.insert(name.clone(), value.clone());
            }
        }
    }
    Ok((out, overrides))
}

/// The settings of the modules of `model` that are packed, by module
/// path: projections and the embedding table from their layers, routed
/// experts from the shapes of their parts in `tensors` (the model's
/// parameters) and the widths the configuration gives.
pub(crate) fn packed_module_specs(
    model: &Model,
    tensors: &ParamMap,
) -> BTreeMap<String, QuantizationSpec> {
    let mut out = BTreeMap::new();
    if let Some(t) = model.transformer() {
        for (path, projection) in t.projections() {
            if let Projection::Quantized(q) = projection {
                let spec = QuantizationSpec {
                    group_size: q.group_size,
                    bits: q.bits,
                };
                out.insert(path, spec);
            }
        }
        if let TokenEmbedding::Quantized(q) = &t.embed_tokens {
            let spec = QuantizationSpec {
                group_size: q.group_size,
                bits: q.bits,
            };
            out.insert("model.embed_tokens".to_string(), spec);
        }
    }
    let config = model.config();
    for module in tensors.keys().filter_map(|k| k.strip_suffix(".scales")) {
        if module.contains(".switch_mlp.")
            && let Some(s) = packed_expert_spec(&config, module, tensors)
        {
            out.insert(module.to_string(), s);
        }
    }
    out
}

/// The setting of packed routed experts `module` (`weight: [experts, out,
/// in · bits / 32]`, `scales: [experts, out, in / group_size]`), from the
/// input width the configuration gives the projection.
fn packed_expert_spec(
    config: &ModelConfig,
    module: &str,
    tensors: &ParamMap,
) -> Option<QuantizationSpec> {
    let ModelConfig::Qwen3Moe(c) = config else {
        return None;
    };
    let input = if module.ends_with(".down_proj") {
        c.moe_intermediate_size
    } else {
        c.base.hidden_size
    };
    let packed = *tensors.get(&format!("{module}.weight"))?.shape().last()?;
    let groups = *tensors.get(&format!("{module}.scales"))?.shape().last()?;
    if groups <= 0 || input % groups != 0 {
        return None;
    }
    let bits = i32::try_from(i64::from(packed) * 32 / i64::from(input.max(1))).ok()?;
    Some(QuantizationSpec {
        group_size: input / groups,
        bits,
    })
}

/// The quantization setting of a model with packed weights: the one most
/// of its packed modules use (ties: the smaller group size, then the fewer
/// bits). `None` for a model without packed weights.
pub fn model_quantization(model: &Model) -> Option<QuantizationSpec> {
    let specs = packed_module_specs(model, &model.parameters());
    let mut counts: BTreeMap<(i32, i32), usize> = BTreeMap::new();
    for s in specs.values() {
        *counts.entry((s.group_size, s.bits)).or_default() += 1;
    }
    let mut best: Option<((i32, i32), usize)> = None;
    for (key, n) in counts {
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((key, n));
        }
    }
    best.map(|((group_size, bits), _)| QuantizationSpec { group_size, bits })
}

/// Writes `model` quantized with `spec` to `dir` as mlx-lm's
/// `quantize_model` + `save_model` + `save_config` do: the weights of
/// [`quantize_tensors`] (for Qwen3-MoE also the stacked routed experts,
/// `….mlp.switch_mlp.{gate,up,down}_proj`, and the routers at 8 bits,
/// group 64, see [`MOE_ROUTER_SPEC`]), and `config.json` with
/// `quantization` and `quantization_config` `{group_size, bits, mode:
/// "affine"}` plus a per-module entry for each module quantized otherwise.
/// Dense-loaded and already quantized models are accepted: packed modules
/// are written as they are. `options.dtype` casts the float weights first.
/// A model with adapters attached is an error: write it with
/// [`save_merged_model`](super::save_merged_model) instead.
pub fn save_quantized_model(
    model: &Model,
    dir: impl AsRef<Path>,
    spec: QuantizationSpec,
    options: &SaveOptions,
) -> Result<()> {
    let dir = dir.as_ref();
    if has_adapters(model) {
        return Err(Error::InvalidInput {
            message: format!(
                "cannot quantize a model with adapters attached into {}: fuse them first \
                 (save_merged_model)",
                dir.display()
            ),
        });
    }
    let config = model.config();
    let moe = matches!(config, ModelConfig::Qwen3Moe(_));
    // mlx-lm stores the experts stacked, as the model holds them.
    let tensors = if moe {
        model.parameters()
    } else {
        model.checkpoint_tensors()?
    };
    let dense = match options.dtype {
        Some(d) => {
            let mut cast = ParamMap::new();
            for (k, v) in tensors {
                let v = if v.dtype().is_float() {
                    v.as_type(d)?
                } else {
                    v
                };
                cast.insert(k, v);
            }
            cast
        }
        None => tensors,
    };
    let router = |module: &str| (moe && module.ends_with(".mlp.gate")).then_some(MOE_ROUTER_SPEC);
    let (quantized, mut per_module) = quantize_by_rule(&dense, spec, router)?;
    per_module.extend(packed_module_specs(model, &dense));
    let options = SaveOptions {
        dtype: None,
        ..options.clone()
    };
    save_checkpoint(dir, &config, &quantized, &options)?;
    let path = dir.join("config.json");
    let mut written = match read_json_optional(&path)? {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut q = Map::new();
    q.insert("group_size".into(), json!(spec.group_size));
    q.insert("bits".into(), json!(spec.bits));
    q.insert("mode".into(), json!("affine"));
    for (module, s) in per_module {
        // Routers always get their entry (mlx-lm's predicate returns one).
        if s != spec || (moe && module.ends_with(".mlp.gate")) {
            q.insert(
                module,
                json!({ "group_size": s.group_size, "bits": s.bits }),
            );
        }
    }
    written.insert("quantization".into(), Value::Object(q.clone()));
    written.insert("quantization_config".into(), Value::Object(q));
    write_json(&path, &Value::Object(written))
}
