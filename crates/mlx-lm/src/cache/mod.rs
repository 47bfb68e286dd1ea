//! Key/value caches for incremental decoding, owned by the caller.
//!
//! A model's `forward` takes one [`LayerCache`] per layer. Before running the
//! layers it asks the first cache for the attention mask of the new tokens
//! ([`LayerCache::make_mask`]) and each attention layer rotates its queries
//! and keys from [`LayerCache::position_offset`] and then appends them with
//! [`LayerCache::update_and_fetch`].
//!
//! - [`KVCache`]: one sequence (or equal-length rows); grows in
//!   [`CACHE_STEP`]-position steps; can be trimmed.
//! - [`RotatingKVCache`]: at most `max_size` positions, the first `keep`
//!   never evicted.
//! - [`BatchKVCache`]: left-padded rows of different lengths, with per-row
//!   positions and padding masks; rows can be filtered out and added.
//!
//! [`save_prompt_cache`] / [`load_prompt_cache`] store caches in a
//! safetensors file laid out as mlx-lm lays out its prompt caches.

mod batch;
mod check;
mod kv;
mod mask;
mod persist;
mod rotating;

use mlx_tensor::Array;

pub use batch::BatchKVCache;
pub use kv::KVCache;
pub use mask::{AttentionMask, PositionOffset, causal_mask};
pub use persist::{load_prompt_cache, save_prompt_cache};
pub use rotating::RotatingKVCache;

use crate::{Error, Result};

/// Cache buffers grow by this many positions at a time.
pub const CACHE_STEP: i32 = 256;

/// The cache of one layer.
#[derive(Debug, Clone)]
pub enum LayerCache {
    /// A growing cache for one sequence (or equal-length rows).
    Kv(KVCache),
    /// A bounded cache keeping the first tokens and a recent window.
    Rotating(RotatingKVCache),
    /// A cache of left-padded rows.
    Batch(BatchKVCache),
}

impl LayerCache {
    /// Appends `keys`/`values` (`[B, kv_heads, S, head_dim]`) and returns the
    /// keys and values attention should use.
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        match self {
            LayerCache::Kv(c) => c.update_and_fetch(keys, values),
            LayerCache::Rotating(c) => c.update_and_fetch(keys, values),
            LayerCache::Batch(c) => c.update_and_fetch(keys, values),
        }
    }

    /// Number of positions processed so far: tokens seen for single-sequence
    /// caches, buffer columns (padding included) for batch caches.
    pub fn offset(&self) -> i32 {
        match self {
            LayerCache::Kv(c) => c.offset(),
            LayerCache::Rotating(c) => c.offset(),
            LayerCache::Batch(c) => c.offset(),
        }
    }

    /// The rotary position(s) of the next token.
    pub fn position_offset(&self) -> Result<PositionOffset> {
        match self {
            LayerCache::Kv(c) => Ok(c.position_offset()),
            LayerCache::Rotating(c) => Ok(c.position_offset()),
            LayerCache::Batch(c) => c.position_offset(),
        }
    }

    /// The attention mask for `n` new tokens, computed before the update.
    pub fn make_mask(&self, n: i32) -> Result<AttentionMask> {
        match self {
            LayerCache::Kv(c) => Ok(c.make_mask(n)),
            LayerCache::Rotating(c) => c.make_mask(n),
            LayerCache::Batch(c) => c.make_mask(n),
        }
    }

    /// Number of positions held.
    pub fn size(&self) -> i32 {
        match self {
            LayerCache::Kv(c) => c.size(),
            LayerCache::Rotating(c) => c.size(),
            LayerCache::Batch(c) => c.size(),
        }
    }

    /// Whether nothing was ever stored.
    pub fn is_empty(&self) -> bool {
        match self {
            LayerCache::Kv(c) => c.is_empty(),
            LayerCache::Rotating(c) => c.is_empty(),
            LayerCache::Batch(c) => c.is_empty(),
        }
    }

    /// Whether [`LayerCache::trim`] can drop positions.
    pub fn is_trimmable(&self) -> bool {
        match self {
            LayerCache::Kv(c) => c.is_trimmable(),
            LayerCache::Rotating(c) => c.is_trimmable(),
            LayerCache::Batch(c) => c.is_trimmable(),
        }
    }

    /// Drops the last `n` positions; returns how many were dropped.
    pub fn trim(&mut self, n: i32) -> i32 {
        match self {
            LayerCache::Kv(c) => c.trim(n),
            LayerCache::Rotating(c) => c.trim(n),
            LayerCache::Batch(c) => c.trim(n),
        }
    }

    /// Bytes held by the buffers.
    pub fn nbytes(&self) -> usize {
        match self {
            LayerCache::Kv(c) => c.nbytes(),
            LayerCache::Rotating(c) => c.nbytes(),
            LayerCache::Batch(c) => c.nbytes(),
        }
    }

    /// The stored arrays (for evaluating them together with a step's outputs).
    pub fn arrays(&self) -> Vec<&Array> {
        let (k, v) = match self {
            LayerCache::Kv(c) => (&c.keys, &c.values),
            LayerCache::Rotating(c) => (&c.keys, &c.values),
            LayerCache::Batch(c) => (&c.keys, &c.values),
        };
        k.iter().chain(v.iter()).collect()
    }
}

/// Whether every cache can be trimmed.
pub fn can_trim_prompt_cache(caches: &[LayerCache]) -> bool {
    caches.iter().all(LayerCache::is_trimmable)
}

/// Drops the last `n` positions of every layer if all can be trimmed;
/// returns how many positions were dropped (0 otherwise).
pub fn trim_prompt_cache(caches: &mut [LayerCache], n: i32) -> i32 {
    if caches.is_empty() || !can_trim_prompt_cache(caches) {
        return 0;
    }
    let mut trimmed = 0;
    for (i, c) in caches.iter_mut().enumerate() {
        let t = c.trim(n);
        if i == 0 {
            trimmed = t;
        }
    }
    trimmed
}

/// Length of the sequence axis (2) of a `[B, heads, S, head_dim]` array.
pub(crate) fn seq_len(x: &Array) -> i32 {
    x.dim(2).unwrap_or(0)
}

/// Positions `start..stop` of the sequence axis.
pub(crate) fn seq_slice(x: &Array, start: i32, stop: i32) -> Result<Array> {
    Ok(x.slice_axis(2, start, Some(stop), 1)?)
}

/// `buffer` with positions `start..start + S` replaced by `update`.
pub(crate) fn write_seq(buffer: &Array, update: &Array, start: i32) -> Result<Array> {
    let u = update.shape();
    if u.ndim() != 4 {
        return Err(Error::InvalidCache {
            message: format!(
                "cache updates must be [B, heads, S, head_dim], got {}",
                update.describe()
            ),
        });
    }
    let stop = [u[0], u[1], start + u[2], u[3]];
    Ok(buffer.slice_update(update, &[0, 0, start, 0], &stop, &[1, 1, 1, 1])?)
}

/// Zeros shaped like `template` with `len` sequence positions.
pub(crate) fn zeros_for(template: &Array, len: i32) -> Result<Array> {
    let s = template.shape();
    if s.ndim() != 4 {
        return Err(Error::InvalidCache {
            message: format!(
                "cache updates must be [B, heads, S, head_dim], got {}",
                template.describe()
            ),
        });
    }
    Ok(Array::zeros(&[s[0], s[1], len, s[3]], template.dtype())?)
}

/// Appending `new` positions to `prev` would overflow the 32-bit counter.
pub(crate) fn too_many_positions(kind: &str, prev: i32, new: i32) -> Error {
    Error::InvalidCache {
        message: format!(
            "{kind}: {new} more positions after {prev} exceed the {} a 32-bit position holds",
            i32::MAX
        ),
    }
}

pub(crate) fn empty_cache_error(kind: &str) -> Error {
    Error::InvalidCache {
        message: format!("{kind} is empty: nothing has been stored yet"),
    }
}
