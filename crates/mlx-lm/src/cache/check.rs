//! Checking that a cache handed in by a caller (built by hand or loaded
//! from a prompt-cache file) is consistent before it is continued: its
//! counters must point inside its buffers, or the next write would land
//! outside them.

use mlx_tensor::Array;

use super::{LayerCache, seq_len};
use crate::{Error, Result};

fn bad(layer: usize, message: String) -> Error {
    Error::InvalidCache {
        message: format!("layer {layer}: {message}"),
    }
}

/// Keys and values: both present or both absent, `[B, heads, S, dim]`, the
/// same shape. Returns the buffer length `S` (0 when absent).
fn buffers(layer: usize, keys: &Option<Array>, values: &Option<Array>) -> Result<i32> {
    match (keys, values) {
        (None, None) => Ok(0),
        (Some(k), Some(v)) => {
            if k.ndim() != 4 || k.shape() != v.shape() {
                return Err(bad(
                    layer,
                    format!(
                        "keys {} and values {} must both be [batch, heads, positions, head_dim]",
                        k.describe(),
                        v.describe()
                    ),
                ));
            }
            Ok(seq_len(k))
        }
        _ => Err(bad(
            layer,
            "has keys without values or values without keys".into(),
        )),
    }
}

impl LayerCache {
    /// Checks that the cache's position counters fit its buffers (layer
    /// `layer` is named in the error).
    pub fn check_consistent(&self, layer: usize) -> Result<()> {
        match self {
            LayerCache::Kv(c) => {
                let len = buffers(layer, &c.keys, &c.values)?;
                if c.offset < 0 || c.offset > len {
                    return Err(bad(
                        layer,
                        format!("offset {} outside its {len} buffer positions", c.offset),
                    ));
                }
            }
            LayerCache::Rotating(c) => {
                let len = buffers(layer, &c.keys, &c.values)?;
                if c.max_size <= 0 || c.keep < 0 || c.keep >= c.max_size {
                    return Err(bad(
                        layer,
                        format!(
                            "RotatingKVCache needs 0 <= keep < max_size, got keep {}, max_size {}",
                            c.keep, c.max_size
                        ),
                    ));
                }
                if c.offset < 0 || c.idx < 0 || c.idx > len {
                    return Err(bad(
                        layer,
                        format!(
                            "offset {} / index {} do not fit its {len} buffer positions",
                            c.offset, c.idx
                        ),
                    ));
                }
            }
            LayerCache::Batch(c) => {
                let len = buffers(layer, &c.keys, &c.values)?;
                if c.idx < 0 || (c.keys.is_some() && c.idx > len) {
                    return Err(bad(
                        layer,
                        format!("index {} outside its {len} buffer positions", c.idx),
                    ));
                }
                if let Some(k) = &c.keys
                    && k.dim(0) != i32::try_from(c.left_padding.len()).ok()
                {
                    return Err(bad(
                        layer,
                        format!(
                            "{} rows of keys for {} rows of left padding",
                            k.dim(0).unwrap_or(0),
                            c.left_padding.len()
                        ),
                    ));
                }
                if let Some(&p) = c.left_padding.iter().find(|&&p| p < 0) {
                    return Err(bad(layer, format!("negative left padding {p}")));
                }
            }
        }
        Ok(())
    }
}
