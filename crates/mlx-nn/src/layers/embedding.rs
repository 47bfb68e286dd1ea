//! Token embeddings.

use mlx_tensor::Array;

use crate::Module;
use crate::init::Init;
use crate::module::Param;
use crate::{Result, VarBuilder};

/// A lookup table `[num_embeddings, dims]`.
#[derive(Debug, Clone, Module)]
pub struct Embedding {
    /// `[num_embeddings, dims]`.
    pub weight: Param,
}

impl Embedding {
    /// Builds from `vb` (`weight`); random sources draw `N(0, 1/sqrt(dims))`
    /// like MLX.
    pub fn new(num_embeddings: i32, dims: i32, vb: &VarBuilder) -> Result<Self> {
        let std = 1.0 / (dims.max(1) as f32).sqrt();
        let weight = vb.get_with_init(
            "weight",
            &[num_embeddings, dims],
            Init::Normal { mean: 0.0, std },
        )?;
        Ok(Embedding {
            weight: Param::new(weight),
        })
    }

    /// Looks up integer ids of any shape; the result has an extra last axis.
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        Ok(self.weight.value.take(ids, Some(0))?)
    }

    /// Uses the table as an output projection (tied embeddings): `x Eᵀ`.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        Ok(x.matmul(&self.weight.value.t()?)?)
    }
}
