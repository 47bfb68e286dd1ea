//! Normalisation layers.

use mlx_tensor::{Array, fast};

use crate::Module;
use crate::init::Init;
use crate::module::Param;
use crate::{Result, VarBuilder};

/// RMS normalisation over the last axis with a learned scale.
#[derive(Debug, Clone, Module)]
pub struct RmsNorm {
    /// `[dims]`.
    pub weight: Param,
    /// Added to the mean square.
    pub eps: f32,
}

impl RmsNorm {
    /// Builds from `vb` (`weight`, ones when random).
    pub fn new(dims: i32, eps: f32, vb: &VarBuilder) -> Result<Self> {
        let weight = vb.get_with_init("weight", &[dims], Init::Ones)?;
        Ok(RmsNorm {
            weight: Param::new(weight),
            eps,
        })
    }

    /// `x / sqrt(mean(x²) + eps) * weight` (MLX's fused kernel).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(fast::rms_norm(x, Some(&self.weight.value), self.eps)?)
    }
}

/// Layer normalisation over the last axis, optionally affine.
#[derive(Debug, Clone, Module)]
pub struct LayerNorm {
    /// `[dims]` scale (when affine).
    pub weight: Option<Param>,
    /// `[dims]` shift (when affine with bias).
    pub bias: Option<Param>,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    /// Builds from `vb` (`weight` and `bias` when `affine`).
    pub fn new(dims: i32, eps: f32, affine: bool, vb: &VarBuilder) -> Result<Self> {
        let (weight, bias) = if affine {
            (
                Some(Param::new(vb.get_with_init(
                    "weight",
                    &[dims],
                    Init::Ones,
                )?)),
                Some(Param::new(vb.get_with_init(
                    "bias",
                    &[dims],
                    Init::Zeros,
                )?)),
            )
        } else {
            (None, None)
        };
        Ok(LayerNorm { weight, bias, eps })
    }

    /// `(x - mean) / sqrt(var + eps) * weight + bias`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(fast::layer_norm(
            x,
            self.weight.as_ref().map(|p| &p.value),
            self.bias.as_ref().map(|p| &p.value),
            self.eps,
        )?)
    }
}
