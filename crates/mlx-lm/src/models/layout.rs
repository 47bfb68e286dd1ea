//! The attention mask and positions of a forward pass: after the cached
//! positions, or from 0 (each row after its left padding) without a cache.

use mlx_tensor::Array;

use crate::cache::{AttentionMask, LayerCache, PositionOffset, causal_mask};
use crate::{Error, Result};

/// `(batch, length)` of token ids `[B, L]`.
pub(crate) fn batch_and_length(tokens: &Array) -> Result<(i32, i32)> {
    match tokens.shape()[..] {
        [b, l] => Ok((b, l)),
        _ => Err(Error::InvalidInput {
            message: format!("tokens must be [batch, length], got {}", tokens.describe()),
        }),
    }
}

/// The mask and positions of a prompt without a cache: a causal mask, or,
/// with `left_padding`, one that hides each row's leading padding, whose
/// positions start after it.
pub(crate) fn prompt_layout(
    left_padding: Option<&[i32]>,
    tokens: &Array,
) -> Result<(AttentionMask, PositionOffset)> {
    let (batch, len) = batch_and_length(tokens)?;
    let Some(p) = left_padding else {
        return Ok((AttentionMask::for_prompt(len), PositionOffset::Scalar(0)));
    };
    if p.len() != batch as usize || p.iter().any(|&x| x < 0 || x > len) {
        return Err(Error::InvalidInput {
            message: format!(
                "left padding {p:?} does not fit tokens of shape {}",
                tokens.shape()
            ),
        });
    }
    if p.iter().all(|&x| x == 0) {
        return Ok((AttentionMask::for_prompt(len), PositionOffset::Scalar(0)));
    }
    let offsets: Vec<i32> = p.iter().map(|x| -x).collect();
    Ok((
        AttentionMask::Array(causal_mask(len, 0, None, Some(p))?),
        PositionOffset::PerRow(Array::from_slice(&offsets, &[batch])?),
    ))
}

/// The mask and positions of `tokens` after the cached ones (every layer's
/// cache holds the same positions: derived once per pass, from the first).
pub(crate) fn cache_layout(
    caches: &[LayerCache],
    layers: usize,
    tokens: &Array,
) -> Result<(AttentionMask, PositionOffset)> {
    let (_, len) = batch_and_length(tokens)?;
    if caches.len() != layers {
        return Err(Error::InvalidCache {
            message: format!("{} layer caches given for {layers} layers", caches.len()),
        });
    }
    let first = caches.first().ok_or_else(|| Error::InvalidCache {
        message: "no layer caches".into(),
    })?;
    Ok((first.make_mask(len)?, first.position_offset()?))
}
