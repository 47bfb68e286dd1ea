//! The SwiGLU feed-forward block of dense Qwen3 layers, over
//! [`Projection`]s (dense, quantized or adapted).

use mlx_nn::layers::LinearConfig;
use mlx_nn::{Module, VarBuilder};
use mlx_tensor::Array;

use super::fused::swiglu;
use super::projection::Projection;
use crate::Result;

/// `down_proj(silu(gate_proj(x)) * up_proj(x))`, without biases, with the
/// Hugging Face names `gate_proj`, `up_proj`, `down_proj`.
#[derive(Debug, Clone, Module)]
pub(crate) struct DenseMlp {
    pub(crate) gate_proj: Projection,
    pub(crate) up_proj: Projection,
    pub(crate) down_proj: Projection,
}

impl DenseMlp {
    /// Builds from `vb` (`gate_proj.weight`, `up_proj.weight`, `down_proj.weight`).
    pub(crate) fn new(hidden: i32, intermediate: i32, vb: &VarBuilder) -> Result<Self> {
        let linear = |i, o, name| Projection::dense(LinearConfig::new(i, o, false), &vb.pp(name));
        Ok(DenseMlp {
            gate_proj: linear(hidden, intermediate, "gate_proj")?,
            up_proj: linear(hidden, intermediate, "up_proj")?,
            down_proj: linear(intermediate, hidden, "down_proj")?,
        })
    }

    /// Applies the block to `x: [..., hidden]`.
    pub(crate) fn forward(&self, x: &Array) -> Result<Array> {
        let gated = swiglu(&self.gate_proj.forward(x)?, &self.up_proj.forward(x)?)?;
        self.down_proj.forward(&gated)
    }
}
