//! Token embeddings with a quantized table.

use mlx_tensor::{Array, Quantized};

use crate::Module;
use crate::Result;
use crate::layers::Embedding;
use crate::module::Param;

/// An [`Embedding`] whose `[num_embeddings, dims]` table is stored
/// quantized (affine mode) as packed `weight`, per-group `scales` and
/// `biases`, the names MLX and mlx-lm use. Its parameters are frozen.
#[derive(Debug, Clone, Module)]
pub struct QuantizedEmbedding {
    /// Packed `u32` table `[num_embeddings, dims · bits / 32]`.
    pub weight: Param,
    /// Scales `[num_embeddings, dims / group_size]`.
    pub scales: Param,
    /// Biases of the quantization `[num_embeddings, dims / group_size]`.
    pub biases: Param,
    /// Elements per group.
    pub group_size: i32,
    /// Bits per element.
    pub bits: i32,
}

fn frozen(value: Array) -> Param {
    Param {
        value,
        frozen: true,
    }
}

impl QuantizedEmbedding {
    /// Wraps a quantized table (as `Array::quantize` or a checkpoint gives).
    pub fn from_quantized(q: Quantized) -> Self {
        QuantizedEmbedding {
            weight: frozen(q.weight),
            scales: frozen(q.scales),
            biases: frozen(q.biases),
            group_size: q.group_size,
            bits: q.bits,
        }
    }

    /// Quantizes a dense embedding table.
    pub fn from_embedding(e: &Embedding, group_size: i32, bits: i32) -> Result<Self> {
        Ok(Self::from_quantized(
            e.weight.value.quantize(group_size, bits)?,
        ))
    }

    fn rows(&self, ids: &Array) -> Result<Quantized> {
        Ok(Quantized {
            weight: self.weight.value.take(ids, Some(0))?,
            scales: self.scales.value.take(ids, Some(0))?,
            biases: self.biases.value.take(ids, Some(0))?,
            group_size: self.group_size,
            bits: self.bits,
        })
    }

    /// Looks up integer ids of any shape and dequantizes their rows; the
    /// result has an extra last axis.
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        Ok(self.rows(ids)?.dequantize()?)
    }

    /// Uses the table as an output projection (tied embeddings): `x Eᵀ`
    /// with the quantized product.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        let q = Quantized {
            weight: self.weight.value.clone(),
            scales: self.scales.value.clone(),
            biases: self.biases.value.clone(),
            group_size: self.group_size,
            bits: self.bits,
        };
        Ok(q.matmul(x, true)?)
    }
}
