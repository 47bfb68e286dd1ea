//! Feed-forward blocks: the gated SwiGLU MLP of Llama/Qwen models and a
//! plain multi-layer perceptron.

use mlx_tensor::Array;

use crate::Module;
use crate::activations::{Activation, silu};
use crate::layers::{Forward, Linear, LinearConfig};
use crate::{Error, Result, VarBuilder};

/// `down_proj(silu(gate_proj(x)) * up_proj(x))`, without biases, with the
/// Hugging Face names `gate_proj`, `up_proj`, `down_proj`.
#[derive(Debug, Clone, Module)]
pub struct SwiGlu {
    /// `hidden → intermediate`, gated by SiLU.
    pub gate_proj: Linear,
    /// `hidden → intermediate`.
    pub up_proj: Linear,
    /// `intermediate → hidden`.
    pub down_proj: Linear,
}

impl SwiGlu {
    /// Builds from `vb` (`gate_proj.weight`, `up_proj.weight`, `down_proj.weight`).
    pub fn new(hidden: i32, intermediate: i32, vb: &VarBuilder) -> Result<Self> {
        Ok(SwiGlu {
            gate_proj: LinearConfig::new(hidden, intermediate, false).init(&vb.pp("gate_proj"))?,
            up_proj: LinearConfig::new(hidden, intermediate, false).init(&vb.pp("up_proj"))?,
            down_proj: LinearConfig::new(intermediate, hidden, false).init(&vb.pp("down_proj"))?,
        })
    }

    /// Applies the block to `x: [..., hidden]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let gated = silu(&self.gate_proj.forward(x)?)?.multiply(&self.up_proj.forward(x)?)?;
        self.down_proj.forward(&gated)
    }
}

impl Forward for SwiGlu {
    fn forward(&self, x: &Array) -> Result<Array> {
        SwiGlu::forward(self, x)
    }
}

/// A multi-layer perceptron: `Linear → activation → … → Linear`, the
/// activation between layers but not after the last. Parameters are named
/// `layers.{i}.weight` and `layers.{i}.bias`.
#[derive(Debug, Clone, Module)]
pub struct Mlp {
    /// The linear layers, in order.
    pub layers: Vec<Linear>,
    /// The activation between layers.
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    /// Builds layers `dims[0] → dims[1] → … → dims[n]` (with biases) from
    /// `vb.pp("layers")`. Needs at least two sizes.
    pub fn new(dims: &[i32], activation: Activation, vb: &VarBuilder) -> Result<Self> {
        if dims.len() < 2 {
            return Err(Error::Config(format!(
                "an MLP needs at least an input and an output size, got {dims:?}"
            )));
        }
        let vb = vb.pp("layers");
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, pair)| LinearConfig::new(pair[0], pair[1], true).init(&vb.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp { layers, activation })
    }

    /// Applies the network to `x: [..., dims[0]]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let mut h = x.clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i < last {
                h = self.activation.apply(&h)?;
            }
        }
        Ok(h)
    }
}

impl Forward for Mlp {
    fn forward(&self, x: &Array) -> Result<Array> {
        Mlp::forward(self, x)
    }
}
