//! Adapters attached as layers: target projections become
//! [`LoraLinear`](mlx_nn::layers::LoraLinear)s over their frozen (dense or
//! quantized) base, and every other parameter is frozen, so training
//! updates the adapters only (LoRA; over a quantized base, QLoRA).
//! [`fuse_attached_adapters`] folds them into dense layers,
//! [`fuse_attached_adapters_requantized`] into layers of their base's kind
//! (a quantized base quantized again).
//!
//! Parameter names: a target `p` keeps `p.weight` (and the quantization's
//! `p.scales`, `p.biases`) and gains `p.lora_A.weight` and
//! `p.lora_B.weight`, PEFT's keys without `base_model.model.`.

use mlx_nn::ModuleExt;
use mlx_nn::layers::{LayerSelection, LinearBase, LoraConfig, TargetModules};
use mlx_tensor::{Array, random};

use super::adapter_merge::adapter_targets;
use super::adapters::{Adapters, LoraFactors, load_adapters};
use crate::models::{Projection, Transformer};
use crate::{Error, LanguageModel, Result};

/// Whether a parameter name is an adapter factor.
pub fn is_adapter_parameter(name: &str) -> bool {
    name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight")
}

fn transformer<M: LanguageModel>(model: &mut M) -> Result<&mut Transformer> {
    model.transformer_mut().ok_or_else(|| Error::InvalidInput {
        message: "attaching adapters needs a model with Qwen3-style layers".into(),
    })
}

/// Freezes every parameter but the adapter factors.
fn train_adapters_only<M: LanguageModel>(model: &mut M) {
    model.set_frozen_where(true, |_| true);
    model.set_frozen_where(false, is_adapter_parameter);
}

fn too_many(n: usize) -> Error {
    Error::TooLarge {
        setting: "adapter targets".into(),
        value: n.to_string(),
        message: "more than a 32-bit count".into(),
    }
}

/// Wraps the projections that `target_modules` and `layers` select (PEFT's
/// rules) in fresh adapters: `A ~ U(±1/sqrt(in))` (PEFT's
/// Kaiming-uniform), `B = 0`, drawn from `seed` as
/// [`new_adapters`](super::new_adapters) draws them, in each layer's float
/// dtype; then freezes everything but the adapters. The model's output is
/// unchanged until `B` is trained. Returns the adapted module paths.
pub fn attach_lora<M: LanguageModel>(
    model: &mut M,
    config: LoraConfig,
    target_modules: TargetModules,
    layers: LayerSelection,
    seed: u64,
) -> Result<Vec<String>> {
    config.validate()?;
    let selection = Adapters {
        config,
        target_modules,
        layers,
        modules: Default::default(),
        source: None,
    };
    let targets = adapter_targets(model, &selection)?;
    let count = i32::try_from(targets.len()).map_err(|_| too_many(targets.len()))?;
    let keys = random::split(&random::key(seed)?, count.max(1))?;
    let t = transformer(model)?;
    let mut projections = t.projections_mut();
    for (i, path) in targets.iter().enumerate() {
        let Some((_, p)) = projections.iter_mut().find(|(name, _)| name == path) else {
            return Err(Error::InvalidInput {
                message: format!("adapter target `{path}` is not a projection of the model"),
            });
        };
        let (out, inp) = p.dims();
        let dtype = p.float_dtype();
        let index = i32::try_from(i).map_err(|_| too_many(i))?;
        let key = keys.take(&Array::from_slice(&[index], &[])?, Some(0))?;
        let bound = 1.0 / f64::from(inp.max(1)).sqrt();
        let a = random::uniform(-bound, bound, &[config.r, inp], dtype, Some(&key))?;
        let b = Array::zeros(&[out, config.r], dtype)?;
        p.attach(path, a, b, config)?;
    }
    train_adapters_only(model);
    Ok(targets)
}

/// Attaches `adapters` (as [`load_adapters`] reads them) to the model's
/// projections without merging them, cast to each layer's float dtype, and
/// freezes everything but the adapters. A module the model lacks or factors
/// that do not fit are errors naming the adapters' file and the module;
/// the model is then unchanged.
pub fn attach_adapters<M: LanguageModel>(model: &mut M, adapters: &Adapters) -> Result<()> {
    let file = adapters
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<adapters>".into());
    let mut adapted = model.clone();
    let t = transformer(&mut adapted)?;
    let mut projections = t.projections_mut();
    for (path, f) in &adapters.modules {
        let Some((_, p)) = projections.iter_mut().find(|(name, _)| name == path) else {
            return Err(Error::InvalidInput {
                message: format!("{file}: the model has no projection `{path}` to adapt"),
            });
        };
        let dtype = p.float_dtype();
        p.attach(
            path,
            f.a.as_type(dtype)?,
            f.b.as_type(dtype)?,
            adapters.config,
        )
        .map_err(|e| Error::InvalidInput {
            message: match e {
                Error::InvalidInput { message } => format!("{file}: {message}"),
                other => format!("{file}: {other}"),
            },
        })?;
    }
    train_adapters_only(&mut adapted);
    *model = adapted;
    Ok(())
}

/// Reads the adapters in `dir` (PEFT's or mlx-lm's layout) and attaches
/// them (see [`attach_adapters`]); returns what was read.
pub fn load_and_attach_adapters<M: LanguageModel>(
    model: &mut M,
    dir: impl AsRef<std::path::Path>,
) -> Result<Adapters> {
    let (adapters, _) = load_adapters(dir)?;
    attach_adapters(model, &adapters)?;
    Ok(adapters)
}

/// The attached adapters, ready for
/// [`save_adapters`](super::save_adapters): each adapted module's factors,
/// the targets as the adapted modules' full paths, every block. `None`
/// when nothing is attached; adapters of different settings (rank, alpha,
/// dropout, rsLoRA) are an error, since one file holds one setting.
pub fn attached_adapters<M: LanguageModel>(model: &M) -> Result<Option<Adapters>> {
    let Some(t) = model.transformer() else {
        return Ok(None);
    };
    let mut config = None;
    let mut modules = std::collections::BTreeMap::new();
    for (path, p) in t.projections() {
        let Some(l) = p.as_lora() else { continue };
        if *config.get_or_insert(l.config()) != l.config() {
            return Err(Error::InvalidInput {
                message: format!(
                    "adapter of `{path}` has settings {:?} unlike the others' {config:?}",
                    l.config()
                ),
            });
        }
        let factors = LoraFactors {
            a: l.lora_a.value.clone(),
            b: l.lora_b.value.clone(),
        };
        modules.insert(path, factors);
    }
    Ok(config.map(|config| Adapters {
        config,
        target_modules: TargetModules::Names(modules.keys().cloned().collect()),
        layers: LayerSelection::All,
        modules,
        source: None,
    }))
}

/// Switches the dropout of every attached adapter between training and
/// evaluation mode (adapters start in training mode).
pub fn set_adapters_training<M: LanguageModel>(model: &mut M, training: bool) {
    if let Some(t) = model.transformer_mut() {
        for (_, p) in t.projections_mut() {
            p.set_training(training);
        }
    }
}

/// Whether any projection of the model has an adapter attached.
pub fn has_adapters<M: LanguageModel>(model: &M) -> bool {
    model
        .transformer()
        .is_some_and(|t| t.projections().iter().any(|(_, p)| p.as_lora().is_some()))
}

/// Switches every attached adapter on (the default) or off. Off, the model
/// is its base exactly (PEFT's `disable_adapter`): the reference model of
/// GRPO with β > 0, without a second copy of the weights. Merged adapters
/// are unmerged first.
pub fn set_adapters_enabled<M: LanguageModel>(model: &mut M, enabled: bool) -> Result<()> {
    if let Some(t) = model.transformer_mut() {
        for (path, p) in t.projections_mut() {
            if let Some(l) = p.as_lora_mut() {
                l.set_enabled(enabled).map_err(|e| Error::InvalidInput {
                    message: format!("adapter of module `{path}`: {e}"),
                })?;
            }
        }
    }
    Ok(())
}

/// Folds every attached adapter into a dense layer, `W + s · B A` (a
/// quantized base is dequantized first, as mlx-lm's `fuse` and PEFT's
/// `merge_and_unload` do). The fused layers are trainable; the other
/// parameters keep their frozen state.
pub fn fuse_attached_adapters<M: LanguageModel>(model: &mut M) -> Result<()> {
    let t = transformer(model)?;
    for (_, p) in t.projections_mut() {
        p.fuse()?;
    }
    Ok(())
}

/// Folds every attached adapter into a layer of its base's kind, as
/// mlx-lm's `fuse` (without `--dequantize`) does: over a dense base, `W + s
/// · B A` (trainable, as [`fuse_attached_adapters`] gives); over a
/// quantized base, the dequantized weight plus `s · B A`, quantized again
/// with the base's group size and bits (frozen, as loaded quantized layers
/// are). See [`LoraLinear::fused_like_base`](mlx_nn::layers::LoraLinear::fused_like_base).
pub fn fuse_attached_adapters_requantized<M: LanguageModel>(model: &mut M) -> Result<()> {
    let t = transformer(model)?;
    for (path, p) in t.projections_mut() {
        let Some(l) = p.as_lora() else { continue };
        let fused = l.fused_like_base().map_err(|e| Error::InvalidInput {
            message: format!("fusing the adapter of module `{path}`: {e}"),
        })?;
        *p = match fused {
            LinearBase::Dense(d) => Projection::Dense(d),
            LinearBase::Quantized(q) => Projection::Quantized(q),
        };
    }
    Ok(())
}
