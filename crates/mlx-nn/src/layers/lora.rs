//! Low-rank adapters (LoRA) over a dense or quantized linear layer.
//!
//! `y = base(x) + s · dropout(x) Aᵀ Bᵀ` with `A: [r, in]`, `B: [out, r]`
//! and `s = lora_alpha / r` (or `lora_alpha / sqrt(r)` with rsLoRA), the
//! conventions of Hugging Face PEFT. The base layer is frozen; `A` starts
//! as PEFT draws it (Kaiming-uniform with `a = sqrt(5)`, i.e.
//! `U(±1/sqrt(in))`) and `B` at zero, so a fresh adapter leaves the output
//! unchanged. Over a [`QuantizedLinear`] base this is QLoRA.
//!
//! Parameter names: the base layer's own (`weight`, `bias`, and `scales`,
//! `biases` when quantized) followed by `lora_A.weight` and
//! `lora_B.weight`, so a model's base checkpoint keys are unchanged and the
//! adapter keys are PEFT's without its `base_model.model.` prefix.

use std::cell::RefCell;

use mlx_tensor::{Array, Dtype, random};

use crate::Module;
use crate::init::Init;
use crate::layers::{Dropout, Linear, QuantizedLinear};
use crate::module::{Param, Visitor, VisitorMut};
use crate::{Error, ModuleExt, Result};

thread_local! {
    /// The key of the innermost [`DropoutKeyScope`] of this thread.
    static SCOPED_KEY: RefCell<Option<Array>> = const { RefCell::new(None) };
}

/// While alive, adapters in training mode that are given no key draw their
/// dropout masks from this scope's key, split once per call in call order,
/// instead of from the thread's global key sequence. A model block run in
/// such a scope, and run again in one with the same key (the backward pass
/// of gradient checkpointing recomputes it), draws the same masks both
/// times. Scopes nest; dropping one restores the enclosing one.
#[derive(Debug)]
pub struct DropoutKeyScope {
    previous: Option<Array>,
}

impl DropoutKeyScope {
    /// Enters a scope whose masks derive from `key`.
    pub fn enter(key: Array) -> Self {
        let previous = SCOPED_KEY.with(|slot| slot.replace(Some(key)));
        DropoutKeyScope { previous }
    }
}

impl Drop for DropoutKeyScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        SCOPED_KEY.with(|slot| *slot.borrow_mut() = previous);
    }
}

/// The next key of the innermost scope, if any (the scope moves on).
fn scoped_subkey() -> Result<Option<Array>> {
    SCOPED_KEY.with(|slot| {
        let mut slot = slot.borrow_mut();
        let Some(key) = slot.as_ref() else {
            return Ok(None);
        };
        let (next, sub) = random::split2(key)?;
        *slot = Some(next);
        Ok(Some(sub))
    })
}

/// Hyper-parameters of an adapter (PEFT's names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` (> 0).
    pub r: i32,
    /// `lora_alpha`: the scale numerator.
    pub lora_alpha: f32,
    /// `lora_dropout`: dropout probability on the adapter's input, in `[0, 1)`.
    pub lora_dropout: f32,
    /// rsLoRA: scale by `lora_alpha / sqrt(r)` instead of `lora_alpha / r`.
    pub use_rslora: bool,
}

impl Default for LoraConfig {
    /// PEFT's defaults: `r = 8`, `lora_alpha = 8`, no dropout, no rsLoRA.
    fn default() -> Self {
        LoraConfig {
            r: 8,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    /// An adapter of rank `r` with `lora_alpha`, no dropout, plain scaling.
    pub fn new(r: i32, lora_alpha: f32) -> Self {
        LoraConfig {
            r,
            lora_alpha,
            ..LoraConfig::default()
        }
    }

    /// The factor `s` of the low-rank product.
    pub fn scaling(&self) -> f32 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f32).sqrt()
        } else {
            self.lora_alpha / self.r as f32
        }
    }

    /// Checks the rank, `lora_alpha` and the dropout probability.
    pub fn validate(&self) -> Result<()> {
        if self.r <= 0 {
            return Err(Error::Config(format!(
                "LoRA rank r must be positive, got {}",
                self.r
            )));
        }
        if !self.lora_alpha.is_finite() {
            return Err(Error::Config(format!(
                "lora_alpha must be finite, got {}",
                self.lora_alpha
            )));
        }
        Dropout::new(self.lora_dropout).map(|_| ())
    }
}

/// The layer an adapter sits on: dense or quantized.
#[derive(Debug, Clone)]
pub enum LinearBase {
    /// A dense [`Linear`].
    Dense(Linear),
    /// A [`QuantizedLinear`] (QLoRA).
    Quantized(QuantizedLinear),
}

impl LinearBase {
    /// Applies the base layer.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            LinearBase::Dense(l) => l.forward(x),
            LinearBase::Quantized(q) => q.forward(x),
        }
    }

    /// `(out_features, in_features)` of the dense weight.
    pub fn dims(&self) -> (i32, i32) {
        match self {
            LinearBase::Dense(l) => l.dims(),
            LinearBase::Quantized(q) => {
                let (out, packed) = dims2(&q.weight.value);
                // Packed: `in · bits / 32` words per row.
                (out, packed.saturating_mul(32) / q.bits.max(1))
            }
        }
    }

    /// The dtype of the layer's floating-point values (the dense weight, or
    /// the quantization scales).
    pub fn float_dtype(&self) -> Dtype {
        match self {
            LinearBase::Dense(l) => l.weight.value.dtype(),
            LinearBase::Quantized(q) => q.scales.value.dtype(),
        }
    }
}

fn dims2(a: &Array) -> (i32, i32) {
    let s = a.shape();
    (
        s.first().copied().unwrap_or(0),
        s.get(1).copied().unwrap_or(0),
    )
}

impl Module for LinearBase {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        match self {
            LinearBase::Dense(l) => l.visit(v),
            LinearBase::Quantized(q) => q.visit(v),
        }
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        match self {
            LinearBase::Dense(l) => l.visit_mut(v),
            LinearBase::Quantized(q) => q.visit_mut(v),
        }
    }
}

/// A frozen base layer plus a trainable low-rank update (see the module
/// documentation).
#[derive(Debug, Clone, Module)]
pub struct LoraLinear {
    /// The frozen layer.
    #[module(flatten)]
    pub base: LinearBase,
    /// `A: [r, in]` (`lora_A.weight`).
    #[module(rename = "lora_A.weight")]
    pub lora_a: Param,
    /// `B: [out, r]` (`lora_B.weight`).
    #[module(rename = "lora_B.weight")]
    pub lora_b: Param,
    #[module(skip)]
    config: LoraConfig,
    #[module(skip)]
    dropout: Dropout,
    merged: bool,
    /// Off: the layer is its base alone (PEFT's `disable_adapter`).
    disabled: bool,
}

impl LoraLinear {
    /// Wraps `base` (frozen from now on) with a fresh adapter: `A` drawn
    /// with `key` from `U(±1/sqrt(in))`, `B` zero, both in the base's float
    /// dtype.
    pub fn new(base: LinearBase, config: LoraConfig, key: &Array) -> Result<Self> {
        config.validate()?;
        let (out, inp) = base.dims();
        let dtype = base.float_dtype();
        let bound = 1.0 / f64::from(inp.max(1)).sqrt();
        let a = Init::Uniform {
            low: -bound,
            high: bound,
        }
        .sample(&[config.r, inp], dtype, key)?;
        let b = Array::zeros(&[out, config.r], dtype)?;
        Self::from_parts(base, a, b, config)
    }

    /// Wraps `base` (frozen from now on) with given factors `A: [r, in]` and
    /// `B: [out, r]`; shapes must agree with the base and the rank.
    pub fn from_parts(
        mut base: LinearBase,
        a: Array,
        b: Array,
        config: LoraConfig,
    ) -> Result<Self> {
        config.validate()?;
        let (out, inp) = base.dims();
        check_shape("lora_A.weight", &a, &[config.r, inp])?;
        check_shape("lora_B.weight", &b, &[out, config.r])?;
        base.freeze();
        Ok(LoraLinear {
            base,
            lora_a: Param::new(a),
            lora_b: Param::new(b),
            dropout: Dropout::new(config.lora_dropout)?,
            config,
            merged: false,
            disabled: false,
        })
    }

    /// The adapter's hyper-parameters.
    pub fn config(&self) -> LoraConfig {
        self.config
    }

    /// The factor `s` of the low-rank product.
    pub fn scaling(&self) -> f32 {
        self.config.scaling()
    }

    /// Whether the update is currently folded into the base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// Switches adapter dropout between training and evaluation mode.
    pub fn set_training(&mut self, training: bool) {
        self.dropout.set_training(training);
    }

    /// Whether adapter dropout is in training mode.
    pub fn is_training(&self) -> bool {
        self.dropout.is_training()
    }

    /// Whether a forward pass draws a dropout mask: training mode, a
    /// non-zero probability, and the adapter enabled and not merged.
    pub fn dropout_active(&self) -> bool {
        self.dropout.is_training() && self.dropout.p() > 0.0 && !self.disabled && !self.merged
    }

    /// Switches the adapter on (the default) or off. Off, the layer is its
    /// base alone, exactly: the frozen base's output, the factors kept
    /// aside (PEFT's `disable_adapter`). A merged update is taken out of the
    /// base weight first, as PEFT does.
    pub fn set_enabled(&mut self, enabled: bool) -> Result<()> {
        if !enabled {
            self.unmerge()?;
        }
        self.disabled = !enabled;
        Ok(())
    }

    /// Whether the adapter takes part in the forward pass.
    pub fn is_enabled(&self) -> bool {
        !self.disabled
    }

    /// `s · B A`, the update to the dense weight `[out, in]`, in the base's
    /// float dtype.
    pub fn delta_weight(&self) -> Result<Array> {
        let ba = self.lora_b.value.matmul(&self.lora_a.value)?;
        Ok(ba
            .mul_scalar(f64::from(self.scaling()))?
            .as_type(self.base.float_dtype())?)
    }

    /// Applies the layer; adapter dropout (in training mode) draws its mask
    /// from `key` (`None`: the innermost [`DropoutKeyScope`], else the
    /// global key sequence).
    pub fn forward_with_key(&self, x: &Array, key: Option<&Array>) -> Result<Array> {
        let y = self.base.forward(x)?;
        if self.merged || self.disabled {
            return Ok(y);
        }
        let scoped = match key {
            None if self.dropout_active() => scoped_subkey()?,
            _ => None,
        };
        let dropped = self.dropout.forward_with_key(x, key.or(scoped.as_ref()))?;
        let z = dropped
            .matmul(&self.lora_a.value.t()?)?
            .matmul(&self.lora_b.value.t()?)?;
        let z = z
            .mul_scalar(f64::from(self.scaling()))?
            .as_type(x.dtype())?;
        Ok(y.add(&z)?)
    }

    /// Applies the layer (dropout, if any and in training mode, from the
    /// innermost [`DropoutKeyScope`] or the global key sequence).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        self.forward_with_key(x, None)
    }

    /// Folds `s · B A` into a dense base weight; the forward pass then is the
    /// base alone. Quantized bases cannot hold the sum exactly: use
    /// [`LoraLinear::fused`] (dense) or [`LoraLinear::fused_like_base`]
    /// (quantized again) for them.
    pub fn merge(&mut self) -> Result<()> {
        if self.merged {
            return Ok(());
        }
        if self.disabled {
            return Err(Error::Config(
                "cannot merge a disabled LoRA adapter; enable it first".into(),
            ));
        }
        let delta = self.delta_weight()?;
        let LinearBase::Dense(l) = &mut self.base else {
            return Err(quantized_merge_error());
        };
        l.weight.value = l.weight.value.add(&delta)?;
        self.merged = true;
        Ok(())
    }

    /// Takes the folded update back out of the base weight.
    pub fn unmerge(&mut self) -> Result<()> {
        if !self.merged {
            return Ok(());
        }
        let delta = self.delta_weight()?;
        let LinearBase::Dense(l) = &mut self.base else {
            return Err(quantized_merge_error());
        };
        l.weight.value = l.weight.value.subtract(&delta)?;
        self.merged = false;
        Ok(())
    }

    /// A dense [`Linear`] equal to the adapted layer: the (dequantized)
    /// base weight plus `s · B A` (what mlx-lm's `fuse(dequantize=True)` and
    /// PEFT's `merge_and_unload` give), whether the adapter is enabled or
    /// not.
    pub fn fused(&self) -> Result<Linear> {
        let (weight, bias) = match &self.base {
            LinearBase::Dense(l) => (
                l.weight.value.clone(),
                l.bias.as_ref().map(|b| b.value.clone()),
            ),
            LinearBase::Quantized(q) => (
                q.dequantized_weight()?,
                q.bias.as_ref().map(|b| b.value.clone()),
            ),
        };
        let weight = if self.merged {
            weight
        } else {
            weight.add(&self.delta_weight()?)?
        };
        Ok(Linear::from_arrays(weight, bias))
    }

    /// The adapted layer folded into a layer of its base's kind, as mlx-lm's
    /// `fuse(dequantize=False)`: a dense base gives [`LoraLinear::fused`]; a
    /// quantized base is dequantized, `s · B A` added and the sum quantized
    /// again with the base's group size and bits (its bias kept; the packed
    /// layer is frozen, as [`QuantizedLinear::from_linear`] makes it).
    pub fn fused_like_base(&self) -> Result<LinearBase> {
        let dense = self.fused()?;
        Ok(match &self.base {
            LinearBase::Dense(_) => LinearBase::Dense(dense),
            LinearBase::Quantized(q) => {
                LinearBase::Quantized(QuantizedLinear::from_linear(&dense, q.group_size, q.bits)?)
            }
        })
    }
}

impl super::Forward for LoraLinear {
    fn forward(&self, x: &Array) -> Result<Array> {
        LoraLinear::forward(self, x)
    }
}

fn quantized_merge_error() -> Error {
    Error::Config(
        "cannot merge a LoRA update into a quantized base in place; use `fused()` for a dense layer or `fused_like_base()` for a quantized one"
            .into(),
    )
}

fn check_shape(name: &str, a: &Array, expected: &[i32]) -> Result<()> {
    let actual = a.shape();
    if actual.0.as_slice() != expected {
        return Err(Error::ShapeMismatch {
            name: name.into(),
            expected: expected.to_vec(),
            actual: actual.0,
        });
    }
    Ok(())
}
