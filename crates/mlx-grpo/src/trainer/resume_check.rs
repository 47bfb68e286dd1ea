//! Checks a trainer state read from a checkpoint against the run resuming
//! from it, so that a corrupt, hand-edited or foreign file is an error
//! naming the file and the field instead of a run that silently diverges.

use std::path::Path;

use crate::trainer::checkpoint::TrainerState;
use crate::{Error, Result};

/// What a trainer state must agree with: the resuming run's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    /// The run's seed.
    pub seed: u64,
    /// Optimizer steps of the whole run.
    pub total_steps: usize,
    /// Generation batches per epoch of the sampler.
    pub batches_per_epoch: usize,
    /// Micro-steps one generation batch serves (its micro-batches ×
    /// `num_iterations`).
    pub micro_steps_per_generation: usize,
    /// Micro-batches per optimizer step (`gradient_accumulation_steps`).
    pub micro_steps_per_step: usize,
}

impl RunShape {
    /// The generation batches a run has sampled after `steps` optimizer
    /// steps, and the micro-steps the last of them still serves: a batch is
    /// sampled exactly when a micro-step needs one and the previous batch is
    /// used up.
    pub fn generations_after(&self, steps: usize) -> Option<(u64, usize)> {
        let micro = steps.checked_mul(self.micro_steps_per_step)?;
        let per = self.micro_steps_per_generation.max(1);
        let generations = micro.div_ceil(per);
        let left = generations.checked_mul(per)? - micro;
        Some((u64::try_from(generations).ok()?, left))
    }
}

/// Checks `state`, read from `path`, against `run`. Every counter must be
/// in range and agree with the others: the step within the run, the sampler
/// position within the dataset and at the generation the steps imply, the
/// generation counter and buffered micro-steps likewise, the log's steps
/// increasing up to the step, the token count finite. A generation counter
/// of 0 (files written before it was kept) is accepted.
pub fn check_trainer_state(state: &TrainerState, path: &Path, run: &RunShape) -> Result<()> {
    let bad = |field: &str, message: String| Err(Error::checkpoint(path, field, message));
    if state.seed != run.seed {
        return bad(
            "seed",
            format!(
                "{} but this run's seed is {}; resume with the checkpoint's seed",
                state.seed, run.seed
            ),
        );
    }
    if state.global_step > run.total_steps {
        return bad(
            "global_step",
            format!(
                "{} is past the end of this run ({} steps)",
                state.global_step, run.total_steps
            ),
        );
    }
    let position = state.sampler_position;
    if position.index > run.batches_per_epoch {
        return bad(
            "sampler_position.index",
            format!(
                "{} but an epoch has {} generation batches",
                position.index, run.batches_per_epoch
            ),
        );
    }
    let sampled = u64::try_from(run.batches_per_epoch)
        .ok()
        .and_then(|per_epoch| position.epoch.checked_mul(per_epoch))
        .and_then(|n| n.checked_add(u64::try_from(position.index).ok()?));
    let Some(sampled) = sampled else {
        return bad(
            "sampler_position.epoch",
            format!("{} is out of range", position.epoch),
        );
    };
    let Some((generations, left)) = run.generations_after(state.global_step) else {
        return bad(
            "global_step",
            format!("{} is out of range", state.global_step),
        );
    };
    // Dynamic sampling's extra rounds, and a batch sampled ahead of its turn
    // (overlapped generation), drew more batches than the steps imply.
    let Some(generations) = generations
        .checked_add(state.extra_generation_batches)
        .and_then(|n| n.checked_add(u64::from(state.pending_rollout)))
    else {
        return bad(
            "extra_generation_batches",
            format!("{} is out of range", state.extra_generation_batches),
        );
    };
    if sampled != generations {
        return bad(
            "sampler_position",
            format!(
                "epoch {} batch {} ({sampled} generation batches sampled), but {} steps of {} \
                 micro-batches with {} micro-steps per generation batch, {} extra batches of \
                 dynamic sampling and {} batch sampled ahead sample {generations}: the checkpoint \
                 belongs to a run with other batch settings",
                position.epoch,
                position.index,
                state.global_step,
                run.micro_steps_per_step,
                run.micro_steps_per_generation,
                state.extra_generation_batches,
                u8::from(state.pending_rollout)
            ),
        );
    }
    if state.generations != 0 && state.generations != generations {
        return bad(
            "generations",
            format!(
                "{} but the step and sampler position give {generations}",
                state.generations
            ),
        );
    }
    if state.buffered_micro_steps != left {
        return bad(
            "buffered_micro_steps",
            format!(
                "{} but step {} leaves {left} micro-steps of the last generation batch{}",
                state.buffered_micro_steps,
                state.global_step,
                if state.buffered_micro_steps == 0 {
                    " (a checkpoint written before rollout buffers were saved cannot resume \
                     exactly in the middle of a generation batch)"
                } else {
                    ""
                }
            ),
        );
    }
    if state.ref_sync_counter > state.global_step {
        return bad(
            "ref_sync_counter",
            format!(
                "{} exceeds global_step {}",
                state.ref_sync_counter, state.global_step
            ),
        );
    }
    if state.pending_logs.len() > state.global_step {
        return bad(
            "pending_logs",
            format!(
                "{} entries but only {} steps were taken",
                state.pending_logs.len(),
                state.global_step
            ),
        );
    }
    if !(state.num_tokens.is_finite() && state.num_tokens >= 0.0) {
        return bad(
            "num_tokens",
            format!("{} is not a token count", state.num_tokens),
        );
    }
    let mut previous = 0;
    for record in &state.log_history {
        if record.step <= previous || record.step > state.global_step {
            return bad(
                "log_history",
                format!(
                    "a record of step {} after step {previous} (global_step {}): steps must \
                     increase up to global_step",
                    record.step, state.global_step
                ),
            );
        }
        previous = record.step;
    }
    Ok(())
}
