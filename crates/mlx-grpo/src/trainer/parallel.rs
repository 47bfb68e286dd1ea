//! Data parallelism: one trainer per process, a [`Group`] of processes
//! training one model, with TRL's semantics for `N` processes.
//!
//! Every rank draws the same generation batch from the same sampler (same
//! seed) and generates only its rows `[p·L, (p+1)·L)` of its completions,
//! `L = per_device_train_batch_size × steps_per_generation` (a prompt
//! whose group straddles two ranks is prefilled on both, each sampling its
//! part of the group). Every row samples with the keys of its global row
//! index ([`crate::trainer::rollout::row_seed`]), so the completions are
//! those a single process draws for the same global batch, whatever
//! `generation_chunk_prompts`.
//! Rewards are scored locally and all-gathered in rank order, advantages
//! are computed on the whole batch and sliced back, `num_items_in_batch` is
//! all-summed (and divided by `N`, as TRL does, since gradients are then
//! averaged), gradients are averaged before clipping, and step metrics are
//! averaged over the ranks. Rank 0 alone writes files.
//!
//! [`Parallel`] holds the group and the collectives the trainer needs; a
//! trainer without one (the default) is a single process.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use mlx_nn::ParamMap;
use mlx_tensor::Array;
use mlx_tensor::distributed::{Group, all_gather, all_max, all_min, all_sum};

use crate::trainer::RolloutSample;
use crate::{Error, Result};

/// Metrics that every rank computes identically (after the averaged
/// update): they are not averaged.
const SHARED_METRICS: [&str; 3] = ["learning_rate", "grad_norm", "entropy_coef"];

/// A trainer's process group.
#[derive(Debug, Clone)]
pub struct Parallel {
    group: Group,
}

impl Parallel {
    /// The trainer side of `group`.
    pub fn new(group: Group) -> Self {
        Self { group }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// The number of processes.
    pub fn size(&self) -> usize {
        self.group.size()
    }

    /// The group.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Fails, on every rank, unless all ranks passed the same `fingerprint`
    /// (e.g. [`fingerprint`] of the config and the dataset): a mismatch is
    /// reported at start instead of a hang in a later collective.
    pub fn check_same(&self, what: &str, fingerprint: u64) -> Result<()> {
        // 16-bit pieces are exact in the collectives' int32.
        let pieces: Vec<i32> = (0..4)
            .map(|i| i32::from((fingerprint >> (16 * i)) as u16))
            .collect();
        let local = Array::from_slice(&pieces, &[4])?;
        let high = all_max(&local, &self.group)?;
        let low = all_min(&local, &self.group)?;
        mlx_tensor::eval(&[&high, &low])?;
        if high.to_vec::<i32>()? != low.to_vec::<i32>()? {
            return Err(Error::InvalidConfig {
                message: format!(
                    "the {} ranks disagree on {what} (rank {} has fingerprint {fingerprint:016x}): \
                     start every rank with the same config and dataset",
                    self.size(),
                    self.rank()
                ),
            });
        }
        Ok(())
    }

    /// The rows of every rank, `[rows, width]` each, concatenated in rank
    /// order (`values` is this rank's row-major `rows × width`).
    pub fn gather_rows(&self, values: &[f32], rows: usize, width: usize) -> Result<Vec<f32>> {
        if self.size() == 1 {
            return Ok(values.to_vec());
        }
        let shape = [dim(rows, "rows")?, dim(width, "columns")?];
        let local = Array::from_slice(values, &shape)?;
        let gathered = all_gather(&local, &self.group)?;
        gathered.eval()?;
        Ok(gathered.to_vec::<f32>()?)
    }

    /// `values` summed over the ranks, element by element.
    pub fn sum(&self, values: &[f32]) -> Result<Vec<f32>> {
        if self.size() == 1 {
            return Ok(values.to_vec());
        }
        let local = Array::from_slice(values, &[dim(values.len(), "values")?])?;
        let total = all_sum(&local, &self.group)?;
        total.eval()?;
        Ok(total.to_vec::<f32>()?)
    }

    /// Waits until every rank gets here.
    pub fn barrier(&self) -> Result<()> {
        self.sum(&[0.0]).map(|_| ())
    }

    /// Rank 0's `values` on every rank.
    pub fn broadcast(&self, values: &[f32]) -> Result<Vec<f32>> {
        let mine = if self.rank() == 0 {
            values.to_vec()
        } else {
            vec![0.0; values.len()]
        };
        self.sum(&mine)
    }

    /// Gradients averaged over the ranks (lazy).
    pub fn average_gradients(&self, grads: &ParamMap) -> Result<ParamMap> {
        Ok(mlx_nn::distributed::average_gradients(grads, &self.group)?)
    }

    /// A step's metrics averaged over the ranks (one collective); those
    /// every rank computes identically are kept as they are. Every rank
    /// must pass the same names.
    pub fn average_metrics(&self, metrics: &mut BTreeMap<String, f64>) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        let names: Vec<String> = metrics
            .keys()
            .filter(|k| !SHARED_METRICS.contains(&k.as_str()))
            .cloned()
            .collect();
        let local: Vec<f32> = names.iter().map(|k| metrics[k] as f32).collect();
        let total = self.sum(&local)?;
        let n = self.size() as f64;
        for (name, value) in names.into_iter().zip(total) {
            metrics.insert(name, f64::from(value) / n);
        }
        Ok(())
    }
}

/// The reward matrix, the completions' `(length, finish reason)` and
/// the token count (prompts and completions) of the whole generation
/// batch, from this rank's rows (all-gathered in rank order when
/// `parallel` is given).
#[allow(clippy::type_complexity)]
pub fn gather_rollout(
    parallel: Option<&Parallel>,
    matrix: &crate::rewards::RewardMatrix,
    samples: &[RolloutSample],
) -> Result<(
    crate::rewards::RewardMatrix,
    Vec<(usize, crate::rewards::FinishReason)>,
    f64,
)> {
    use crate::rewards::FinishReason;
    let local_tokens: f64 = samples
        .iter()
        .map(|s| (s.prompt_ids.len() + s.model_tokens()) as f64)
        .sum();
    let local_outcomes: Vec<(usize, FinishReason)> = samples
        .iter()
        .map(|s| (s.model_tokens(), s.finish_reason))
        .collect();
    let Some(p) = parallel else {
        return Ok((matrix.clone(), local_outcomes, local_tokens));
    };
    let width = matrix.num_functions();
    let values = p.gather_rows(matrix.values(), samples.len(), width)?;
    let total_rows = samples.len() * p.size();
    let global = crate::rewards::RewardMatrix::new(matrix.names().to_vec(), total_rows, values)?;
    // Lengths, finish reasons (1 = stopped) and token counts, exact in
    // f32 below 2^24.
    let local: Vec<f32> = samples
        .iter()
        .flat_map(|s| {
            let stopped = if s.finish_reason == FinishReason::Stop {
                1.0
            } else {
                0.0
            };
            [
                s.model_tokens() as f32,
                stopped,
                (s.prompt_ids.len() + s.model_tokens()) as f32,
            ]
        })
        .collect();
    let all = p.gather_rows(&local, samples.len(), 3)?;
    let mut outcomes = Vec::with_capacity(total_rows);
    let mut tokens = 0.0;
    for row in all.chunks_exact(3) {
        let reason = if row[1] > 0.5 {
            FinishReason::Stop
        } else {
            FinishReason::Length
        };
        outcomes.push((row[0] as usize, reason));
        tokens += f64::from(row[2]);
    }
    Ok((global, outcomes, tokens))
}

/// This rank's rows of a generation batch of `total` completions:
/// `[rank·L, (rank+1)·L)` with `L = total / size`.
pub fn local_rows(total: usize, rank: usize, size: usize) -> Result<std::ops::Range<usize>> {
    if size == 0 || !total.is_multiple_of(size) {
        return Err(Error::InvalidConfig {
            message: format!("a generation batch of {total} completions over {size} ranks"),
        });
    }
    let per_rank = total / size;
    Ok(rank * per_rank..(rank + 1) * per_rank)
}

/// A hash of `parts` that is the same in every process (FNV-1a over the
/// bytes, unlike the standard hasher, which may be seeded per process).
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn dim(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::InvalidConfig {
        message: format!("{n} {what} do not fit a collective's shape"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_evenly_in_rank_order() {
        assert_eq!(local_rows(8, 0, 2).ok(), Some(0..4));
        assert_eq!(local_rows(8, 1, 2).ok(), Some(4..8));
        assert!(local_rows(6, 0, 4).is_err());
    }

    #[test]
    fn fingerprint_tells_inputs_apart() {
        assert_eq!(fingerprint(&[b"a", b"b"]), fingerprint(&[b"a", b"b"]));
        assert_ne!(fingerprint(&[b"a", b"b"]), fingerprint(&[b"ab"]));
    }
}
