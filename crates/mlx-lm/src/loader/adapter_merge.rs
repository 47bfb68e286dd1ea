//! Attaching adapters to a model by parameter names: which modules can take
//! one, checking adapters against the model, folding them into the base
//! weights (and back out), and drawing fresh adapters.
//!
//! This works on any [`Module`] whose parameter names are Hugging Face
//! checkpoint keys: a module path `p` is linear when `p.weight` is a 2-D
//! parameter and `p` is not an embedding table (`embed_tokens`);
//! `lm_head` is the output layer.

use std::collections::HashSet;

use mlx_nn::layers::{LoraConfig, TargetCandidate, select_targets};
use mlx_nn::{Module, ModuleExt, ParamMap};
use mlx_tensor::{Array, random};

use super::adapters::{Adapters, LoraFactors};
use super::problem::CheckpointProblem;
use crate::models::Projection;
use crate::{Error, LanguageModel, Result};

/// The modules of `model` that an adapter target could name.
pub fn linear_candidates(model: &impl Module) -> Vec<TargetCandidate> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    model.for_each_param(|name, p| {
        let Some(module) = name.strip_suffix(".weight") else {
            return;
        };
        if !seen.insert(module.to_string()) {
            return;
        }
        let last = module.rsplit('.').next().unwrap_or(module);
        let embedding = last == "embed_tokens" || last.ends_with("embeddings");
        out.push(TargetCandidate {
            path: module.to_string(),
            linear: p.value.ndim() == 2 && !embedding,
            output: last == "lm_head",
        });
    });
    out
}

/// The number of decoder blocks of a model with Hugging Face names
/// (`model.layers.<i>.…`).
pub fn block_count(model: &impl Module) -> usize {
    let mut n = 0;
    model.for_each_param(|name, _| {
        if let Some(i) = mlx_nn::layers::layer_index(name) {
            n = n.max(i + 1);
        }
    });
    n
}

/// The module paths `adapters`' configuration selects in `model`
/// (PEFT's rules; see [`select_targets`]).
pub fn adapter_targets(model: &impl Module, adapters: &Adapters) -> Result<Vec<String>> {
    Ok(select_targets(
        &linear_candidates(model),
        &adapters.target_modules,
        &adapters.layers,
        block_count(model),
    )?)
}

fn problem(adapters: &Adapters, key: String, message: String) -> CheckpointProblem {
    CheckpointProblem::BadFile {
        file: adapters.source.clone().unwrap_or_default(),
        message: format!("tensor `{key}`: {message}"),
    }
}

/// Checks every adapted module against `model`: it exists, it is linear and
/// the factors fit its weight `[out, in]`. All problems come back together,
/// each naming the adapters' file and the module.
pub fn check_adapters(model: &impl Module, adapters: &Adapters) -> Result<()> {
    let params = model.parameters();
    let candidates = linear_candidates(model);
    let mut problems = Vec::new();
    for (path, f) in &adapters.modules {
        let Some(c) = candidates.iter().find(|c| &c.path == path) else {
            problems.push(problem(
                adapters,
                path.clone(),
                "the model has no such module".into(),
            ));
            continue;
        };
        if !c.linear {
            problems.push(problem(
                adapters,
                path.clone(),
                "the module is not a linear layer".into(),
            ));
            continue;
        }
        let Some(w) = params.get(&format!("{path}.weight")) else {
            continue;
        };
        let (out, inp) = (w.shape()[0], w.shape()[1]);
        let (sa, sb) = (f.a.shape(), f.b.shape());
        if sa[1] != inp || sb[0] != out {
            problems.push(problem(
                adapters,
                path.clone(),
                format!(
                    "factors A {:?} and B {:?} do not fit the weight [{out}, {inp}] (A must be [r, {inp}], B [{out}, r])",
                    sa.0, sb.0
                ),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidCheckpoint {
            dir: adapters
                .source
                .as_ref()
                .and_then(|p| p.parent())
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            problems,
        })
    }
}

/// Replaces the quantized projections `adapters` target with dense ones
/// holding the dequantized weight: a sum with the update is dense.
fn dequantize_targets<M: LanguageModel>(model: &mut M, adapters: &Adapters) -> Result<()> {
    let Some(t) = model.transformer_mut() else {
        return Ok(());
    };
    for (path, p) in t.projections_mut() {
        if let Projection::Quantized(q) = p
            && adapters.modules.contains_key(&path)
        {
            *p = Projection::Dense(q.to_linear()?);
        }
    }
    Ok(())
}

fn apply<M: LanguageModel>(model: &mut M, adapters: &Adapters, sign: f64) -> Result<()> {
    dequantize_targets(model, adapters)?;
    check_adapters(model, adapters)?;
    let params = model.parameters();
    let scale = f64::from(adapters.config.scaling()) * sign;
    let mut updates = ParamMap::new();
    for (path, f) in &adapters.modules {
        let name = format!("{path}.weight");
        let Some(w) = params.get(&name) else { continue };
        let delta = f.b.matmul(&f.a)?.mul_scalar(scale)?.as_type(w.dtype())?;
        updates.insert(name, w.add(&delta)?);
    }
    model.update(&updates)?;
    Ok(())
}

/// Folds every adapter into its base weight: `W ← W + s · B A` (in the
/// weight's dtype). The model then computes what the adapted model does.
/// A quantized target is dequantized first (mlx-lm's `fuse` with
/// `dequantize`), so it becomes a dense layer.
pub fn merge_adapters<M: LanguageModel>(model: &mut M, adapters: &Adapters) -> Result<()> {
    apply(model, adapters, 1.0)
}

/// Takes merged adapters back out: `W ← W − s · B A`.
pub fn unmerge_adapters<M: LanguageModel>(model: &mut M, adapters: &Adapters) -> Result<()> {
    apply(model, adapters, -1.0)
}

/// Fresh adapters for the modules `adapters`-style settings select:
/// `A ~ U(±1/sqrt(in))` (PEFT's Kaiming-uniform), `B = 0`, drawn from
/// `seed`, in each weight's dtype.
pub fn new_adapters(
    model: &impl Module,
    config: LoraConfig,
    target_modules: mlx_nn::layers::TargetModules,
    layers: mlx_nn::layers::LayerSelection,
    seed: u64,
) -> Result<Adapters> {
    config.validate()?;
    let mut adapters = Adapters {
        config,
        target_modules,
        layers,
        modules: Default::default(),
        source: None,
    };
    let params = model.parameters();
    let targets = adapter_targets(model, &adapters)?;
    let count = i32::try_from(targets.len()).map_err(|_| Error::TooLarge {
        setting: "adapter targets".into(),
        value: targets.len().to_string(),
        message: "more than a 32-bit count".into(),
    })?;
    let keys = random::split(&random::key(seed)?, count.max(1))?;
    for (i, path) in targets.into_iter().enumerate() {
        let Some(w) = params.get(&format!("{path}.weight")) else {
            continue;
        };
        let (out, inp) = (w.shape()[0], w.shape()[1]);
        let index = i32::try_from(i).map_err(|_| Error::TooLarge {
            setting: "adapter targets".into(),
            value: i.to_string(),
            message: "more than a 32-bit count".into(),
        })?;
        let index = Array::from_slice(&[index], &[])?;
        let key = keys.take(&index, Some(0))?;
        let bound = 1.0 / f64::from(inp.max(1)).sqrt();
        let a = random::uniform(-bound, bound, &[config.r, inp], w.dtype(), Some(&key))?;
        let b = Array::zeros(&[out, config.r], w.dtype())?;
        adapters.modules.insert(path, LoraFactors { a, b });
    }
    Ok(adapters)
}
