//! Normalisation layers.

use mlx_tensor::{fast, Array};

use crate::init::Init;
use crate::module::{Module, Param, Visitor, VisitorMut};
use crate::{Result, VarBuilder};

/// RMS normalisation over the last axis with a learned scale.
#[derive(Debug, Clone)]
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

impl Module for RmsNorm {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        v.param("weight", &self.weight);
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        v.param("weight", &mut self.weight);
    }
}

/// Layer normalisation over the last axis, optionally affine.
#[derive(Debug, Clone)]
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

impl Module for LayerNorm {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        if let Some(w) = &self.weight {
            v.param("weight", w);
        }
        if let Some(b) = &self.bias {
            v.param("bias", b);
        }
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        if let Some(w) = &mut self.weight {
            v.param("weight", w);
        }
        if let Some(b) = &mut self.bias {
            v.param("bias", b);
        }
    }
}
