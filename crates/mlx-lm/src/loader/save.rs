//! Saving a model as a Hugging Face checkpoint directory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mlx_nn::ParamMap;
use mlx_tensor::{Array, Dtype, io};
use serde_json::{Map, Value, json};

use super::files::{INDEX_FILE, SINGLE_FILE};
use super::load::dtype_config_name;
use crate::files::{read_json_optional, write_json};
use crate::models::{Model, ModelConfig};
use crate::{Error, LanguageModel, Result};

/// Shards are cut past this many bytes unless told otherwise (as Hugging
/// Face's default `max_shard_size="5GB"`).
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// Files besides the weights and `config.json` that a model directory
/// carries and a save copies over.
pub const COMPANION_FILES: [&str; 9] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
];

/// How [`save_model`] writes a checkpoint.
#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// A new shard starts when the current one would grow past this many bytes.
    pub max_shard_bytes: u64,
    /// The directory the model came from: its `config.json` fields are kept
    /// (ours take precedence) and its tokenizer files copied.
    pub source_dir: Option<PathBuf>,
    /// Cast floating-point weights to this dtype before writing.
    pub dtype: Option<Dtype>,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions {
            max_shard_bytes: DEFAULT_MAX_SHARD_BYTES,
            source_dir: None,
            dtype: None,
        }
    }
}

/// Writes `model` to `dir` in the layout Hugging Face uses: `config.json`,
/// `model.safetensors` or shards `model-XXXXX-of-YYYYY.safetensors` with
/// `model.safetensors.index.json` (`metadata.total_size`, `weight_map`),
/// mixture-of-experts weights one tensor per expert, and the source
/// directory's tokenizer files. Stale weight files in `dir` are removed.
pub fn save_model(model: &Model, dir: impl AsRef<Path>, options: &SaveOptions) -> Result<()> {
    let tensors = model.checkpoint_tensors()?;
    save_checkpoint(dir, &model.config(), &tensors, options)
}

/// Writes checkpoint-named `tensors` and `config` to `dir` (see [`save_model`]).
pub fn save_checkpoint(
    dir: impl AsRef<Path>,
    config: &ModelConfig,
    tensors: &ParamMap,
    options: &SaveOptions,
) -> Result<()> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut cast: BTreeMap<&str, Array> = BTreeMap::new();
    for (name, value) in tensors {
        let value = match options.dtype {
            Some(d) if value.dtype().is_float() && value.dtype() != d => value.as_type(d)?,
            _ => value.clone(),
        };
        cast.insert(name.as_str(), value);
    }
    let saved_dtype = options
        .dtype
        .or_else(|| cast.values().map(Array::dtype).find(|d| d.is_float()))
        .unwrap_or(Dtype::F32);
    remove_stale_weights(dir)?;
    write_weights(dir, &cast, options.max_shard_bytes)?;
    write_config(dir, config, saved_dtype, options.source_dir.as_deref())?;
    if let Some(source) = &options.source_dir {
        copy_companions(source, dir)?;
    }
    Ok(())
}

fn remove_stale_weights(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let shard =
            name.starts_with("model-") && name.contains("-of-") && name.ends_with(".safetensors");
        if name == SINGLE_FILE || name == INDEX_FILE || shard {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|source| Error::Io { path, source })?;
        }
    }
    Ok(())
}

fn write_weights(dir: &Path, tensors: &BTreeMap<&str, Array>, max_shard_bytes: u64) -> Result<()> {
    let mut shards: Vec<Vec<(&str, &Array)>> = vec![Vec::new()];
    let mut current = 0u64;
    let mut total = 0u64;
    for (name, value) in tensors {
        let bytes = value.nbytes() as u64;
        total += bytes;
        if current + bytes > max_shard_bytes && shards.last().is_some_and(|s| !s.is_empty()) {
            shards.push(Vec::new());
            current = 0;
        }
        current += bytes;
        if let Some(last) = shards.last_mut() {
            last.push((name, value));
        }
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    if shards.len() == 1 {
        let path = dir.join(SINGLE_FILE);
        io::save_safetensors(&path, shards.remove(0), &metadata)?;
        return Ok(());
    }
    let count = shards.len();
    let mut weight_map = Map::new();
    for (i, shard) in shards.into_iter().enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, count);
        for (name, _) in &shard {
            weight_map.insert((*name).to_string(), Value::String(file.clone()));
        }
        io::save_safetensors(dir.join(&file), shard, &metadata)?;
    }
    let index = json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
    write_json(&dir.join(INDEX_FILE), &index)
}

fn write_config(
    dir: &Path,
    config: &ModelConfig,
    dtype: Dtype,
    source: Option<&Path>,
) -> Result<()> {
    let mut out = match source {
        Some(s) => match read_json_optional(&s.join("config.json"))? {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        },
        None => Map::new(),
    };
    if let Value::Object(ours) = config.to_value()? {
        for (k, v) in ours {
            out.insert(k, v);
        }
    }
    let architecture = match config {
        ModelConfig::Qwen3(_) => "Qwen3ForCausalLM",
        ModelConfig::Qwen3Moe(_) => "Qwen3MoeForCausalLM",
    };
    out.entry("architectures")
        .or_insert_with(|| json!([architecture]));
    // Readers that only know the flat form (mlx-lm's Qwen3-MoE) need it.
    out.entry("rope_theta")
        .or_insert_with(|| json!(config.base().resolved_rope_theta()));
    let name = Value::String(dtype_config_name(dtype).into());
    if out.contains_key("torch_dtype") {
        out.insert("torch_dtype".into(), name.clone());
    }
    out.insert("dtype".into(), name);
    write_json(&dir.join("config.json"), &Value::Object(out))
}

fn copy_companions(source: &Path, dir: &Path) -> Result<()> {
    let same = match (source.canonicalize(), dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(());
    }
    for name in COMPANION_FILES {
        let from = source.join(name);
        if from.exists() {
            std::fs::copy(&from, dir.join(name)).map_err(|source| Error::Io {
                path: from.clone(),
                source,
            })?;
        }
    }
    Ok(())
}
