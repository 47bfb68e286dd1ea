//! LoRA adapter directories in Hugging Face PEFT's layout (the default)
//! and in mlx-lm's, read and written.
//!
//! - PEFT: `adapter_config.json` (`peft_type: "LORA"`, `r`, `lora_alpha`,
//!   `lora_dropout`, `target_modules`, `use_rslora`, `layers_to_transform`)
//!   and `adapter_model.safetensors` with keys
//!   `base_model.model.<module>.lora_A.weight` `[r, in]` and
//!   `….lora_B.weight` `[out, r]`.
//! - mlx-lm: `adapter_config.json` (`fine_tune_type`, `num_layers`,
//!   `lora_parameters {rank, scale, dropout, keys?}`) and
//!   `adapters.safetensors` with keys `<module>.lora_a` `[in, r]` and
//!   `<module>.lora_b` `[r, out]` (transposed). Its `scale` is PEFT's
//!   `lora_alpha / r`; its `num_layers` the last blocks (≤ 0: all).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use mlx_nn::layers::{LayerSelection, LoraConfig, TargetModules, layer_index};
use mlx_tensor::{Array, io};
use serde_json::{Value, json};

use super::problem::CheckpointProblem;
use crate::files::{read_json_optional, write_json};
use crate::{Error, Result};

/// PEFT's weights file.
pub const PEFT_WEIGHTS: &str = "adapter_model.safetensors";
/// mlx-lm's weights file.
pub const MLX_LM_WEIGHTS: &str = "adapters.safetensors";
/// The configuration file of both layouts.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
const PEFT_PREFIX: &str = "base_model.model.";

/// Which layout an adapter directory uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterFormat {
    /// Hugging Face PEFT (`adapter_model.safetensors`).
    Peft,
    /// mlx-lm (`adapters.safetensors`).
    MlxLm,
}

/// One module's low-rank factors in PEFT's orientation.
#[derive(Debug, Clone)]
pub struct LoraFactors {
    /// `A: [r, in]`.
    pub a: Array,
    /// `B: [out, r]`.
    pub b: Array,
}

/// A set of LoRA adapters: hyper-parameters, which modules they target and
/// the factors of each adapted module (by module path,
/// `model.layers.3.self_attn.q_proj`).
#[derive(Debug, Clone)]
pub struct Adapters {
    /// Rank, alpha, dropout, rsLoRA.
    pub config: LoraConfig,
    /// PEFT's `target_modules`.
    pub target_modules: TargetModules,
    /// The blocks adapted.
    pub layers: LayerSelection,
    /// Factors by module path.
    pub modules: BTreeMap<String, LoraFactors>,
    /// The weights file they were read from (for error messages).
    pub source: Option<PathBuf>,
}

/// Reads an adapter directory, PEFT's layout or mlx-lm's (whichever weights
/// file is present; PEFT's when both are). Problems name the file and the
/// field or tensor.
pub fn load_adapters(dir: impl AsRef<Path>) -> Result<(Adapters, AdapterFormat)> {
    let dir = dir.as_ref();
    let config_path = dir.join(ADAPTER_CONFIG);
    let config = read_json_optional(&config_path)?.ok_or(Error::MissingFile {
        path: config_path.clone(),
        what: "adapter configuration",
    })?;
    if dir.join(PEFT_WEIGHTS).exists() {
        Ok((read_peft(dir, &config_path, &config)?, AdapterFormat::Peft))
    } else if dir.join(MLX_LM_WEIGHTS).exists() {
        Ok((
            read_mlx_lm(dir, &config_path, &config)?,
            AdapterFormat::MlxLm,
        ))
    } else {
        Err(Error::MissingFile {
            path: dir.join(PEFT_WEIGHTS),
            what: "adapter weights (adapter_model.safetensors or adapters.safetensors)",
        })
    }
}

fn invalid(path: &Path, field: &str, message: impl Into<String>) -> Error {
    Error::InvalidConfig {
        path: path.to_path_buf(),
        field: field.into(),
        message: message.into(),
    }
}

fn get_f32(v: &Value, path: &Path, field: &str, default: Option<f32>) -> Result<f32> {
    match v.get(field) {
        None | Some(Value::Null) => default.ok_or_else(|| invalid(path, field, "missing")),
        Some(x) => x
            .as_f64()
            .map(|f| f as f32)
            .filter(|f| f.is_finite())
            .ok_or_else(|| invalid(path, field, format!("not a finite number: {x}"))),
    }
}

fn get_rank(v: &Value, path: &Path, field: &str) -> Result<i32> {
    let x = v
        .get(field)
        .ok_or_else(|| invalid(path, field, "missing"))?;
    x.as_i64()
        .and_then(|r| i32::try_from(r).ok())
        .filter(|&r| r > 0)
        .ok_or_else(|| invalid(path, field, format!("not a positive integer: {x}")))
}

fn string_list(x: &Value, path: &Path, field: &str) -> Result<Vec<String>> {
    x.as_array()
        .ok_or_else(|| invalid(path, field, format!("not a list: {x}")))?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid(path, field, format!("not a string: {s}")))
        })
        .collect()
}

fn read_peft(dir: &Path, path: &Path, v: &Value) -> Result<Adapters> {
    match v.get("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        other => {
            return Err(invalid(
                path,
                "peft_type",
                format!("only LORA adapters are supported, got {other:?}"),
            ));
        }
    }
    for (field, ok) in [
        (
            "use_dora",
            v.get("use_dora")
                .is_none_or(|x| x == &json!(false) || x.is_null()),
        ),
        (
            "fan_in_fan_out",
            v.get("fan_in_fan_out")
                .is_none_or(|x| x == &json!(false) || x.is_null()),
        ),
        (
            "bias",
            v.get("bias")
                .is_none_or(|x| x == &json!("none") || x.is_null()),
        ),
        (
            "modules_to_save",
            v.get("modules_to_save")
                .is_none_or(|x| x.is_null() || x == &json!([])),
        ),
        (
            "rank_pattern",
            v.get("rank_pattern")
                .is_none_or(|x| x.is_null() || x == &json!({})),
        ),
        (
            "alpha_pattern",
            v.get("alpha_pattern")
                .is_none_or(|x| x.is_null() || x == &json!({})),
        ),
    ] {
        if !ok {
            return Err(invalid(
                path,
                field,
                "this setting is not supported (plain LoRA only)",
            ));
        }
    }
    let r = get_rank(v, path, "r")?;
    let config = LoraConfig {
        r,
        lora_alpha: get_f32(v, path, "lora_alpha", Some(8.0))?,
        lora_dropout: get_f32(v, path, "lora_dropout", Some(0.0))?,
        use_rslora: v
            .get("use_rslora")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    config
        .validate()
        .map_err(|e| invalid(path, "lora_dropout", e.to_string()))?;
    let target_modules = match v.get("target_modules") {
        Some(Value::String(s)) if s == "all-linear" => TargetModules::AllLinear,
        Some(Value::String(s)) => TargetModules::Regex(s.clone()),
        Some(x @ Value::Array(_)) => TargetModules::Names(string_list(x, path, "target_modules")?),
        other => {
            return Err(invalid(
                path,
                "target_modules",
                format!("expected a list of names, a pattern or \"all-linear\", got {other:?}"),
            ));
        }
    };
    let layers = match v.get("layers_to_transform") {
        None | Some(Value::Null) => LayerSelection::All,
        Some(x) => {
            let list: Vec<Value> = match x {
                Value::Array(a) => a.clone(),
                single => vec![single.clone()],
            };
            let ix = list
                .iter()
                .map(|i| {
                    i.as_u64()
                        .and_then(|i| usize::try_from(i).ok())
                        .ok_or_else(|| {
                            invalid(
                                path,
                                "layers_to_transform",
                                format!("not a layer index: {i}"),
                            )
                        })
                })
                .collect::<Result<Vec<usize>>>()?;
            LayerSelection::Indices(ix)
        }
    };
    let file = dir.join(PEFT_WEIGHTS);
    let tensors = load_tensors(dir, &file)?;
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in tensors {
        let module = key.strip_prefix(PEFT_PREFIX).and_then(|rest| {
            rest.strip_suffix(".lora_A.weight")
                .map(|m| (m, true))
                .or_else(|| rest.strip_suffix(".lora_B.weight").map(|m| (m, false)))
        });
        match module {
            Some((m, true)) => {
                a.insert(m.to_string(), value);
            }
            Some((m, false)) => {
                b.insert(m.to_string(), value);
            }
            None => problems.push(CheckpointProblem::UnexpectedTensor {
                file: file.clone(),
                key,
            }),
        }
    }
    let modules = pair_factors(&file, a, b, r, &mut problems, |m, which| {
        format!("{PEFT_PREFIX}{m}.lora_{which}.weight")
    });
    finish(dir, problems)?;
    Ok(Adapters {
        config,
        target_modules,
        layers,
        modules,
        source: Some(file),
    })
}

fn read_mlx_lm(dir: &Path, path: &Path, v: &Value) -> Result<Adapters> {
    match v.get("fine_tune_type").and_then(Value::as_str) {
        None | Some("lora") => {}
        Some(other) => {
            return Err(invalid(
                path,
                "fine_tune_type",
                format!("only lora adapters are supported, got {other:?}"),
            ));
        }
    }
    let params = v
        .get("lora_parameters")
        .ok_or_else(|| invalid(path, "lora_parameters", "missing"))?;
    let r = get_rank(params, path, "rank").map_err(|_| {
        invalid(
            path,
            "lora_parameters.rank",
            "missing or not a positive integer",
        )
    })?;
    let scale = get_f32(params, path, "scale", None).map_err(|_| {
        invalid(
            path,
            "lora_parameters.scale",
            "missing or not a finite number",
        )
    })?;
    let dropout = get_f32(params, path, "dropout", Some(0.0))
        .map_err(|_| invalid(path, "lora_parameters.dropout", "not a number"))?;
    let config = LoraConfig {
        r,
        lora_alpha: scale * r as f32,
        lora_dropout: dropout,
        use_rslora: false,
    };
    config
        .validate()
        .map_err(|e| invalid(path, "lora_parameters.dropout", e.to_string()))?;
    let target_modules = match params.get("keys") {
        None | Some(Value::Null) => TargetModules::AllLinear,
        Some(x) => TargetModules::Names(string_list(x, path, "lora_parameters.keys")?),
    };
    let layers = match v.get("num_layers").and_then(Value::as_i64) {
        Some(n) if n > 0 => LayerSelection::Last(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(_) => LayerSelection::All,
        None => return Err(invalid(path, "num_layers", "missing or not an integer")),
    };
    let file = dir.join(MLX_LM_WEIGHTS);
    let tensors = load_tensors(dir, &file)?;
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in tensors {
        // mlx-lm stores the factors transposed: `lora_a [in, r]`, `lora_b [r, out]`.
        let (module, is_a) = if let Some(m) = key.strip_suffix(".lora_a") {
            (m, true)
        } else if let Some(m) = key.strip_suffix(".lora_b") {
            (m, false)
        } else {
            problems.push(CheckpointProblem::UnexpectedTensor {
                file: file.clone(),
                key,
            });
            continue;
        };
        if value.ndim() != 2 {
            problems.push(CheckpointProblem::WrongShape {
                file: file.clone(),
                key: key.clone(),
                expected: vec![-1, i64::from(r)],
                found: value.shape().iter().map(|&d| i64::from(d)).collect(),
            });
            continue;
        }
        let value = value.t()?;
        if is_a {
            a.insert(module.to_string(), value);
        } else {
            b.insert(module.to_string(), value);
        }
    }
    let modules = pair_factors(&file, a, b, r, &mut problems, |m, which| {
        format!("{m}.lora_{}", which.to_ascii_lowercase())
    });
    finish(dir, problems)?;
    Ok(Adapters {
        config,
        target_modules,
        layers,
        modules,
        source: Some(file),
    })
}

fn load_tensors(dir: &Path, file: &Path) -> Result<HashMap<String, Array>> {
    io::load_safetensors(file)
        .map(|f| f.tensors)
        .map_err(|e| Error::InvalidCheckpoint {
            dir: dir.to_path_buf(),
            problems: vec![CheckpointProblem::BadFile {
                file: file.to_path_buf(),
                message: e.to_string(),
            }],
        })
}

fn finish(dir: &Path, problems: Vec<CheckpointProblem>) -> Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidCheckpoint {
            dir: dir.to_path_buf(),
            problems,
        })
    }
}

fn dims(a: &Array) -> Vec<i64> {
    a.shape().iter().map(|&d| i64::from(d)).collect()
}

/// Pairs each module's `A` and `B` (PEFT orientation), checking both are
/// present, 2-D, of rank `r` and agree with each other.
fn pair_factors(
    file: &Path,
    mut a: BTreeMap<String, Array>,
    mut b: BTreeMap<String, Array>,
    r: i32,
    problems: &mut Vec<CheckpointProblem>,
    key: impl Fn(&str, &str) -> String,
) -> BTreeMap<String, LoraFactors> {
    let names: BTreeSet<String> = a.keys().chain(b.keys()).cloned().collect();
    let mut out = BTreeMap::new();
    for m in names {
        let (fa, fb) = match (a.remove(&m), b.remove(&m)) {
            (Some(fa), Some(fb)) => (fa, fb),
            (present_a, _) => {
                let (missing, present) = if present_a.is_some() {
                    ("B", "A")
                } else {
                    ("A", "B")
                };
                problems.push(CheckpointProblem::BadFile {
                    file: file.to_path_buf(),
                    message: format!(
                        "tensor `{}` is missing (`{}` is present)",
                        key(&m, missing),
                        key(&m, present)
                    ),
                });
                continue;
            }
        };
        let (sa, sb) = (fa.shape(), fb.shape());
        if sa.len() != 2 || sa[0] != r {
            problems.push(CheckpointProblem::WrongShape {
                file: file.to_path_buf(),
                key: key(&m, "A"),
                expected: vec![i64::from(r), sa.get(1).map_or(-1, |&d| i64::from(d))],
                found: dims(&fa),
            });
            continue;
        }
        if sb.len() != 2 || sb[1] != r {
            problems.push(CheckpointProblem::WrongShape {
                file: file.to_path_buf(),
                key: key(&m, "B"),
                expected: vec![sb.first().map_or(-1, |&d| i64::from(d)), i64::from(r)],
                found: dims(&fb),
            });
            continue;
        }
        out.insert(m, LoraFactors { a: fa, b: fb });
    }
    out
}

/// Writes `adapters` to `dir` in `format` (creating it). `model_layers`,
/// the model's block count, turns a "last n blocks" selection into PEFT's
/// `layers_to_transform` and block indices into mlx-lm's `num_layers`
/// (which can only express the last blocks, each with the same modules).
pub fn save_adapters(
    adapters: &Adapters,
    dir: impl AsRef<Path>,
    format: AdapterFormat,
    model_layers: usize,
) -> Result<()> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    match format {
        AdapterFormat::Peft => write_peft(adapters, dir, model_layers),
        AdapterFormat::MlxLm => write_mlx_lm(adapters, dir, model_layers),
    }
}

fn write_peft(adapters: &Adapters, dir: &Path, model_layers: usize) -> Result<()> {
    let c = adapters.config;
    let target_modules = match &adapters.target_modules {
        TargetModules::AllLinear => json!("all-linear"),
        TargetModules::Regex(s) => json!(s),
        TargetModules::Names(n) => json!(n),
    };
    let layers = match &adapters.layers {
        LayerSelection::All => Value::Null,
        LayerSelection::Indices(ix) => json!(ix),
        LayerSelection::Last(n) => {
            json!((model_layers.saturating_sub(*n)..model_layers).collect::<Vec<_>>())
        }
    };
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": c.r,
        "lora_alpha": c.lora_alpha,
        "lora_dropout": c.lora_dropout,
        "use_rslora": c.use_rslora,
        "target_modules": target_modules,
        "layers_to_transform": layers,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_dora": false,
        "modules_to_save": null,
        "init_lora_weights": true,
        "inference_mode": true,
        "base_model_name_or_path": null,
        "rank_pattern": {},
        "alpha_pattern": {},
    });
    let mut tensors: Vec<(String, &Array)> = Vec::new();
    for (m, f) in &adapters.modules {
        tensors.push((format!("{PEFT_PREFIX}{m}.lora_A.weight"), &f.a));
        tensors.push((format!("{PEFT_PREFIX}{m}.lora_B.weight"), &f.b));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    io::save_safetensors(
        dir.join(PEFT_WEIGHTS),
        tensors.iter().map(|(k, v)| (k.as_str(), *v)),
        &metadata,
    )?;
    write_json(&dir.join(ADAPTER_CONFIG), &config)
}

fn write_mlx_lm(adapters: &Adapters, dir: &Path, model_layers: usize) -> Result<()> {
    let config_path = dir.join(ADAPTER_CONFIG);
    let c = adapters.config;
    // The adapted modules per block, relative to the block, and those
    // outside the blocks (kept as full paths, as mlx-lm's top-level keys).
    let mut per_layer: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut outside = BTreeSet::new();
    for m in adapters.modules.keys() {
        match (layer_index(m), relative_to_block(m)) {
            (Some(i), Some(rel)) => {
                per_layer.entry(i).or_default().insert(rel.to_string());
            }
            _ => {
                outside.insert(m.clone());
            }
        }
    }
    let first = per_layer.keys().next().copied().unwrap_or(model_layers);
    let contiguous_to_end = per_layer.keys().copied().eq(first..model_layers);
    let keys: BTreeSet<String> = per_layer.values().next().cloned().unwrap_or_default();
    if !contiguous_to_end || per_layer.values().any(|k| k != &keys) {
        return Err(invalid(
            &config_path,
            "num_layers",
            "mlx-lm adapters must cover the last blocks of the model, each with the same modules",
        ));
    }
    // mlx-lm reads 0 (like -1) as "every block".
    let num_layers = model_layers.saturating_sub(first).max(1);
    let mut all_keys: Vec<String> = keys.into_iter().collect();
    all_keys.extend(outside);
    let config = json!({
        "fine_tune_type": "lora",
        "num_layers": num_layers,
        "lora_parameters": {
            "rank": c.r,
            "scale": c.scaling(),
            "dropout": c.lora_dropout,
            "keys": all_keys,
        },
    });
    let mut transposed: Vec<(String, Array)> = Vec::new();
    for (m, f) in &adapters.modules {
        transposed.push((format!("{m}.lora_a"), f.a.t()?));
        transposed.push((format!("{m}.lora_b"), f.b.t()?));
    }
    io::save_safetensors(
        dir.join(MLX_LM_WEIGHTS),
        transposed.iter().map(|(k, v)| (k.as_str(), v)),
        &HashMap::new(),
    )?;
    write_json(&config_path, &config)
}

/// The path inside its block: `self_attn.q_proj` of
/// `model.layers.3.self_attn.q_proj`.
fn relative_to_block(path: &str) -> Option<&str> {
    let i = path.find(".layers.")? + ".layers.".len();
    let rest = &path[i..];
    let dot = rest.find('.')?;
    Some(&rest[dot + 1..])
}
