//! Loading a Hugging Face model directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx_nn::{ModuleExt, VarBuilder};
use mlx_tensor::{Array, Dtype, io};

use super::files::{read_headers, weight_files};
use super::problem::CheckpointProblem;
use super::validate::{ignorable, validate};
use crate::files::read_text_optional;
use crate::models::experts::stack_experts;
use crate::models::{Model, ModelConfig};
use crate::{Error, Result};

/// The model of `config` with lazily drawn parameters that are never
/// evaluated: its parameter names and shapes, at no memory cost.
fn shape_model(config: &ModelConfig) -> Result<Model> {
    Model::new(config, &VarBuilder::random(0, Dtype::F32))
}

/// Reads and checks `config.json` of a model directory; problems name the
/// file and the field.
pub fn load_config(dir: impl AsRef<Path>) -> Result<ModelConfig> {
    let path = dir.as_ref().join("config.json");
    let text = read_text_optional(&path)?.ok_or(Error::MissingFile {
        path: path.clone(),
        what: "model configuration",
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    let in_file = |e: Error| match e {
        Error::ModelConfig { field, message } => Error::InvalidConfig {
            path: path.clone(),
            field,
            message,
        },
        other => other,
    };
    let config = ModelConfig::from_value(value).map_err(in_file)?;
    config.validate().map_err(in_file)?;
    Ok(config)
}

/// Loads the model of a Hugging Face directory (`config.json` plus
/// `model.safetensors` or shards listed in `model.safetensors.index.json`).
///
/// Every tensor's presence, shape and dtype is checked against the
/// configuration before anything is loaded; all problems come back together
/// in [`Error::InvalidCheckpoint`], each naming its file and key.
/// Per-expert tensors of mixture-of-experts layers are stacked; a tied
/// model's `lm_head.weight`, if present, is dropped. Weights are cast to
/// `dtype`, by default the config's `dtype`/`torch_dtype`, else the
/// checkpoint's own. An mlx-lm quantized checkpoint (`quantization` in
/// `config.json`) is loaded by [`load_quantized_model`](super::load_quantized_model).
pub fn load_model(dir: impl AsRef<Path>, dtype: Option<Dtype>) -> Result<Model> {
    let dir = dir.as_ref();
    if super::quantization_config(dir)?.is_some() {
        return super::load_quantized_model(dir, dtype);
    }
    let config = load_config(dir)?;
    let mut problems = Vec::new();
    let (files, weight_map) = weight_files(dir, &mut problems)?;
    let headers = read_headers(&files, weight_map.as_ref(), &mut problems);

    let template = shape_model(&config)?;
    let expected: BTreeMap<String, Vec<i64>> = template
        .parameters()
        .into_iter()
        .map(|(name, a)| (name, a.shape().iter().map(|&d| i64::from(d)).collect()))
        .collect();
    let tied = config.base().tie_word_embeddings;
    problems.extend(validate(
        &headers,
        &expected,
        config.num_experts(),
        tied,
        weight_map.as_ref(),
    ));
    if !problems.is_empty() {
        return Err(Error::InvalidCheckpoint {
            dir: dir.to_path_buf(),
            problems,
        });
    }

    let dtype = match dtype {
        Some(d) => d,
        None => config
            .base()
            .declared_dtype()
            .and_then(dtype_from_config)
            .or_else(|| {
                headers
                    .tensors
                    .values()
                    .find_map(|(_, info)| dtype_from_header(&info.dtype))
            })
            .unwrap_or(Dtype::F32),
    };
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
    tensors.retain(|k, _| !ignorable(k, tied));
    stack_experts(&mut tensors, config.num_experts())?;
    let vb = VarBuilder::from_tensors_at(tensors, dtype, dir.to_path_buf());
    let mut model = Model::new(&config, &vb)?;
    vb.finish(true)?;
    crate::generate::pack_weights(&mut model)?;
    Ok(model)
}

/// `bfloat16` / `float16` / `float32` as configs spell them.
pub(crate) fn dtype_from_config(name: &str) -> Option<Dtype> {
    match name {
        "float32" | "fp32" => Some(Dtype::F32),
        "bfloat16" | "bf16" => Some(Dtype::BF16),
        "float16" | "fp16" | "half" => Some(Dtype::F16),
        _ => None,
    }
}

/// The config spelling of a weight dtype.
pub(crate) fn dtype_config_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::BF16 => "bfloat16",
        Dtype::F16 => "float16",
        _ => "float32",
    }
}

fn dtype_from_header(name: &str) -> Option<Dtype> {
    match name {
        "F32" => Some(Dtype::F32),
        "BF16" => Some(Dtype::BF16),
        "F16" => Some(Dtype::F16),
        _ => None,
    }
}
