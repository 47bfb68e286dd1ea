//! Dynamic sampling (DAPO): a prompt group whose completions all got the
//! same reward has zero advantages and carries no policy gradient, so it is
//! dropped, and more prompts are generated until the generation batch holds
//! only informative groups.
//!
//! A generation batch of `P` prompts is filled round by round: each round
//! draws the sampler's next batch of `P` prompts (continuing its order, with
//! the next generation's keys, so a run is deterministic given its seed),
//! generates and scores it, and keeps the groups whose scorable completions
//! do not all share one reward (the weighted reward sum TRL logs as
//! `reward`; a group with fewer than two scorable completions counts as
//! uniform). Once `P` groups are kept the batch is the first `P` of them, in
//! the order drawn (the surplus of the last round is discarded, as verl
//! does). After `dynamic_sampling_max_extra_rounds` extra rounds without
//! reaching `P`, `dynamic_sampling_on_cap` decides: `train_on_kept` trains
//! on the kept groups alone, `pad_with_dropped` fills the batch up with the
//! dropped groups in the order drawn. Either way a batch gets at least as
//! many completions as it has micro-batches (topped up with dropped groups
//! if need be). Advantages, reward and completion metrics (and the
//! `num_tokens` count) are then those of the final batch.
//!
//! Metrics: `dynamic_sampling/frac_groups_dropped` (dropped groups over all
//! groups generated for the batch), `dynamic_sampling/generation_rounds`
//! (rounds generated, 1 when the first was enough) and
//! `dynamic_sampling/frac_batch_filled` (informative groups in the batch
//! over `P`).
//!
//! Resuming: the whole loop runs inside one generation, between two
//! checkpoints, so no partial batch outlives it; the extra rounds advance
//! the sampler and the generation counter, and their number is kept in the
//! trainer state ([`TrainerState::extra_generation_batches`]) so that a
//! resumed run checks and continues both exactly.
//!
//! [`TrainerState::extra_generation_batches`]: crate::trainer::TrainerState::extra_generation_batches

use std::collections::BTreeMap;
use std::ops::Range;

use crate::advantages::weighted_nansum;
use crate::config::{DynamicSamplingOnCap, GrpoConfig};
use crate::rewards::{RewardInput, RewardMatrix};
use crate::trainer::{RolloutSample, Trainer};
use crate::{Error, Result};

/// Metric names of dynamic sampling.
pub mod names {
    /// Dropped groups over all groups generated for the batch.
    pub const FRAC_GROUPS_DROPPED: &str = "dynamic_sampling/frac_groups_dropped";
    /// Generation rounds used for the batch (1 = no extra round).
    pub const GENERATION_ROUNDS: &str = "dynamic_sampling/generation_rounds";
    /// Informative groups in the batch over the prompts of a batch.
    pub const FRAC_BATCH_FILLED: &str = "dynamic_sampling/frac_batch_filled";
}

/// The dynamic-sampling settings of a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynamicSampling {
    /// Extra generation rounds allowed per batch.
    pub max_extra_rounds: usize,
    /// What to do when they are used up.
    pub on_cap: DynamicSamplingOnCap,
}

impl DynamicSampling {
    /// The settings, or `None` when `dynamic_sampling` is off.
    pub fn from_config(cfg: &GrpoConfig) -> Option<Self> {
        cfg.dynamic_sampling.then_some(Self {
            max_extra_rounds: cfg.dynamic_sampling_max_extra_rounds,
            on_cap: cfg.dynamic_sampling_on_cap,
        })
    }
}

/// One generated and scored round: this process's completions of a
/// generation batch, their reward inputs and rewards.
#[derive(Debug, Clone)]
pub struct ScoredRound {
    /// The generation counter of the batch (its first round): the stream of
    /// the shuffle that cuts it into micro-batches.
    pub generation_index: u64,
    /// Micro-batches the round's batch is cut into.
    pub steps_per_generation: usize,
    /// This process's completion rows within the global batch.
    pub mine: Range<usize>,
    /// The completions, grouped by prompt.
    pub samples: Vec<RolloutSample>,
    /// What the reward functions got for each completion.
    pub inputs: Vec<RewardInput>,
    /// The rewards, one row per completion.
    pub matrix: RewardMatrix,
    /// Metrics of how the round was assembled (dynamic sampling's).
    pub metrics: BTreeMap<String, f64>,
}

/// For each group of `g` consecutive completions, whether all its scorable
/// completions got the same weighted reward (NaN rows, where every function
/// returned NaN, are not scorable); fewer than two scorable completions
/// count as uniform.
pub fn uniform_groups(matrix: &RewardMatrix, weights: &[f32], g: usize) -> Result<Vec<bool>> {
    let f = matrix.num_functions();
    if weights.len() != f || g == 0 || !matrix.num_samples().is_multiple_of(g) {
        return Err(Error::internal(format!(
            "{} completions with {} reward functions cannot form groups of {g} with {} weights",
            matrix.num_samples(),
            f,
            weights.len()
        )));
    }
    let x: Vec<f64> = matrix.values().iter().map(|&v| f64::from(v)).collect();
    let w: Vec<f64> = weights.iter().map(|&v| f64::from(v)).collect();
    let mut rewards = weighted_nansum(&x, &w, f);
    for i in matrix.unscorable_samples() {
        if let Some(r) = rewards.get_mut(i) {
            *r = f64::NAN;
        }
    }
    Ok(rewards
        .chunks_exact(g)
        .map(|group| {
            let mut finite = group.iter().filter(|r| !r.is_nan());
            match finite.next() {
                None => true,
                Some(first) => {
                    let rest: Vec<&f64> = finite.collect();
                    rest.is_empty() || rest.iter().all(|r| *r == first)
                }
            }
        })
        .collect())
}

/// One prompt group: `g` completions with their inputs and reward rows.
#[derive(Debug, Clone)]
struct Group {
    samples: Vec<RolloutSample>,
    inputs: Vec<RewardInput>,
    rewards: Vec<f32>,
}

/// The groups kept and dropped over the rounds of one generation batch.
#[derive(Debug, Clone)]
pub struct GroupPool {
    group_size: usize,
    target: usize,
    names: Vec<String>,
    kept: Vec<Group>,
    dropped: Vec<Group>,
    rounds: usize,
}

impl GroupPool {
    /// An empty pool for batches of `target` groups of `group_size`.
    pub fn new(target: usize, group_size: usize) -> Self {
        Self {
            group_size: group_size.max(1),
            target,
            names: Vec::new(),
            kept: Vec::new(),
            dropped: Vec::new(),
            rounds: 0,
        }
    }

    /// Sorts a round's groups into kept (informative) and dropped (uniform).
    pub fn add_round(
        &mut self,
        samples: Vec<RolloutSample>,
        inputs: Vec<RewardInput>,
        matrix: &RewardMatrix,
        weights: &[f32],
    ) -> Result<()> {
        let g = self.group_size;
        let f = matrix.num_functions();
        if samples.len() != matrix.num_samples() || inputs.len() != samples.len() {
            return Err(Error::internal(format!(
                "a round of {} completions with {} inputs and {} reward rows",
                samples.len(),
                inputs.len(),
                matrix.num_samples()
            )));
        }
        let uniform = uniform_groups(matrix, weights, g)?;
        self.names = matrix.names().to_vec();
        let mut inputs = inputs.into_iter();
        let mut samples = samples.into_iter();
        for (k, &flat) in uniform.iter().enumerate() {
            let rows = matrix
                .values()
                .get(k * g * f..(k + 1) * g * f)
                .ok_or_else(|| Error::internal("reward rows of a group"))?;
            let group = Group {
                samples: samples.by_ref().take(g).collect(),
                inputs: inputs.by_ref().take(g).collect(),
                rewards: rows.to_vec(),
            };
            if flat {
                self.dropped.push(group);
            } else {
                self.kept.push(group);
            }
        }
        self.rounds += 1;
        Ok(())
    }

    /// Whether enough informative groups are kept.
    pub fn is_full(&self) -> bool {
        self.kept.len() >= self.target
    }

    /// Rounds added so far.
    pub fn rounds(&self) -> usize {
        self.rounds
    }

    /// The batch: the first `target` kept groups when there are enough;
    /// otherwise the kept groups, followed by dropped ones up to `target`
    /// (`pad_with_dropped`) or only as far as the batch has at least
    /// `min_completions` completions (`train_on_kept`). Returns the
    /// completions, inputs, reward matrix and the metrics.
    #[allow(clippy::type_complexity)]
    pub fn finish(
        mut self,
        on_cap: DynamicSamplingOnCap,
        min_completions: usize,
    ) -> Result<(
        Vec<RolloutSample>,
        Vec<RewardInput>,
        RewardMatrix,
        BTreeMap<String, f64>,
    )> {
        let generated = self.kept.len() + self.dropped.len();
        let dropped_fraction = if generated == 0 {
            0.0
        } else {
            self.dropped.len() as f64 / generated as f64
        };
        self.kept.truncate(self.target);
        let informative = self.kept.len();
        let g = self.group_size;
        let wanted_groups = match on_cap {
            DynamicSamplingOnCap::PadWithDropped => self.target,
            DynamicSamplingOnCap::TrainOnKept => informative
                .max(min_completions.div_ceil(g))
                .min(self.target),
        };
        let padding = wanted_groups.saturating_sub(informative);
        let mut batch = self.kept;
        batch.extend(self.dropped.into_iter().take(padding));
        if batch.is_empty() || batch.len() < wanted_groups {
            return Err(Error::internal(format!(
                "dynamic sampling assembled {} of {wanted_groups} groups",
                batch.len()
            )));
        }
        let mut samples = Vec::with_capacity(batch.len() * g);
        let mut inputs = Vec::with_capacity(batch.len() * g);
        let mut values = Vec::new();
        for group in batch {
            samples.extend(group.samples);
            inputs.extend(group.inputs);
            values.extend(group.rewards);
        }
        let matrix = RewardMatrix::new(self.names, samples.len(), values)?;
        let target = self.target.max(1) as f64;
        let metrics = BTreeMap::from([
            (names::FRAC_GROUPS_DROPPED.to_string(), dropped_fraction),
            (names::GENERATION_ROUNDS.to_string(), self.rounds as f64),
            (
                names::FRAC_BATCH_FILLED.to_string(),
                informative as f64 / target,
            ),
        ]);
        Ok((samples, inputs, matrix, metrics))
    }
}

impl Trainer {
    /// Dynamic sampling of one generation batch starting from its first
    /// round (which comes back unchanged when dynamic sampling is off): adds
    /// rounds until the batch is full of informative groups or the extra
    /// rounds are used up, and assembles the batch.
    pub(super) fn fill_informative_groups(&mut self, first: ScoredRound) -> Result<ScoredRound> {
        let Some(settings) = DynamicSampling::from_config(&self.config) else {
            return Ok(first);
        };
        if self.parallel.as_ref().is_some_and(|p| p.size() > 1) {
            return Err(Error::InvalidConfig {
                message: "dynamic_sampling = true is not supported with data parallelism".into(),
            });
        }
        let g = self.config.num_generations.max(1);
        let weights = match &self.config.reward_weights {
            Some(w) => w.clone(),
            None => self.rewards.weights(),
        };
        let (generation_index, steps_per_generation) =
            (first.generation_index, first.steps_per_generation);
        let mut pool = GroupPool::new(first.samples.len() / g, g);
        pool.add_round(first.samples, first.inputs, &first.matrix, &weights)?;
        while !pool.is_full() && pool.rounds() <= settings.max_extra_rounds {
            let round = self.sample_round()?;
            self.state.extra_generation_batches =
                self.state.extra_generation_batches.saturating_add(1);
            pool.add_round(round.samples, round.inputs, &round.matrix, &weights)?;
        }
        let (samples, inputs, matrix, metrics) =
            pool.finish(settings.on_cap, steps_per_generation)?;
        Ok(ScoredRound {
            generation_index,
            steps_per_generation,
            mine: 0..samples.len(),
            samples,
            inputs,
            matrix,
            metrics,
        })
    }
}

/// `order` cut into `parts` contiguous parts whose sizes differ by at most
/// one (the first ones larger): TRL's equal parts when `parts` divides the
/// length. Parts are never empty when `order` has at least `parts` entries.
pub fn split_parts(order: &[usize], parts: usize) -> Vec<Vec<usize>> {
    let parts = parts.clamp(1, order.len().max(1));
    let (size, extra) = (order.len() / parts, order.len() % parts);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for k in 0..parts {
        let len = size + usize::from(k < extra);
        out.push(order[start..start + len].to_vec());
        start += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::{Completion, FinishReason};

    fn sample(row: usize) -> RolloutSample {
        RolloutSample {
            row_index: row,
            prompt_ids: vec![1],
            completion_ids: vec![2],
            sampling_logps: vec![-0.5],
            finish_reason: FinishReason::Stop,
            tools: None,
        }
    }

    fn input() -> RewardInput {
        RewardInput::new("p", Completion::from_text("c", 1, FinishReason::Stop), None)
    }

    /// A round of groups of 2 whose rewards are `rewards` (one function).
    fn round(
        first_row: usize,
        rewards: &[f32],
    ) -> Result<(Vec<RolloutSample>, Vec<RewardInput>, RewardMatrix)> {
        let samples = (0..rewards.len())
            .map(|i| sample(first_row + i / 2))
            .collect();
        let inputs = rewards.iter().map(|_| input()).collect();
        let matrix = RewardMatrix::new(vec!["r".into()], rewards.len(), rewards.to_vec())?;
        Ok((samples, inputs, matrix))
    }

    #[test]
    fn uniform_means_one_reward_among_scorable_completions() -> Result<()> {
        let nan = f32::NAN;
        let m = RewardMatrix::new(
            vec!["a".into(), "b".into()],
            8,
            vec![
                1.0, 0.0, 1.0, 0.0, // group 0
                1.0, 0.0, 0.0, 1.0, // group 1
                nan, nan, 2.0, nan, // group 2: one scorable completion
                0.5, nan, 0.0, 0.5, // group 3: NaN left out of the sum
            ],
        )?;
        // Weights (1, 2): rewards 1, 1 | 1, 2 | NaN, 2 | 0.5, 1.
        let u = uniform_groups(&m, &[1.0, 2.0], 2)?;
        assert_eq!(u, [true, false, true, false]);
        // Weights (1, 1): group 3 becomes 0.5, 0.5.
        let u = uniform_groups(&m, &[1.0, 1.0], 2)?;
        assert_eq!(u, [true, true, true, true]);
        assert!(uniform_groups(&m, &[1.0], 2).is_err());
        assert!(uniform_groups(&m, &[1.0, 1.0], 3).is_err());
        Ok(())
    }

    #[test]
    fn pool_keeps_informative_groups_in_order_and_drops_the_surplus() -> Result<()> {
        let mut pool = GroupPool::new(3, 2);
        let (s, i, m) = round(0, &[1.0, 1.0, 0.0, 1.0, 2.0, 2.0])?;
        pool.add_round(s, i, &m, &[1.0])?;
        assert!(!pool.is_full());
        let (s, i, m) = round(10, &[0.0, 3.0, 5.0, 5.0, 1.0, 0.0])?;
        pool.add_round(s, i, &m, &[1.0])?;
        assert!(pool.is_full());
        let (samples, _, matrix, metrics) = pool.finish(DynamicSamplingOnCap::TrainOnKept, 1)?;
        let rows: Vec<usize> = samples.iter().map(|s| s.row_index).collect();
        assert_eq!(rows, [1, 1, 10, 10, 12, 12]);
        assert_eq!(matrix.values(), [0.0, 1.0, 0.0, 3.0, 1.0, 0.0]);
        assert_eq!(metrics[names::FRAC_GROUPS_DROPPED], 3.0 / 6.0);
        assert_eq!(metrics[names::GENERATION_ROUNDS], 2.0);
        assert_eq!(metrics[names::FRAC_BATCH_FILLED], 1.0);
        Ok(())
    }

    #[test]
    fn cap_trains_on_kept_or_pads_with_dropped() -> Result<()> {
        let build = || -> Result<GroupPool> {
            let mut pool = GroupPool::new(3, 2);
            let (s, i, m) = round(0, &[1.0, 1.0, 0.0, 1.0, 2.0, 2.0])?;
            pool.add_round(s, i, &m, &[1.0])?;
            Ok(pool)
        };
        let (kept, _, _, metrics) = build()?.finish(DynamicSamplingOnCap::TrainOnKept, 2)?;
        assert_eq!(kept.iter().map(|s| s.row_index).collect::<Vec<_>>(), [1, 1]);
        assert_eq!(metrics[names::FRAC_BATCH_FILLED], 1.0 / 3.0);
        // Four micro-batches need four completions: one dropped group tops up.
        let (topped, _, _, _) = build()?.finish(DynamicSamplingOnCap::TrainOnKept, 4)?;
        assert_eq!(
            topped.iter().map(|s| s.row_index).collect::<Vec<_>>(),
            [1, 1, 0, 0]
        );
        let (padded, _, matrix, _) = build()?.finish(DynamicSamplingOnCap::PadWithDropped, 2)?;
        assert_eq!(
            padded.iter().map(|s| s.row_index).collect::<Vec<_>>(),
            [1, 1, 0, 0, 2, 2]
        );
        assert_eq!(matrix.values(), [0.0, 1.0, 1.0, 1.0, 2.0, 2.0]);
        Ok(())
    }

    #[test]
    fn parts_are_equal_or_differ_by_one() -> Result<()> {
        let order: Vec<usize> = (0..8).collect();
        assert_eq!(split_parts(&order, 2), [vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
        let order: Vec<usize> = (0..5).collect();
        assert_eq!(split_parts(&order, 2), [vec![0, 1, 2], vec![3, 4]]);
        assert_eq!(split_parts(&order, 1), [vec![0, 1, 2, 3, 4]]);
        Ok(())
    }
}
