//! The model's linear projections and token embedding as layers that are
//! dense, quantized, or (projections) wrapped in a LoRA adapter.
//!
//! Parameter names are those of the wrapped layer, so a dense model's
//! checkpoint keys are unchanged: `weight` (and `bias`), plus `scales` and
//! `biases` when quantized, plus `lora_A.weight` and `lora_B.weight` when
//! adapted.

use mlx_nn::layers::{
    Embedding, Linear, LinearBase, LinearConfig, LoraConfig, LoraLinear, QuantizedEmbedding,
    QuantizedLinear,
};
use mlx_nn::{Module, VarBuilder, Visitor, VisitorMut};
use mlx_tensor::{Array, Dtype, random};

use crate::{Error, Result};

/// A linear projection: dense, quantized, or with a LoRA adapter.
#[derive(Debug, Clone)]
pub enum Projection {
    /// A dense [`Linear`].
    Dense(Linear),
    /// Packed weights ([`QuantizedLinear`]).
    Quantized(QuantizedLinear),
    /// A frozen dense or quantized base plus a low-rank update.
    Lora(Box<LoraLinear>),
}

impl Projection {
    /// A dense projection built from `vb` (see [`LinearConfig::init`]).
    pub(crate) fn dense(config: LinearConfig, vb: &VarBuilder) -> Result<Self> {
        Ok(Projection::Dense(config.init(vb)?))
    }

    /// Applies the layer to `x: [..., in]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(match self {
            Projection::Dense(l) => l.forward(x)?,
            Projection::Quantized(q) => q.forward(x)?,
            Projection::Lora(l) => l.forward(x)?,
        })
    }

    /// The dense layer, when this is one (decoding's fast paths read it).
    pub fn as_dense(&self) -> Option<&Linear> {
        match self {
            Projection::Dense(l) => Some(l),
            _ => None,
        }
    }

    /// The dense layer, mutably, when this is one.
    pub fn as_dense_mut(&mut self) -> Option<&mut Linear> {
        match self {
            Projection::Dense(l) => Some(l),
            _ => None,
        }
    }

    /// The adapter, when this layer has one.
    pub fn as_lora(&self) -> Option<&LoraLinear> {
        match self {
            Projection::Lora(l) => Some(l),
            _ => None,
        }
    }

    /// The adapter, mutably, when this layer has one.
    pub fn as_lora_mut(&mut self) -> Option<&mut LoraLinear> {
        match self {
            Projection::Lora(l) => Some(l),
            _ => None,
        }
    }

    /// Wraps the layer (dense or quantized) with adapter factors `a: [r, in]`
    /// and `b: [out, r]`; its base is frozen. `path` names the module in
    /// errors. An adapted layer cannot take a second adapter.
    pub(crate) fn attach(
        &mut self,
        path: &str,
        a: Array,
        b: Array,
        config: LoraConfig,
    ) -> Result<()> {
        let base = match self {
            Projection::Dense(l) => LinearBase::Dense(l.clone()),
            Projection::Quantized(q) => LinearBase::Quantized(q.clone()),
            Projection::Lora(_) => {
                return Err(Error::InvalidInput {
                    message: format!("module `{path}` already has an adapter"),
                });
            }
        };
        let lora = LoraLinear::from_parts(base, a, b, config).map_err(|e| Error::InvalidInput {
            message: format!("adapter of module `{path}`: {e}"),
        })?;
        *self = Projection::Lora(Box::new(lora));
        Ok(())
    }

    /// Folds an adapter into a dense layer (a quantized base is dequantized,
    /// as mlx-lm's `fuse` and PEFT's `merge_and_unload` do); other layers
    /// are left as they are.
    pub(crate) fn fuse(&mut self) -> Result<()> {
        if let Projection::Lora(l) = self {
            *self = Projection::Dense(l.fused()?);
        }
        Ok(())
    }

    /// Switches an adapter's dropout between training and evaluation mode
    /// (other layers have none).
    pub fn set_training(&mut self, training: bool) {
        if let Projection::Lora(l) = self {
            l.set_training(training);
        }
    }

    /// `(out_features, in_features)`.
    pub fn dims(&self) -> (i32, i32) {
        match self {
            Projection::Dense(l) => l.dims(),
            Projection::Quantized(q) => LinearBase::Quantized(q.clone()).dims(),
            Projection::Lora(l) => l.base.dims(),
        }
    }

    /// The dtype of the layer's floating-point values.
    pub fn float_dtype(&self) -> Dtype {
        match self {
            Projection::Dense(l) => l.weight.value.dtype(),
            Projection::Quantized(q) => q.scales.value.dtype(),
            Projection::Lora(l) => l.base.float_dtype(),
        }
    }
}

impl Module for Projection {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        match self {
            Projection::Dense(l) => l.visit(v),
            Projection::Quantized(q) => q.visit(v),
            Projection::Lora(l) => l.visit(v),
        }
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        match self {
            Projection::Dense(l) => l.visit_mut(v),
            Projection::Quantized(q) => q.visit_mut(v),
            Projection::Lora(l) => l.visit_mut(v),
        }
    }
}

/// A fresh key from the global key sequence when one of `projections` is
/// an adapter whose dropout draws masks (else `None`, and nothing is
/// drawn): the start of the chain of per-block keys of one forward pass
/// (see [`next_block_key`]).
pub(crate) fn adapter_dropout_key<'a>(
    mut projections: impl Iterator<Item = &'a Projection>,
) -> Result<Option<Array>> {
    if !projections.any(|p| p.as_lora().is_some_and(LoraLinear::dropout_active)) {
        return Ok(None);
    }
    let high = i64::from(u32::MAX);
    Ok(Some(random::randint(0, high, &[2], Dtype::U32, None)?))
}

/// The key of the next block, split off the chain (which moves on): the
/// block's adapters draw their dropout masks from it (a
/// [`DropoutKeyScope`](mlx_nn::layers::DropoutKeyScope)), also when
/// gradient checkpointing recomputes the block.
pub(crate) fn next_block_key(chain: &mut Option<Array>) -> Result<Option<Array>> {
    let Some(key) = chain.as_ref() else {
        return Ok(None);
    };
    let (next, sub) = random::split2(key)?;
    *chain = Some(next);
    Ok(Some(sub))
}

/// The token embedding table: dense or quantized.
#[derive(Debug, Clone)]
pub enum TokenEmbedding {
    /// A dense [`Embedding`].
    Dense(Embedding),
    /// A packed table ([`QuantizedEmbedding`]).
    Quantized(QuantizedEmbedding),
}

impl TokenEmbedding {
    /// The rows of integer ids (an extra last axis).
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        Ok(match self {
            TokenEmbedding::Dense(e) => e.forward(ids)?,
            TokenEmbedding::Quantized(e) => e.forward(ids)?,
        })
    }

    /// The table as an output projection (tied embeddings): `x Eᵀ`.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        Ok(match self {
            TokenEmbedding::Dense(e) => e.as_linear(x)?,
            TokenEmbedding::Quantized(e) => e.as_linear(x)?,
        })
    }

    /// The dense table, when this is one.
    pub fn as_dense(&self) -> Option<&Embedding> {
        match self {
            TokenEmbedding::Dense(e) => Some(e),
            TokenEmbedding::Quantized(_) => None,
        }
    }

    /// The dtype of the table's floating-point values.
    pub fn float_dtype(&self) -> Dtype {
        match self {
            TokenEmbedding::Dense(e) => e.weight.value.dtype(),
            TokenEmbedding::Quantized(e) => e.scales.value.dtype(),
        }
    }
}

impl Module for TokenEmbedding {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        match self {
            TokenEmbedding::Dense(e) => e.visit(v),
            TokenEmbedding::Quantized(e) => e.visit(v),
        }
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        match self {
            TokenEmbedding::Dense(e) => e.visit_mut(v),
            TokenEmbedding::Quantized(e) => e.visit_mut(v),
        }
    }
}
