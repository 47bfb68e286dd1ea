//! The current generation batch's micro-batches, and their file in a
//! checkpoint.
//!
//! A generation batch serves several optimizer steps when `num_iterations >
//! 1` or `steps_per_generation > gradient_accumulation_steps`. Its
//! completions, advantages and old / reference log-probabilities were made
//! by the weights of the step that sampled it, which later updates replaced,
//! so a checkpoint saved in the middle of it keeps the batch itself (with
//! the sampler's log-probabilities and the rollout correction's ratios when
//! that correction is on): every array bit for bit in a safetensors file,
//! and the rest (padding, reuse counters, rollout metrics) as JSON in its
//! metadata.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx_lm::score::ScoreBatch;
use mlx_tensor::Array;
use mlx_tensor::io::{load_safetensors, save_safetensors};
use serde::{Deserialize, Serialize};

use crate::trainer::{MicroBatch, metric_serde};
use crate::{Error, Result};

/// Metadata key of the buffer's description.
const META_KEY: &str = "rollout_buffer";

/// Completions of one generation, split into micro-batches and reused for
/// `num_iterations` passes.
#[derive(Debug, Clone)]
pub struct RolloutBuffer {
    /// The micro-batches, in the order TRL uses them.
    pub micro_batches: Vec<MicroBatch>,
    /// Micro-steps served so far (the next one uses micro-batch
    /// `next % micro_batches.len()`).
    pub next: usize,
    /// Micro-steps still to serve.
    pub remaining: usize,
    /// The generation's rollout metrics (rewards, completion lengths).
    pub metrics: BTreeMap<String, f64>,
}

/// What the safetensors metadata says of one micro-batch.
#[derive(Debug, Serialize, Deserialize)]
struct MicroBatchMeta {
    left_padding: Vec<i32>,
    completion_width: i32,
    #[serde(with = "metric_serde::value")]
    num_items_in_batch: f64,
    old_logps: bool,
    ref_logps: bool,
    #[serde(default)]
    sampling_logps: bool,
    #[serde(default)]
    importance_sampling_ratio: bool,
}

/// What the safetensors metadata says of the buffer.
#[derive(Debug, Serialize, Deserialize)]
struct BufferMeta {
    next: usize,
    remaining: usize,
    #[serde(with = "metric_serde::map")]
    metrics: BTreeMap<String, f64>,
    micro_batches: Vec<MicroBatchMeta>,
}

fn tensor_name(index: usize, part: &str) -> String {
    format!("micro_batch.{index}.{part}")
}

impl RolloutBuffer {
    /// Writes the buffer to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, &Array)> = Vec::new();
        let mut metas = Vec::with_capacity(self.micro_batches.len());
        for (i, mb) in self.micro_batches.iter().enumerate() {
            named.push((tensor_name(i, "tokens"), &mb.layout.tokens));
            named.push((tensor_name(i, "completion_mask"), &mb.layout.mask));
            named.push((tensor_name(i, "loss_mask"), &mb.mask));
            named.push((tensor_name(i, "advantages"), &mb.advantages));
            if let Some(old) = &mb.old_logps {
                named.push((tensor_name(i, "old_logps"), old));
            }
            if let Some(reference) = &mb.ref_logps {
                named.push((tensor_name(i, "ref_logps"), reference));
            }
            if let Some(sampling) = &mb.sampling_logps {
                named.push((tensor_name(i, "sampling_logps"), sampling));
            }
            if let Some(ratio) = &mb.importance_sampling_ratio {
                named.push((tensor_name(i, "importance_sampling_ratio"), ratio));
            }
            metas.push(MicroBatchMeta {
                left_padding: mb.layout.left_padding.clone(),
                completion_width: mb.layout.completion_width,
                num_items_in_batch: mb.num_items_in_batch,
                old_logps: mb.old_logps.is_some(),
                ref_logps: mb.ref_logps.is_some(),
                sampling_logps: mb.sampling_logps.is_some(),
                importance_sampling_ratio: mb.importance_sampling_ratio.is_some(),
            });
        }
        let meta = BufferMeta {
            next: self.next,
            remaining: self.remaining,
            metrics: self.metrics.clone(),
            micro_batches: metas,
        };
        let json = serde_json::to_string(&meta)
            .map_err(|e| Error::checkpoint(path, META_KEY, e.to_string()))?;
        let metadata = HashMap::from([(META_KEY.to_string(), json)]);
        save_safetensors(
            path,
            named.iter().map(|(name, a)| (name.as_str(), *a)),
            &metadata,
        )?;
        Ok(())
    }

    /// Reads a buffer written by [`RolloutBuffer::save`]; its arrays are
    /// evaluated (read) before this returns. Checks that every micro-batch
    /// is complete and that `remaining` is what the trainer state expects.
    pub fn load(path: &Path, expected_remaining: usize) -> Result<Self> {
        let mut file = load_safetensors(path)?;
        let json = file
            .metadata
            .get(META_KEY)
            .ok_or_else(|| Error::checkpoint(path, META_KEY, "missing from the metadata"))?;
        let meta: BufferMeta = serde_json::from_str(json)
            .map_err(|e| Error::checkpoint(path, META_KEY, e.to_string()))?;
        if meta.remaining != expected_remaining || meta.remaining == 0 {
            return Err(Error::checkpoint(
                path,
                "remaining",
                format!(
                    "{} micro-steps but the trainer state has {expected_remaining}",
                    meta.remaining
                ),
            ));
        }
        if meta.micro_batches.is_empty() {
            return Err(Error::checkpoint(path, "micro_batches", "none"));
        }
        let mut take = |name: String| {
            file.tensors
                .remove(&name)
                .ok_or_else(|| Error::checkpoint(path, name.as_str(), "missing"))
        };
        let mut micro_batches = Vec::with_capacity(meta.micro_batches.len());
        for (i, m) in meta.micro_batches.into_iter().enumerate() {
            let tokens = take(tensor_name(i, "tokens"))?;
            let rows = tokens.shape().dims().first().copied().unwrap_or(0);
            if usize::try_from(rows).ok() != Some(m.left_padding.len()) {
                return Err(Error::checkpoint(
                    path,
                    format!("micro_batch.{i}.left_padding"),
                    format!("{} entries for {rows} rows of tokens", m.left_padding.len()),
                ));
            }
            let layout = ScoreBatch {
                tokens,
                left_padding: m.left_padding,
                completion_width: m.completion_width,
                mask: take(tensor_name(i, "completion_mask"))?,
            };
            let mb = MicroBatch {
                layout,
                mask: take(tensor_name(i, "loss_mask"))?,
                advantages: take(tensor_name(i, "advantages"))?,
                old_logps: if m.old_logps {
                    Some(take(tensor_name(i, "old_logps"))?)
                } else {
                    None
                },
                ref_logps: if m.ref_logps {
                    Some(take(tensor_name(i, "ref_logps"))?)
                } else {
                    None
                },
                sampling_logps: if m.sampling_logps {
                    Some(take(tensor_name(i, "sampling_logps"))?)
                } else {
                    None
                },
                importance_sampling_ratio: if m.importance_sampling_ratio {
                    Some(take(tensor_name(i, "importance_sampling_ratio"))?)
                } else {
                    None
                },
                num_items_in_batch: m.num_items_in_batch,
            };
            let mut arrays = vec![&mb.layout.tokens, &mb.layout.mask, &mb.mask, &mb.advantages];
            arrays.extend(mb.old_logps.iter());
            arrays.extend(mb.ref_logps.iter());
            arrays.extend(mb.sampling_logps.iter());
            arrays.extend(mb.importance_sampling_ratio.iter());
            mlx_tensor::eval(&arrays)?;
            micro_batches.push(mb);
        }
        Ok(RolloutBuffer {
            micro_batches,
            next: meta.next,
            remaining: meta.remaining,
            metrics: meta.metrics,
        })
    }
}
