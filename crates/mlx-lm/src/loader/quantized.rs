//! mlx-lm's quantized checkpoints: reading them and writing them.
//!
//! `config.json` carries `quantization: {group_size, bits, mode}` (and the
//! same as `quantization_config`), optionally with per-module entries
//! (`"model.layers.0.mlp.down_proj": {group_size, bits}` or `false`). Each
//! quantized module `p` has `p.weight` (packed `u32`, `[out, in · bits /
//! 32]`), `p.scales` and `p.biases` (`[out, in / group_size]`); modules
//! whose input width is not a multiple of the group size stay dense, as
//! mlx-lm leaves them.
//!
//! Writing is in `quantize.rs` ([`super::save_quantized_model`]).
//!
//! Loading keeps the packed weights: each quantized projection becomes a
//! [`QuantizedLinear`], a quantized embedding table a
//! [`QuantizedEmbedding`] and quantized routed experts
//! (`….mlp.switch_mlp.{gate,up,down}_proj`, stacked `[experts, out, in]`)
//! stay packed and are applied with `gather_qmm`, so the model computes
//! what mlx-lm's quantized model does. Other quantized modules (the
//! routers) are dequantized into their dense layers.

use std::collections::HashMap;
use std::path::Path;

use mlx_nn::layers::{QuantizedEmbedding, QuantizedLinear};
use mlx_nn::{Param, VarBuilder};
use mlx_tensor::{Array, Dtype, Quantized, io};
use serde_json::Value;

use super::files::{read_headers, weight_files};
use super::load::{dtype_from_config, load_config};
use super::problem::CheckpointProblem;
use crate::files::read_json_optional;
use crate::models::{Model, Projection, TokenEmbedding};
use crate::{Error, LanguageModel, Result};

/// Bit widths MLX's affine quantization supports.
pub const SUPPORTED_BITS: [i32; 6] = [2, 3, 4, 5, 6, 8];
/// Group sizes MLX's affine quantization supports.
pub const SUPPORTED_GROUP_SIZES: [i32; 3] = [32, 64, 128];

/// One quantization setting (affine mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantizationSpec {
    /// Elements per group: 32, 64 or 128.
    pub group_size: i32,
    /// Bits per element: 2, 3, 4, 5, 6 or 8.
    pub bits: i32,
}

impl QuantizationSpec {
    /// Checks the setting is one MLX supports.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !SUPPORTED_BITS.contains(&self.bits) {
            return Err(format!(
                "bits must be one of {SUPPORTED_BITS:?}, got {}",
                self.bits
            ));
        }
        if !SUPPORTED_GROUP_SIZES.contains(&self.group_size) {
            return Err(format!(
                "group_size must be one of {SUPPORTED_GROUP_SIZES:?}, got {}",
                self.group_size
            ));
        }
        Ok(())
    }
}

/// The `quantization` section of a `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizationConfig {
    /// The default setting.
    pub default: QuantizationSpec,
    /// Per-module settings (`None`: the module is not quantized).
    pub per_module: HashMap<String, Option<QuantizationSpec>>,
}

impl QuantizationConfig {
    /// The setting of module `path`.
    pub fn spec_for(&self, path: &str) -> Option<QuantizationSpec> {
        match self.per_module.get(path) {
            Some(s) => *s,
            None => Some(self.default),
        }
    }
}

fn spec_from(v: &Value, path: &Path, field: &str) -> Result<QuantizationSpec> {
    let int = |name: &str| -> Result<i32> {
        let x = v.get(name).ok_or_else(|| Error::InvalidConfig {
            path: path.to_path_buf(),
            field: format!("{field}.{name}"),
            message: "missing".into(),
        })?;
        x.as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| Error::InvalidConfig {
                path: path.to_path_buf(),
                field: format!("{field}.{name}"),
                message: format!("not an integer: {x}"),
            })
    };
    match v.get("mode").and_then(Value::as_str) {
        None | Some("affine") => {}
        Some(other) => {
            return Err(Error::InvalidConfig {
                path: path.to_path_buf(),
                field: format!("{field}.mode"),
                message: format!("quantization mode `{other}` is not supported (only affine)"),
            });
        }
    }
    let spec = QuantizationSpec {
        group_size: int("group_size")?,
        bits: int("bits")?,
    };
    spec.validate().map_err(|message| Error::InvalidConfig {
        path: path.to_path_buf(),
        field: field.into(),
        message,
    })?;
    Ok(spec)
}

/// The `quantization` section of `dir/config.json`, if any.
pub fn quantization_config(dir: impl AsRef<Path>) -> Result<Option<QuantizationConfig>> {
    let path = dir.as_ref().join("config.json");
    let Some(config) = read_json_optional(&path)? else {
        return Ok(None);
    };
    let Some(q) = config.get("quantization") else {
        return Ok(None);
    };
    let default = spec_from(q, &path, "quantization")?;
    let mut per_module = HashMap::new();
    if let Some(map) = q.as_object() {
        for (key, value) in map {
            let field = format!("quantization.{key}");
            match value {
                Value::Object(_) => {
                    per_module.insert(key.clone(), Some(spec_from(value, &path, &field)?));
                }
                Value::Bool(false) => {
                    per_module.insert(key.clone(), None);
                }
                Value::Bool(true) => {}
                _ if matches!(key.as_str(), "group_size" | "bits" | "mode") => {}
                other => {
                    return Err(Error::InvalidConfig {
                        path: path.clone(),
                        field,
                        message: format!("expected settings or a boolean, got {other}"),
                    });
                }
            }
        }
    }
    Ok(Some(QuantizationConfig {
        default,
        per_module,
    }))
}

/// A checkpoint's tensors with quantized modules kept packed: dense
/// tensors by name, and each quantized module's parts by module path.
#[derive(Debug, Default)]
pub struct QuantizedTensors {
    /// Unquantized tensors by checkpoint key.
    pub dense: HashMap<String, Array>,
    /// Quantized modules by path (`model.layers.0.self_attn.q_proj`).
    pub quantized: HashMap<String, Quantized>,
}

/// Reads the weights of a quantized checkpoint directory, checking every
/// quantized module's parts: the packed weight is `u32`, and `weight`,
/// `scales` and `biases` agree with the module's bits and group size. All
/// problems come back together, naming file and tensor.
pub fn load_quantized_tensors(
    dir: impl AsRef<Path>,
    quantization: &QuantizationConfig,
) -> Result<QuantizedTensors> {
    let dir = dir.as_ref();
    let mut problems = Vec::new();
    let (files, weight_map) = weight_files(dir, &mut problems)?;
    let headers = read_headers(&files, weight_map.as_ref(), &mut problems);
    if !problems.is_empty() {
        return Err(Error::InvalidCheckpoint {
            dir: dir.to_path_buf(),
            problems,
        });
    }
    let mut tensors: HashMap<String, Array> = HashMap::new();
    for file in &headers.files {
        let loaded = io::load_safetensors(file).map_err(|e| Error::InvalidCheckpoint {
            dir: dir.to_path_buf(),
            problems: vec![CheckpointProblem::BadFile {
                file: file.clone(),
                message: e.to_string(),
            }],
        })?;
        tensors.extend(loaded.tensors);
    }
    let file_of = |key: &str| {
        headers
            .tensors
            .get(key)
            .map(|(f, _)| f.clone())
            .unwrap_or_else(|| dir.to_path_buf())
    };
    let modules: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".scales").map(str::to_string))
        .collect();
    let mut out = QuantizedTensors::default();
    for module in modules {
        let keys = ["weight", "scales", "biases"].map(|p| format!("{module}.{p}"));
        let parts: Vec<Option<Array>> = keys.iter().map(|k| tensors.remove(k)).collect();
        let [Some(weight), Some(scales), Some(biases)] =
            <[Option<Array>; 3]>::try_from(parts).unwrap_or([None, None, None])
        else {
            for k in &keys {
                problems.push(CheckpointProblem::MissingTensor {
                    key: k.clone(),
                    expected: Vec::new(),
                });
            }
            continue;
        };
        let Some(spec) = quantization.spec_for(&module) else {
            problems.push(CheckpointProblem::UnexpectedTensor {
                file: file_of(&keys[1]),
                key: keys[1].clone(),
            });
            continue;
        };
        if weight.dtype() != Dtype::U32 {
            problems.push(CheckpointProblem::BadFile {
                file: file_of(&keys[0]),
                message: format!(
                    "tensor `{}` of a quantized module has dtype {:?}, expected packed U32",
                    keys[0],
                    weight.dtype()
                ),
            });
            continue;
        }
        let (ws, ss) = (weight.shape(), scales.shape());
        let dims = |s: &mlx_tensor::Shape| s.iter().map(|&d| i64::from(d)).collect::<Vec<_>>();
        let input = i64::from(ws.last().copied().unwrap_or(0)) * 32 / i64::from(spec.bits);
        let expected_groups = input / i64::from(spec.group_size);
        let mut expected_scales = dims(&ws);
        if let Some(last) = expected_scales.last_mut() {
            *last = expected_groups;
        }
        if input % i64::from(spec.group_size) != 0 || dims(&ss) != expected_scales {
            problems.push(CheckpointProblem::WrongShape {
                file: file_of(&keys[1]),
                key: keys[1].clone(),
                expected: expected_scales,
                found: dims(&ss),
            });
            continue;
        }
        if biases.shape() != ss {
            problems.push(CheckpointProblem::WrongShape {
                file: file_of(&keys[2]),
                key: keys[2].clone(),
                expected: dims(&ss),
                found: dims(&biases.shape()),
            });
            continue;
        }
        out.quantized.insert(
            module,
            Quantized {
                weight,
                scales,
                biases,
                group_size: spec.group_size,
                bits: spec.bits,
            },
        );
    }
    if !problems.is_empty() {
        return Err(Error::InvalidCheckpoint {
            dir: dir.to_path_buf(),
            problems,
        });
    }
    out.dense = tensors;
    Ok(out)
}

/// Loads an mlx-lm quantized checkpoint: quantized projections and
/// embeddings keep their packed weights (see the module documentation).
/// Float weights (and quantization scales and biases) are cast to `dtype`,
/// by default the config's dtype.
pub fn load_quantized_model(dir: impl AsRef<Path>, dtype: Option<Dtype>) -> Result<Model> {
    let dir = dir.as_ref();
    let config = load_config(dir)?;
    let path = dir.join("config.json");
    let quantization = quantization_config(dir)?.ok_or_else(|| Error::InvalidConfig {
        path,
        field: "quantization".into(),
        message: "missing: not a quantized checkpoint".into(),
    })?;
    let parts = load_quantized_tensors(dir, &quantization)?;
    let dtype = dtype
        .or_else(|| config.base().declared_dtype().and_then(dtype_from_config))
        .unwrap_or(Dtype::F32);
    let mut tensors = parts.dense;
    let mut quantized = parts.quantized;
    // Routed experts are built packed from their parts.
    let experts: Vec<String> = quantized
        .keys()
        .filter(|m| m.contains(".switch_mlp."))
        .cloned()
        .collect();
    for module in experts {
        if let Some(q) = quantized.remove(&module) {
            tensors.insert(format!("{module}.weight"), q.weight);
            tensors.insert(format!("{module}.scales"), q.scales);
            tensors.insert(format!("{module}.biases"), q.biases);
        }
    }
    // Every other module gets a dense weight to build the model from; for
    // the layers that are replaced by packed ones below it is never computed.
    for (module, q) in &quantized {
        tensors.insert(format!("{module}.weight"), q.dequantize()?);
    }
    if config.base().tie_word_embeddings {
        tensors.remove("lm_head.weight");
    }
    let vb = VarBuilder::from_tensors_at(tensors, dtype, dir.to_path_buf());
    let mut model = Model::new(&config, &vb)?;
    vb.finish(true)?;
    use_packed_layers(&mut model, quantized, dtype)?;
    crate::generate::pack_weights(&mut model)?;
    Ok(model)
}

/// Replaces the projections and the embedding table that `quantized` has
/// packed parts for with quantized layers (scales and biases cast to
/// `dtype`; the parts stay frozen).
fn use_packed_layers(
    model: &mut Model,
    mut quantized: HashMap<String, Quantized>,
    dtype: Dtype,
) -> Result<()> {
    let Some(t) = model.transformer_mut() else {
        return Ok(());
    };
    let frozen = |value: Array| Param {
        value,
        frozen: true,
    };
    for (path, projection) in t.projections_mut() {
        let Some(q) = quantized.remove(&path) else {
            continue;
        };
        let bias = projection
            .as_dense()
            .and_then(|l| l.bias.as_ref())
            .map(|b| frozen(b.value.clone()));
        *projection = Projection::Quantized(QuantizedLinear {
            weight: frozen(q.weight),
            scales: frozen(q.scales.as_type(dtype)?),
            biases: frozen(q.biases.as_type(dtype)?),
            bias,
            group_size: q.group_size,
            bits: q.bits,
        });
    }
    if let Some(q) = quantized.remove("model.embed_tokens") {
        let q = Quantized {
            scales: q.scales.as_type(dtype)?,
            biases: q.biases.as_type(dtype)?,
            ..q
        };
        t.embed_tokens = TokenEmbedding::Quantized(QuantizedEmbedding::from_quantized(q));
    }
    Ok(())
}
