//! Prompt samplers with TRL's `RepeatSampler` layout.
//!
//! Each epoch, the row indices are (optionally) shuffled and cut into chunks of
//! `prompts_per_generation` distinct prompts; a trailing partial chunk is
//! dropped. Each chunk is one *generation batch*: every prompt in it is
//! sampled `num_generations` times (the group), and the generated completions
//! then serve `steps_per_generation × num_iterations` optimisation micro-steps
//! before the next chunk is generated.
//!
//! [`RepeatSampler`] reproduces TRL's flat index stream (each chunk repeated
//! `repeat_count` times, each index `mini_repeat_count` times in a row), for
//! code that wants exactly that. [`GenerationSampler`] is what a trainer uses:
//! it yields each generation batch once, with the reuse counts attached, and
//! exposes a serialisable [`SamplerPosition`] to resume from.
//!
//! Epoch `e` is shuffled with [`SplitMix64::for_stream`]`(seed, e)`, so any
//! epoch's order can be rebuilt without replaying the earlier ones. (TRL draws
//! successive `torch.randperm`s from one generator; the orders differ from
//! TRL's but the structure is the same.)

use serde::{Deserialize, Serialize};

use super::rng::SplitMix64;
use crate::config::GrpoConfig;
use crate::error::{Error, Result};

/// TRL's `RepeatSampler`: the flat stream of row indices of one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatSampler {
    num_rows: usize,
    mini_repeat_count: usize,
    batch_size: usize,
    repeat_count: usize,
    shuffle: bool,
    seed: u64,
}

impl RepeatSampler {
    /// A sampler over `num_rows` rows yielding chunks of `batch_size` distinct
    /// indices, each index `mini_repeat_count` times in a row, each chunk
    /// `repeat_count` times. The counts must be at least 1.
    pub fn new(
        num_rows: usize,
        mini_repeat_count: usize,
        batch_size: usize,
        repeat_count: usize,
        shuffle: bool,
        seed: u64,
    ) -> Result<Self> {
        for (name, value) in [
            ("mini_repeat_count", mini_repeat_count),
            ("batch_size", batch_size),
            ("repeat_count", repeat_count),
        ] {
            if value == 0 {
                return Err(Error::InvalidConfig {
                    message: format!("sampler {name} must be at least 1 (got 0)"),
                });
            }
        }
        Ok(Self {
            num_rows,
            mini_repeat_count,
            batch_size,
            repeat_count,
            shuffle,
            seed,
        })
    }

    /// The order of the rows in `epoch`: a seeded permutation, or `0..n`
    /// without shuffling.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        if self.shuffle {
            SplitMix64::for_stream(self.seed, epoch).permutation(self.num_rows)
        } else {
            (0..self.num_rows).collect()
        }
    }

    /// The complete chunks of `epoch` (the partial tail is dropped).
    pub fn chunks(&self, epoch: u64) -> Vec<Vec<usize>> {
        self.order(epoch)
            .chunks_exact(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Complete chunks per epoch: `num_rows / batch_size`.
    pub fn chunks_per_epoch(&self) -> usize {
        self.num_rows / self.batch_size
    }

    /// The whole index stream of `epoch`, as TRL's `list(sampler)`.
    pub fn epoch_indices(&self, epoch: u64) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.len());
        for chunk in self.chunks(epoch) {
            for _ in 0..self.repeat_count {
                for &index in &chunk {
                    out.extend(std::iter::repeat_n(index, self.mini_repeat_count));
                }
            }
        }
        out
    }

    /// Length of one epoch's stream, as TRL's `len(sampler)`.
    pub fn len(&self) -> usize {
        self.chunks_per_epoch() * self.batch_size * self.mini_repeat_count * self.repeat_count
    }

    /// Whether an epoch yields nothing (fewer rows than one chunk).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The batching parameters of a [`GenerationSampler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplerSpec {
    /// Completions per prompt (G).
    pub num_generations: usize,
    /// Distinct prompts per generation batch.
    pub prompts_per_generation: usize,
    /// Micro-steps served by one generation batch in one pass.
    pub steps_per_generation: usize,
    /// Passes over each generation batch.
    pub num_iterations: usize,
    /// Shuffle each epoch.
    pub shuffle: bool,
    /// Shuffle seed.
    pub seed: u64,
}

impl SamplerSpec {
    /// The sampling parameters a config implies (validate the config first).
    pub fn from_config(cfg: &GrpoConfig) -> Self {
        Self {
            num_generations: cfg.num_generations,
            prompts_per_generation: cfg.prompts_per_generation(),
            steps_per_generation: cfg.steps_per_generation(),
            num_iterations: cfg.num_iterations,
            shuffle: cfg.shuffle_dataset,
            seed: cfg.seed,
        }
    }
}

/// Where a [`GenerationSampler`] stands: the next batch it yields is batch
/// `index` of epoch `epoch`. Save it with a checkpoint to resume there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SamplerPosition {
    /// Epoch, from 0.
    pub epoch: u64,
    /// Generation batch within the epoch, from 0.
    pub index: usize,
}

/// One generation batch: the prompts to sample, and how the completions are
/// reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationBatch {
    /// Where this batch sits in the sampling order.
    pub position: SamplerPosition,
    /// Dataset row of each distinct prompt.
    pub prompt_indices: Vec<usize>,
    /// Completions per prompt (G).
    pub num_generations: usize,
    /// Micro-batches the completions are split into.
    pub steps_per_generation: usize,
    /// Passes over the micro-batches.
    pub num_iterations: usize,
}

impl GenerationBatch {
    /// Completions in the batch: prompts × G.
    pub fn num_completions(&self) -> usize {
        self.prompt_indices.len() * self.num_generations
    }

    /// The dataset row of every completion slot: each prompt repeated G times
    /// in a row (`[a, a, b, b]` for G = 2), so that groups are contiguous as
    /// the advantage computation expects.
    pub fn sample_indices(&self) -> Vec<usize> {
        self.prompt_indices
            .iter()
            .flat_map(|&i| std::iter::repeat_n(i, self.num_generations))
            .collect()
    }

    /// Micro-steps this batch serves: `steps_per_generation × num_iterations`.
    pub fn micro_steps(&self) -> usize {
        self.steps_per_generation * self.num_iterations
    }

    /// Completion slots of each micro-batch, as TRL forms them: the slots are
    /// shuffled once, then cut into `steps_per_generation` equal parts. Part
    /// `k` is used at micro-steps `k, k + steps_per_generation, ...` (one per
    /// iteration).
    pub fn micro_batches(&self, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
        let order = rng.permutation(self.num_completions());
        let size = self.num_completions() / self.steps_per_generation.max(1);
        order
            .chunks_exact(size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }
}

/// Yields generation batches forever, epoch after epoch; the caller stops after
/// the number of steps it trains for.
#[derive(Debug, Clone)]
pub struct GenerationSampler {
    repeat: RepeatSampler,
    spec: SamplerSpec,
    position: SamplerPosition,
    chunks: Vec<Vec<usize>>,
}

impl GenerationSampler {
    /// A sampler over `num_rows` prompts, starting at epoch 0. Fails when the
    /// dataset has fewer rows than one generation batch needs, or a count in
    /// `spec` is 0.
    pub fn new(num_rows: usize, spec: SamplerSpec) -> Result<Self> {
        Self::resume(num_rows, spec, SamplerPosition::default())
    }

    /// A sampler that continues from `position` (as returned by
    /// [`GenerationSampler::position`]). The position must fit this dataset:
    /// `index` at most the batches per epoch (the end of an epoch is read as
    /// the start of the next).
    pub fn resume(num_rows: usize, spec: SamplerSpec, position: SamplerPosition) -> Result<Self> {
        for (name, value) in [
            ("num_generations", spec.num_generations),
            ("prompts_per_generation", spec.prompts_per_generation),
            ("steps_per_generation", spec.steps_per_generation),
            ("num_iterations", spec.num_iterations),
        ] {
            if value == 0 {
                return Err(Error::InvalidConfig {
                    message: format!("sampler {name} must be at least 1 (got 0)"),
                });
            }
        }
        let repeat = RepeatSampler::new(
            num_rows,
            spec.num_generations,
            spec.prompts_per_generation,
            spec.steps_per_generation * spec.num_iterations,
            spec.shuffle,
            spec.seed,
        )?;
        let batches_per_epoch = repeat.chunks_per_epoch();
        if batches_per_epoch == 0 {
            return Err(Error::DatasetTooSmall {
                rows: num_rows,
                prompts_per_batch: spec.prompts_per_generation,
            });
        }
        if position.index > batches_per_epoch {
            return Err(Error::InvalidSamplerPosition {
                epoch: position.epoch,
                index: position.index,
                batches_per_epoch,
            });
        }
        let chunks = repeat.chunks(position.epoch);
        let mut sampler = Self {
            repeat,
            spec,
            position,
            chunks,
        };
        sampler.roll_epoch_if_done();
        Ok(sampler)
    }

    /// The position of the next batch.
    pub fn position(&self) -> SamplerPosition {
        self.position
    }

    /// Generation batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.chunks.len()
    }

    /// The parameters this sampler was built with.
    pub fn spec(&self) -> SamplerSpec {
        self.spec
    }

    /// The next generation batch.
    pub fn next_batch(&mut self) -> GenerationBatch {
        let position = self.position;
        let prompt_indices = self.chunks.get(position.index).cloned().unwrap_or_default();
        self.position.index += 1;
        self.roll_epoch_if_done();
        GenerationBatch {
            position,
            prompt_indices,
            num_generations: self.spec.num_generations,
            steps_per_generation: self.spec.steps_per_generation,
            num_iterations: self.spec.num_iterations,
        }
    }

    fn roll_epoch_if_done(&mut self) {
        if self.position.index >= self.chunks.len() {
            self.position = SamplerPosition {
                epoch: self.position.epoch + 1,
                index: 0,
            };
            self.chunks = self.repeat.chunks(self.position.epoch);
        }
    }
}

impl Iterator for GenerationSampler {
    type Item = GenerationBatch;

    fn next(&mut self) -> Option<GenerationBatch> {
        Some(self.next_batch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_sampler_matches_trl_layout_without_shuffle()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        // TRL's docstring example, unshuffled: 7 rows, G = 2, 3 prompts per chunk, repeat 2.
        let s = RepeatSampler::new(7, 2, 3, 2, false, 0)?;
        let expected = [
            0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2, //
            3, 3, 4, 4, 5, 5, 3, 3, 4, 4, 5, 5,
        ];
        assert_eq!(s.epoch_indices(0), expected);
        assert_eq!(s.len(), expected.len());
        Ok(())
    }

    #[test]
    fn shuffled_chunks_are_distinct_rows_and_change_per_epoch()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let s = RepeatSampler::new(10, 4, 3, 1, true, 9)?;
        let chunks = s.chunks(0);
        assert_eq!(chunks.len(), 3);
        let mut seen: Vec<usize> = chunks.concat();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        assert_ne!(s.order(0), s.order(1));
        assert_eq!(s.order(1), s.order(1));
        Ok(())
    }

    fn spec() -> SamplerSpec {
        SamplerSpec {
            num_generations: 2,
            prompts_per_generation: 2,
            steps_per_generation: 2,
            num_iterations: 1,
            shuffle: true,
            seed: 1,
        }
    }

    #[test]
    fn generation_sampler_walks_epochs_and_resumes()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let mut s = GenerationSampler::new(5, spec())?;
        assert_eq!(s.batches_per_epoch(), 2);
        let batches: Vec<GenerationBatch> = (0..5).map(|_| s.next_batch()).collect();
        let positions: Vec<(u64, usize)> = batches
            .iter()
            .map(|b| (b.position.epoch, b.position.index))
            .collect();
        assert_eq!(positions, [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]);
        assert_eq!(batches[0].sample_indices().len(), 4);
        assert_eq!(
            batches[0].sample_indices()[0],
            batches[0].sample_indices()[1]
        );

        let mut resumed = GenerationSampler::resume(5, spec(), batches[3].position)?;
        assert_eq!(resumed.next_batch(), batches[3]);
        assert_eq!(resumed.next_batch(), batches[4]);

        let end = SamplerPosition { epoch: 0, index: 2 };
        assert_eq!(
            GenerationSampler::resume(5, spec(), end)?.position(),
            SamplerPosition { epoch: 1, index: 0 }
        );
        let bad = SamplerPosition { epoch: 0, index: 3 };
        assert!(matches!(
            GenerationSampler::resume(5, spec(), bad),
            Err(Error::InvalidSamplerPosition { .. })
        ));
        Ok(())
    }

    #[test]
    fn too_small_dataset_is_an_error() {
        let err = GenerationSampler::new(1, spec()).unwrap_err();
        assert!(matches!(
            err,
            Error::DatasetTooSmall {
                rows: 1,
                prompts_per_batch: 2
            }
        ));
    }

    #[test]
    fn micro_batches_partition_the_completions()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let batch = GenerationSampler::new(4, spec())?.next_batch();
        let parts = batch.micro_batches(&mut SplitMix64::new(0));
        assert_eq!(parts.len(), 2);
        let mut all = parts.concat();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3]);
        assert_eq!(batch.micro_steps(), 2);
        Ok(())
    }

    #[test]
    fn position_serializes() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let p = SamplerPosition { epoch: 3, index: 7 };
        let text = serde_json::to_string(&p)?;
        assert_eq!(text, r#"{"epoch":3,"index":7}"#);
        assert_eq!(serde_json::from_str::<SamplerPosition>(&text)?, p);
        Ok(())
    }
}
