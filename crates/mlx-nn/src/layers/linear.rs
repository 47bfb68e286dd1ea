//! Fully connected layer.

use mlx_tensor::Array;

use crate::Module;
use crate::init::Init;
use crate::module::Param;
use crate::{Result, VarBuilder};

/// `y = x Wᵀ + b` with `W: [out, in]` (the Hugging Face layout).
#[derive(Debug, Clone, Module)]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Param,
    /// `[out_features]`, when the layer has a bias.
    pub bias: Option<Param>,
}

/// Hyper-parameters of a [`Linear`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearConfig {
    /// Input features.
    pub in_features: i32,
    /// Output features.
    pub out_features: i32,
    /// Whether to add a bias.
    pub bias: bool,
}

impl LinearConfig {
    /// A layer `in_features → out_features` with or without bias.
    pub fn new(in_features: i32, out_features: i32, bias: bool) -> Self {
        LinearConfig {
            in_features,
            out_features,
            bias,
        }
    }

    /// Builds the layer from `vb` (`weight`, and `bias` when enabled).
    /// Random sources use MLX's default: `U(±1/sqrt(in_features))`.
    pub fn init(self, vb: &VarBuilder) -> Result<Linear> {
        let scale = 1.0 / f64::from(self.in_features.max(1)).sqrt();
        let init = Init::Uniform {
            low: -scale,
            high: scale,
        };
        let weight = vb.get_with_init("weight", &[self.out_features, self.in_features], init)?;
        let bias = if self.bias {
            Some(Param::new(vb.get_with_init(
                "bias",
                &[self.out_features],
                init,
            )?))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::new(weight),
            bias,
        })
    }
}

impl Linear {
    /// Wraps existing arrays.
    pub fn from_arrays(weight: Array, bias: Option<Array>) -> Self {
        Linear {
            weight: Param::new(weight),
            bias: bias.map(Param::new),
        }
    }

    /// Applies the layer to `x: [..., in]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let wt = self.weight.value.t()?;
        Ok(match &self.bias {
            Some(b) => b.value.addmm(x, &wt, 1.0, 1.0)?,
            None => x.matmul(&wt)?,
        })
    }

    /// `(out_features, in_features)`.
    pub fn dims(&self) -> (i32, i32) {
        let s = self.weight.value.shape();
        (
            s.first().copied().unwrap_or(0),
            s.get(1).copied().unwrap_or(0),
        )
    }
}
