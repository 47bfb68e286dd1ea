//! A key/value cache of bounded size that keeps the first tokens and a
//! sliding window of the most recent ones.

use mlx_tensor::{Array, concatenate};

use super::mask::{AttentionMask, PositionOffset, causal_mask};
use super::{CACHE_STEP, seq_len, seq_slice, write_seq, zeros_for};
use crate::{Error, Result};

/// A cache that holds at most `max_size` positions: the first `keep` tokens
/// are never evicted, the rest is a ring buffer of the most recent tokens.
///
/// Single-token updates write in place (rotating); multi-token updates
/// first put the buffer in temporal order and then append, keeping
/// `max_size - 1` old positions so that every new token sees at least
/// `max_size` positions.
#[derive(Debug, Clone)]
pub struct RotatingKVCache {
    pub(crate) keys: Option<Array>,
    pub(crate) values: Option<Array>,
    pub(crate) offset: i32,
    pub(crate) max_size: i32,
    pub(crate) keep: i32,
    pub(crate) idx: i32,
}

impl RotatingKVCache {
    /// An empty cache of at most `max_size` positions that never evicts the
    /// first `keep` ones. Fails unless `0 <= keep < max_size`.
    pub fn new(max_size: i32, keep: i32) -> Result<Self> {
        if max_size <= 0 || keep < 0 || keep >= max_size {
            return Err(Error::InvalidCache {
                message: format!(
                    "RotatingKVCache needs 0 <= keep < max_size, got keep {keep}, max_size {max_size}"
                ),
            });
        }
        Ok(RotatingKVCache {
            keys: None,
            values: None,
            offset: 0,
            max_size,
            keep,
            idx: 0,
        })
    }

    /// The largest number of positions kept.
    pub fn max_size(&self) -> i32 {
        self.max_size
    }

    /// The number of leading positions never evicted.
    pub fn keep(&self) -> i32 {
        self.keep
    }

    /// Keeps positions `..keep` and drops the `trim` after them, then appends.
    fn trim_front(&self, trim: i32, v: &Array, append: Option<&Array>) -> Result<Array> {
        let mut parts = Vec::new();
        if trim > 0 {
            parts.push(seq_slice(v, 0, self.keep)?);
            parts.push(seq_slice(v, trim + self.keep, seq_len(v))?);
        } else {
            parts.push(v.clone());
        }
        if let Some(a) = append {
            parts.push(a.clone());
        }
        let refs: Vec<&Array> = parts.iter().collect();
        Ok(concatenate(&refs, 2)?)
    }

    /// The buffer rearranged into temporal order, unused tail removed.
    fn temporal_order(&self, v: &Array) -> Result<Array> {
        let len = seq_len(v);
        if self.idx == len {
            Ok(v.clone())
        } else if self.idx < self.offset {
            let head = seq_slice(v, 0, self.keep)?;
            let newest = seq_slice(v, self.idx, len)?;
            let middle = seq_slice(v, self.keep, self.idx)?;
            Ok(concatenate(&[&head, &newest, &middle], 2)?)
        } else {
            seq_slice(v, 0, self.idx)
        }
    }

    fn update_concat(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        match (self.keys.take(), self.values.take()) {
            (Some(k), Some(v)) => {
                let k = self.temporal_order(&k)?;
                let v = self.temporal_order(&v)?;
                self.idx = seq_len(&k);
                let trim = self.idx - self.max_size + 1;
                self.keys = Some(self.trim_front(trim, &k, Some(keys))?);
                self.values = Some(self.trim_front(trim, &v, Some(values))?);
            }
            _ => {
                self.keys = Some(keys.clone());
                self.values = Some(values.clone());
            }
        }
        self.offset += seq_len(keys);
        self.idx = self.keys.as_ref().map_or(0, seq_len);
        self.keys_and_values()
    }

    fn update_in_place(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let new = seq_len(keys);
        let prev = self.offset;
        let len = self.keys.as_ref().map_or(0, seq_len);
        if self.keys.is_none() || (prev >= len && len < self.max_size) {
            let grow = CACHE_STEP.min(self.max_size - prev).max(0);
            let fresh_k = zeros_for(keys, grow)?;
            let fresh_v = zeros_for(values, grow)?;
            match (self.keys.take(), self.values.take()) {
                (Some(k), Some(v)) => {
                    self.keys = Some(concatenate(&[&k, &fresh_k], 2)?);
                    self.values = Some(concatenate(&[&v, &fresh_v], 2)?);
                }
                _ => {
                    self.keys = Some(fresh_k);
                    self.values = Some(fresh_v);
                }
            }
            self.idx = prev;
        }
        if let (Some(k), Some(v)) = (self.keys.take(), self.values.take()) {
            let trim = seq_len(&k) - self.max_size;
            let (mut k, mut v) = (k, v);
            if trim > 0 {
                k = self.trim_front(trim, &k, None)?;
                v = self.trim_front(trim, &v, None)?;
                self.idx = self.max_size;
            }
            if self.idx == self.max_size {
                self.idx = self.keep;
            }
            self.keys = Some(write_seq(&k, keys, self.idx)?);
            self.values = Some(write_seq(&v, values, self.idx)?);
        }
        self.offset += new;
        self.idx += new;
        self.keys_and_values()
    }

    /// Adds `keys`/`values` (`[B, heads, S, head_dim]`) and returns the keys
    /// and values attention should see.
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        if seq_len(keys) == 1 {
            self.update_in_place(keys, values)
        } else {
            self.update_concat(keys, values)
        }
    }

    /// The stored keys and values (in buffer order once the ring is full).
    pub fn keys_and_values(&self) -> Result<(Array, Array)> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => {
                if self.offset < seq_len(k) {
                    Ok((seq_slice(k, 0, self.offset)?, seq_slice(v, 0, self.offset)?))
                } else {
                    Ok((k.clone(), v.clone()))
                }
            }
            _ => Err(super::empty_cache_error("RotatingKVCache")),
        }
    }

    /// Number of tokens seen so far (the position of the next token).
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Number of positions held: `min(offset, max_size)`.
    pub fn size(&self) -> i32 {
        self.offset.min(self.max_size)
    }

    /// Whether nothing was ever stored.
    pub fn is_empty(&self) -> bool {
        self.keys.is_none()
    }

    /// Whether positions can still be dropped (nothing evicted yet).
    pub fn is_trimmable(&self) -> bool {
        self.offset < self.max_size
    }

    /// Drops the last `n` positions (at most all); returns how many.
    pub fn trim(&mut self, n: i32) -> i32 {
        let n = n.clamp(0, self.offset);
        self.offset -= n;
        self.idx -= n;
        n
    }

    /// Bytes held by the key and value buffers.
    pub fn nbytes(&self) -> usize {
        self.keys.as_ref().map_or(0, Array::nbytes) + self.values.as_ref().map_or(0, Array::nbytes)
    }

    /// The mask for `n` new query positions: a windowed causal mask once the
    /// window is exceeded, the fused causal mask before, none for one token.
    pub fn make_mask(&self, n: i32) -> Result<AttentionMask> {
        if n <= 1 {
            return Ok(AttentionMask::None);
        }
        let window = self.max_size;
        let offset = (self.max_size - 1).min(self.offset);
        if offset + n > window {
            Ok(AttentionMask::Array(causal_mask(
                n,
                offset,
                Some(window),
                None,
            )?))
        } else {
            Ok(AttentionMask::Causal)
        }
    }

    /// The rotary position of the next token.
    pub fn position_offset(&self) -> PositionOffset {
        PositionOffset::Scalar(self.offset)
    }
}
