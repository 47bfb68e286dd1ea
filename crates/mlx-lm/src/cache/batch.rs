//! A key/value cache for a batch of left-padded sequences.

use mlx_tensor::{Array, Dtype, concatenate};

use super::kv::KVCache;
use super::mask::{AttentionMask, PositionOffset, causal_mask};
use super::{CACHE_STEP, seq_len, seq_slice, write_seq, zeros_for};
use crate::{Error, Result};

/// Keys and values of one layer for a batch of sequences of different
/// lengths, left-padded to a common length.
///
/// Row `i` has `left_padding[i]` padding positions before its first token;
/// its own position counter (`offsets()[i]`) is the number of buffer
/// positions minus that padding, so rotary embeddings give its first real
/// token position 0. Masks hide each row's padding.
///
/// Rows can be removed ([`BatchKVCache::filter`], which also drops padding
/// columns no remaining row needs) and added ([`BatchKVCache::extend`]),
/// as continuous batching does.
#[derive(Debug, Clone)]
pub struct BatchKVCache {
    pub(crate) keys: Option<Array>,
    pub(crate) values: Option<Array>,
    pub(crate) left_padding: Vec<i32>,
    pub(crate) idx: i32,
    pub(crate) right_padding: Option<Vec<i32>>,
    pub(crate) reserved: i32,
}

impl BatchKVCache {
    /// An empty cache for rows left-padded by `left_padding[i]` positions.
    pub fn new(left_padding: &[i32]) -> Self {
        BatchKVCache {
            keys: None,
            values: None,
            left_padding: left_padding.to_vec(),
            idx: 0,
            right_padding: None,
            reserved: 0,
        }
    }

    /// Makes the first allocation hold exactly `positions` positions
    /// (padding included; more if the first update is longer) instead of
    /// growing in [`CACHE_STEP`]-position steps: a caller that knows the
    /// final length (prompt plus the most tokens it will generate) avoids
    /// both the unused tail of the last step and the copies that growing
    /// makes. Only the first allocation is affected; growth beyond it works
    /// as usual.
    pub fn reserve(&mut self, positions: i32) {
        self.reserved = positions.max(0);
    }

    /// Grows the buffers now, with one copy of the positions in use, so
    /// that they hold at least `positions` positions; an empty cache
    /// instead [reserves](BatchKVCache::reserve) them for its first
    /// allocation. The new buffers are lazy: evaluating them (through
    /// [`LayerCache::arrays`](super::LayerCache::arrays)) frees the old ones.
    pub fn grow_to(&mut self, positions: i32) -> Result<()> {
        let (Some(k), Some(v)) = (&self.keys, &self.values) else {
            self.reserve(positions);
            return Ok(());
        };
        let capacity = seq_len(k);
        if capacity >= positions {
            return Ok(());
        }
        // Written into zeros the way updates are (a concatenation's output
        // would not be reused in place by the next update's write).
        let grown =
            |x: &Array| write_seq(&zeros_for(x, positions)?, &seq_slice(x, 0, self.idx)?, 0);
        let (k, v) = (grown(k)?, grown(v)?);
        self.keys = Some(k);
        self.values = Some(v);
        Ok(())
    }

    /// Number of rows.
    pub fn batch_size(&self) -> usize {
        self.left_padding.len()
    }

    /// Each row's padding before its first token.
    pub fn left_padding(&self) -> &[i32] {
        &self.left_padding
    }

    /// Each row's next token position (buffer positions minus its padding;
    /// negative while only padding has been processed).
    pub fn offsets(&self) -> Vec<i32> {
        self.left_padding.iter().map(|p| self.idx - p).collect()
    }

    /// Appends `keys`/`values` (`[B, heads, S, head_dim]`) for every row and
    /// returns all cached positions (padding included).
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let rows = keys.axis_size(0)?;
        if rows as usize != self.batch_size() {
            return Err(Error::InvalidCache {
                message: format!(
                    "BatchKVCache has {} rows, the update has {rows}",
                    self.batch_size()
                ),
            });
        }
        let prev = self.idx;
        let new = seq_len(keys);
        let capacity = self.keys.as_ref().map_or(0, seq_len);
        let end = prev
            .checked_add(new)
            .ok_or_else(|| super::too_many_positions("BatchKVCache", prev, new))?;
        if self.keys.is_none() || end > capacity {
            let steps = new / CACHE_STEP + i32::from(new % CACHE_STEP != 0);
            let mut len = steps.saturating_mul(CACHE_STEP);
            if self.keys.is_none() && self.reserved >= end {
                len = self.reserved - prev;
            }
            let fresh_k = zeros_for(keys, len)?;
            let fresh_v = zeros_for(values, len)?;
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
        self.idx = end;
        if let (Some(k), Some(v)) = (&mut self.keys, &mut self.values) {
            *k = write_seq(k, keys, prev)?;
            *v = write_seq(v, values, prev)?;
        }
        self.keys_and_values()
    }

    /// The cached keys and values of the positions in use.
    pub fn keys_and_values(&self) -> Result<(Array, Array)> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => Ok((seq_slice(k, 0, self.idx)?, seq_slice(v, 0, self.idx)?)),
            _ => Err(super::empty_cache_error("BatchKVCache")),
        }
    }

    /// Adds left padding to an empty cache, and/or announces right padding
    /// of the next (prompt) update, removed again by [`BatchKVCache::finalize`].
    pub fn prepare(
        &mut self,
        left_padding: Option<&[i32]>,
        right_padding: Option<&[i32]>,
    ) -> Result<()> {
        if let Some(extra) = left_padding {
            if self.keys.is_some() {
                return Err(Error::InvalidCache {
                    message: "left padding can only be added to an empty BatchKVCache".into(),
                });
            }
            self.check_rows("left_padding", extra.len())?;
            for (p, e) in self.left_padding.iter_mut().zip(extra) {
                *p += e;
            }
        }
        if let Some(right) = right_padding {
            self.check_rows("right_padding", right.len())?;
            if right.iter().any(|&r| r > 0) {
                self.right_padding = Some(right.to_vec());
            }
        }
        Ok(())
    }

    /// Rolls right-padded rows (see [`BatchKVCache::prepare`]) so that their
    /// padding moves to the left.
    pub fn finalize(&mut self) -> Result<()> {
        let Some(right) = self.right_padding.take() else {
            return Ok(());
        };
        if let (Some(k), Some(v)) = (&self.keys, &self.values) {
            let shifts = Array::from_slice(&right, &[right.len() as i32, 1, 1, 1])?;
            self.keys = Some(roll_rows(k, &shifts)?);
            self.values = Some(roll_rows(v, &shifts)?);
        }
        for (p, r) in self.left_padding.iter_mut().zip(&right) {
            *p += r;
        }
        Ok(())
    }

    fn check_rows(&self, what: &str, n: usize) -> Result<()> {
        if n != self.batch_size() {
            return Err(Error::InvalidCache {
                message: format!(
                    "{what} has {n} entries, the cache has {} rows",
                    self.batch_size()
                ),
            });
        }
        Ok(())
    }

    /// Number of buffer positions in use (padding included); the absolute
    /// position of the next column.
    pub fn offset(&self) -> i32 {
        self.idx
    }

    /// Number of buffer positions in use.
    pub fn size(&self) -> i32 {
        self.idx
    }

    /// Whether nothing was ever stored.
    pub fn is_empty(&self) -> bool {
        self.keys.is_none()
    }

    /// Always true.
    pub fn is_trimmable(&self) -> bool {
        true
    }

    /// Drops the last `n` positions of every row; returns how many.
    pub fn trim(&mut self, n: i32) -> i32 {
        let n = n.clamp(0, self.idx);
        self.idx -= n;
        n
    }

    /// Bytes held by the key and value buffers.
    pub fn nbytes(&self) -> usize {
        self.keys.as_ref().map_or(0, Array::nbytes) + self.values.as_ref().map_or(0, Array::nbytes)
    }

    /// A causal mask `[B, 1, n, offset + n]` that also hides each row's padding.
    pub fn make_mask(&self, n: i32) -> Result<AttentionMask> {
        // Without padding the batch is a plain cache: the fused causal mask
        // (or none for one query) saves building an explicit mask.
        if self.left_padding.iter().all(|&p| p == 0) {
            return Ok(AttentionMask::for_prompt(n));
        }
        Ok(AttentionMask::Array(causal_mask(
            n,
            self.idx,
            None,
            Some(&self.left_padding),
        )?))
    }

    /// Per-row rotary positions of the next token.
    pub fn position_offset(&self) -> Result<PositionOffset> {
        let offsets = self.offsets();
        // Rows at the same position share one scalar offset (no array to
        // build and copy to the device).
        if let Some(&first) = offsets.first()
            && offsets.iter().all(|&o| o == first)
        {
            return Ok(PositionOffset::Scalar(first));
        }
        Ok(PositionOffset::PerRow(Array::from_slice(
            &offsets,
            &[offsets.len() as i32],
        )?))
    }

    /// Keeps only `rows` (in that order), then drops leading columns that
    /// every remaining row has as padding.
    pub fn filter(&mut self, rows: &[usize]) -> Result<()> {
        let n = self.batch_size();
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(Error::InvalidCache {
                message: format!("filter: row {bad} out of range for {n} rows"),
            });
        }
        let index: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        let index = Array::from_slice(&index, &[index.len() as i32])?;
        if let (Some(k), Some(v)) = (&self.keys, &self.values) {
            self.keys = Some(k.take(&index, Some(0))?);
            self.values = Some(v.take(&index, Some(0))?);
        }
        self.left_padding = rows.iter().map(|&r| self.left_padding[r]).collect();
        let shift = self.left_padding.iter().copied().min().unwrap_or(0);
        if shift > 0 {
            if let (Some(k), Some(v)) = (&self.keys, &self.values) {
                let len = seq_len(k);
                self.keys = Some(seq_slice(k, shift, len)?);
                self.values = Some(seq_slice(v, shift, len)?);
            }
            self.idx -= shift;
            for p in &mut self.left_padding {
                *p -= shift;
            }
        }
        Ok(())
    }

    /// Appends the rows of `other`, right-aligning both caches' contents
    /// (the shorter one gets more left padding).
    pub fn extend(&mut self, other: &BatchKVCache) -> Result<()> {
        let (template, template_v) = match (&self.keys, &self.values, &other.keys, &other.values) {
            (None, _, None, _) => {
                self.left_padding.extend_from_slice(&other.left_padding);
                self.idx = self.idx.max(other.idx);
                return Ok(());
            }
            (Some(k), Some(v), _, _) | (_, _, Some(k), Some(v)) => (k.clone(), v.clone()),
            _ => return Err(super::empty_cache_error("BatchKVCache")),
        };
        let max_idx = self.idx.max(other.idx);
        let max_len = self
            .keys
            .as_ref()
            .map_or(0, seq_len)
            .max(other.keys.as_ref().map_or(0, seq_len));
        let align = |c: &BatchKVCache| -> Result<(Array, Array, Vec<i32>)> {
            let rows = c.batch_size() as i32;
            let (mut k, mut v) = match (&c.keys, &c.values) {
                (Some(k), Some(v)) => (k.clone(), v.clone()),
                _ => (empty_rows(&template, rows)?, empty_rows(&template_v, rows)?),
            };
            let left = max_idx - c.idx;
            let mut right = max_len - seq_len(&k) - left;
            if right < 0 {
                let keep = seq_len(&k) + right;
                k = seq_slice(&k, 0, keep)?;
                v = seq_slice(&v, 0, keep)?;
                right = 0;
            }
            if left != 0 || right != 0 {
                k = k.pad(&[2], &[left], &[right], 0.0)?;
                v = v.pad(&[2], &[left], &[right], 0.0)?;
            }
            Ok((k, v, c.left_padding.iter().map(|p| p + left).collect()))
        };
        let (k1, v1, p1) = align(self)?;
        let (k2, v2, p2) = align(other)?;
        self.keys = Some(concatenate(&[&k1, &k2], 0)?);
        self.values = Some(concatenate(&[&v1, &v2], 0)?);
        self.left_padding = p1.into_iter().chain(p2).collect();
        self.idx = max_idx;
        Ok(())
    }

    /// Row `row` as a single-sequence cache without its padding.
    pub fn extract(&self, row: usize) -> Result<KVCache> {
        let (Some(k), Some(v)) = (&self.keys, &self.values) else {
            return Ok(KVCache::new());
        };
        let pad = *self
            .left_padding
            .get(row)
            .ok_or_else(|| Error::InvalidCache {
                message: format!(
                    "extract: row {row} out of range for {} rows",
                    self.batch_size()
                ),
            })?;
        let r = row as i32;
        let pick = |x: &Array| -> Result<Array> {
            Ok(seq_slice(&x.slice_axis(0, r, Some(r + 1), 1)?, pad, self.idx)?.contiguous()?)
        };
        Ok(KVCache::from_arrays(pick(k)?, pick(v)?))
    }

    /// Merges single-sequence caches into one batch cache, left-padding the
    /// shorter ones.
    pub fn merge(caches: &[KVCache]) -> Result<BatchKVCache> {
        let lengths: Vec<i32> = caches.iter().map(KVCache::size).collect();
        let max_len = lengths.iter().copied().max().unwrap_or(0);
        let padding: Vec<i32> = lengths.iter().map(|l| max_len - l).collect();
        let mut out = BatchKVCache::new(&padding);
        if max_len == 0 {
            return Ok(out);
        }
        let mut keys = Vec::with_capacity(caches.len());
        let mut values = Vec::with_capacity(caches.len());
        let template = caches.iter().find_map(|c| c.keys_and_values().ok());
        let Some((tk, tv)) = template else {
            return Ok(out);
        };
        for (c, &pad) in caches.iter().zip(&padding) {
            let (k, v) = match c.keys_and_values() {
                Ok(kv) if c.size() > 0 => kv,
                _ => (empty_rows(&tk, 1)?, empty_rows(&tv, 1)?),
            };
            keys.push(k.pad(&[2], &[pad], &[0], 0.0)?);
            values.push(v.pad(&[2], &[pad], &[0], 0.0)?);
        }
        let kr: Vec<&Array> = keys.iter().collect();
        let vr: Vec<&Array> = values.iter().collect();
        out.keys = Some(concatenate(&kr, 0)?);
        out.values = Some(concatenate(&vr, 0)?);
        out.idx = max_len;
        Ok(out)
    }
}

/// `[rows, heads, 0, dim]` of the template's dtype.
fn empty_rows(template: &Array, rows: i32) -> Result<Array> {
    let s = template.shape();
    Ok(Array::zeros(&[rows, s[1], 0, s[3]], template.dtype())?)
}

/// Rolls each row of `x: [B, H, S, D]` right by `shifts[b]` along the
/// sequence axis.
fn roll_rows(x: &Array, shifts: &Array) -> Result<Array> {
    let s = x.shape();
    let n = s[2];
    let positions = Array::arange(0.0, f64::from(n), 1.0, Dtype::I32)?.reshape(&[1, 1, n, 1])?;
    let n_arr = Array::scalar(n)?;
    let index = positions
        .subtract(shifts)?
        .remainder(&n_arr)?
        .broadcast_to(&s)?;
    Ok(x.take_along_axis(&index, 2)?)
}
