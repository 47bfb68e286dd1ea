//! Attention masks and rotary position offsets derived from a cache's state.

use mlx_tensor::fast::{self, SdpaMask};
use mlx_tensor::{Array, Dtype};

use crate::Result;

/// The mask attention should use for the next `n` query positions.
#[derive(Debug, Clone)]
pub enum AttentionMask {
    /// No mask: a single query position attends to every cached key.
    None,
    /// The fused causal mask: query `i` sees keys up to `i + (kv_len - q_len)`.
    Causal,
    /// An explicit boolean mask (`true` = attend), broadcastable to
    /// `[B, heads, q_len, kv_len]`.
    Array(Array),
}

impl AttentionMask {
    /// The mask in the form [`fast::scaled_dot_product_attention`] takes.
    pub fn as_sdpa(&self) -> SdpaMask<'_> {
        match self {
            AttentionMask::None => SdpaMask::None,
            AttentionMask::Causal => SdpaMask::Causal,
            AttentionMask::Array(a) => SdpaMask::Array(a),
        }
    }

    /// The mask for a sequence of `n` tokens processed without a cache.
    pub fn for_prompt(n: i32) -> AttentionMask {
        if n > 1 {
            AttentionMask::Causal
        } else {
            AttentionMask::None
        }
    }
}

/// The position of the first new token, as rotary embeddings need it.
#[derive(Debug, Clone)]
pub enum PositionOffset {
    /// One offset shared by every row.
    Scalar(i32),
    /// One offset per row (`i32[B]`); rows of a left-padded batch start at
    /// minus their padding, so their first real token gets position 0.
    PerRow(Array),
}

impl PositionOffset {
    /// Applies rotary embeddings to `x: [B, heads, L, head_dim]` starting at
    /// this offset.
    pub fn rope(
        &self,
        x: &Array,
        dims: i32,
        traditional: bool,
        base: f32,
        scale: f32,
    ) -> Result<Array> {
        Ok(match self {
            PositionOffset::Scalar(offset) => {
                fast::rope(x, dims, traditional, base, scale, *offset)?
            }
            PositionOffset::PerRow(offsets) => {
                fast::rope_with_offsets(x, dims, traditional, base, scale, offsets)?
            }
        })
    }

    /// The offsets as an int32 array: `[1]` for a shared offset, `[B]` per
    /// row.
    pub fn to_array(&self) -> Result<Array> {
        Ok(match self {
            PositionOffset::Scalar(offset) => Array::from_slice(&[*offset], &[1])?,
            PositionOffset::PerRow(offsets) => offsets.as_type(Dtype::I32)?,
        })
    }
}

/// A boolean causal mask `[n, offset + n]` (or `[B, 1, n, offset + n]` with
/// `left_padding`): query `i` (at absolute position `offset + i`) sees key
/// `j` iff `j <= offset + i`, and, with a window, `offset + i < j + window`;
/// with left padding, keys before a row's padding are hidden.
pub fn causal_mask(
    n: i32,
    offset: i32,
    window: Option<i32>,
    left_padding: Option<&[i32]>,
) -> Result<Array> {
    let total = offset + n;
    let keys = Array::arange(0.0, f64::from(total), 1.0, Dtype::I32)?.reshape(&[1, total])?;
    let queries =
        Array::arange(f64::from(offset), f64::from(total), 1.0, Dtype::I32)?.reshape(&[n, 1])?;
    let mut mask = queries.ge(&keys)?;
    if let Some(window) = window {
        let limit = keys.add_scalar(f64::from(window))?;
        mask = mask.logical_and(&queries.lt(&limit)?)?;
    }
    if let Some(padding) = left_padding {
        let rows = padding.len() as i32;
        let padding = Array::from_slice(padding, &[rows, 1, 1, 1])?;
        mask = mask.logical_and(&padding.le(&keys)?)?;
    }
    Ok(mask)
}
