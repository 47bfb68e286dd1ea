//! The standard growing key/value cache.

use mlx_tensor::{Array, concatenate};

use super::mask::{AttentionMask, PositionOffset};
use super::{CACHE_STEP, seq_len, seq_slice, write_seq, zeros_for};
use crate::Result;

/// Keys and values of one layer for one sequence (or a batch of sequences of
/// equal length), stored in buffers that grow in [`CACHE_STEP`]-token steps
/// so that decoding does not reallocate every token.
#[derive(Debug, Clone, Default)]
pub struct KVCache {
    pub(crate) keys: Option<Array>,
    pub(crate) values: Option<Array>,
    pub(crate) offset: i32,
}

impl KVCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache holding `keys`/`values` (`[B, heads, S, head_dim]`), all `S`
    /// positions in use.
    pub fn from_arrays(keys: Array, values: Array) -> Self {
        let offset = seq_len(&keys);
        KVCache {
            keys: Some(keys),
            values: Some(values),
            offset,
        }
    }

    /// Appends `keys`/`values` (`[B, heads, S, head_dim]`) and returns every
    /// cached key and value so far.
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let prev = self.offset;
        let new = seq_len(keys);
        let capacity = self.keys.as_ref().map_or(0, seq_len);
        let end = prev
            .checked_add(new)
            .ok_or_else(|| super::too_many_positions("KVCache", prev, new))?;
        if self.keys.is_none() || end > capacity {
            let steps = new / CACHE_STEP + i32::from(new % CACHE_STEP != 0);
            let fresh_k = zeros_for(keys, steps.saturating_mul(CACHE_STEP))?;
            let fresh_v = zeros_for(values, steps.saturating_mul(CACHE_STEP))?;
            match (self.keys.take(), self.values.take()) {
                (Some(mut k), Some(mut v)) => {
                    if prev % CACHE_STEP != 0 {
                        k = seq_slice(&k, 0, prev)?;
                        v = seq_slice(&v, 0, prev)?;
                    }
                    self.keys = Some(concatenate(&[&k, &fresh_k], 2)?);
                    self.values = Some(concatenate(&[&v, &fresh_v], 2)?);
                }
                _ => {
                    self.keys = Some(fresh_k);
                    self.values = Some(fresh_v);
                }
            }
        }
        self.offset = end;
        if let (Some(k), Some(v)) = (&mut self.keys, &mut self.values) {
            *k = write_seq(k, keys, prev)?;
            *v = write_seq(v, values, prev)?;
        }
        self.keys_and_values()
    }

    /// The cached keys and values of the `offset` positions in use.
    pub fn keys_and_values(&self) -> Result<(Array, Array)> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => {
                if self.offset < seq_len(k) {
                    Ok((seq_slice(k, 0, self.offset)?, seq_slice(v, 0, self.offset)?))
                } else {
                    Ok((k.clone(), v.clone()))
                }
            }
            _ => Err(super::empty_cache_error("KVCache")),
        }
    }

    /// Number of positions cached (the position of the next token).
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Number of positions cached.
    pub fn size(&self) -> i32 {
        self.offset
    }

    /// Whether nothing was ever stored.
    pub fn is_empty(&self) -> bool {
        self.keys.is_none()
    }

    /// Always true: any number of trailing positions can be dropped.
    pub fn is_trimmable(&self) -> bool {
        true
    }

    /// Drops the last `n` positions (at most all of them); returns how many
    /// were dropped.
    pub fn trim(&mut self, n: i32) -> i32 {
        let n = n.clamp(0, self.offset);
        self.offset -= n;
        n
    }

    /// Bytes held by the key and value buffers (capacity included).
    pub fn nbytes(&self) -> usize {
        self.keys.as_ref().map_or(0, Array::nbytes) + self.values.as_ref().map_or(0, Array::nbytes)
    }

    /// The mask for `n` new query positions: causal for several, none for one.
    pub fn make_mask(&self, n: i32) -> AttentionMask {
        AttentionMask::for_prompt(n)
    }

    /// The rotary position of the next token.
    pub fn position_offset(&self) -> PositionOffset {
        PositionOffset::Scalar(self.offset)
    }
}
