//! One generation batch, from the dataset to micro-batches: the data path
//! of a GRPO step before the loss (draw prompts, generate, score, compute
//! advantages, report, cut into micro-batches with their old and reference
//! log-probabilities).

use std::collections::BTreeMap;

use super::dynamic_sampling::{self, ScoredRound};
use super::overlap::{self, PendingRollout, RolloutJob, RoundPlan};
use super::{
    MicroBatch, RolloutBuffer, Trainer, adapters, batch, parallel, rollout, rollout_correction,
};
use crate::advantages::{AdvantageSettings, Advantages, compute_advantages};
use crate::dataset::SplitMix64;
use crate::{Error, Result};

/// A generation batch's advantages with what they were computed from.
struct Scored {
    round: ScoredRound,
    advantages: Advantages,
    metrics: BTreeMap<String, f64>,
    tokens: f64,
}

impl Trainer {
    /// Samples a generation batch and prepares its micro-batches (this
    /// rank's rows of it when data-parallel).
    pub(super) fn generate(&mut self) -> Result<RolloutBuffer> {
        let first = match self.ahead.take()? {
            Some(pending) => {
                // Old and reference log-probabilities without dropout.
                adapters::set_adapter_mode(&mut self.model, false, 0, 0, 0);
                self.score_round(pending)?
            }
            None => self.sample_round()?,
        };
        let round = self.fill_informative_groups(first)?;
        let scored = self.advantages_of(round)?;
        self.report(&scored)?;
        self.state.num_tokens += scored.tokens;
        self.micro_batches_of(scored)
    }

    /// With `overlap_generation`, starts sampling the next generation batch
    /// on a second thread with the current weights.
    pub(super) fn start_next_rollout(&mut self) -> Result<()> {
        let (plan, job) = self.plan_round()?;
        self.ahead.start(plan, job, self.model.clone())
    }

    /// Draws the sampler's next generation batch, generates this rank's
    /// completions of it and scores them.
    pub(super) fn sample_round(&mut self) -> Result<ScoredRound> {
        let (plan, job) = self.plan_round()?;
        overlap::prepare_for_rollout(&mut self.model, &self.config)?;
        let samples = job.generate(&self.model)?;
        self.score_round(PendingRollout { plan, samples })
    }

    /// Draws the sampler's next generation batch and decides what this
    /// rank samples of it: its rows and the prompts they need.
    pub(super) fn plan_round(&mut self) -> Result<(RoundPlan, RolloutJob)> {
        let drawn = self.sampler.next_batch();
        let rows = self.dataset.rows();
        let (rank, ranks) = self
            .parallel
            .as_ref()
            .map_or((0, 1), |p| (p.rank(), p.size()));
        let total = drawn.num_completions();
        let mine = parallel::local_rows(total, rank, ranks)?;
        let g = self.config.num_generations.max(1);
        // Render only the prompts of this rank's rows (a group that
        // straddles two ranks on both); the others stay empty and are never
        // generated.
        let needed = mine.start / g..mine.end.div_ceil(g);
        let mut prompts = vec![Vec::new(); drawn.prompt_indices.len()];
        let mut job_rows = Vec::with_capacity(drawn.prompt_indices.len());
        for (slot, &i) in drawn.prompt_indices.iter().enumerate() {
            let row = rows
                .get(i)
                .ok_or_else(|| Error::internal(format!("sampler produced row {i}")))?;
            job_rows.push(row.clone());
            if !needed.contains(&slot) {
                continue;
            }
            let schemas = self.tools.as_ref().map(crate::tools::Tools::schemas);
            let ids = rollout::render_prompt_with_tools(&self.tokenizer, &row.prompt, schemas)?;
            prompts[slot] = self.prompt_truncation.apply(ids);
        }
        // Every generation has its own keys, also when one optimizer step
        // samples several (gradient_accumulation_steps > steps_per_generation).
        let generation_index = self.state.generations;
        self.state.generations = generation_index.wrapping_add(1);
        let plan = RoundPlan {
            generation_index,
            steps_per_generation: drawn.steps_per_generation,
            mine: mine.clone(),
        };
        let job = RolloutJob {
            tokenizer: self.tokenizer.clone(),
            tools: self.tools.clone(),
            rows: job_rows,
            row_indices: drawn.prompt_indices.clone(),
            prompts,
            config: self.config.clone(),
            seed: rollout::generation_seed(self.config.seed, generation_index),
            completions: mine,
        };
        Ok((plan, job))
    }

    /// Checks that a sampled batch holds this rank's rows and scores them.
    pub(super) fn score_round(&mut self, pending: PendingRollout) -> Result<ScoredRound> {
        let PendingRollout { plan, mut samples } = pending;
        let mine = plan.mine.clone();
        if samples.len() != mine.len() {
            return Err(Error::internal(format!(
                "generation gave {} of this rank's {} completions",
                samples.len(),
                mine.len()
            )));
        }
        for cb in &mut self.callbacks {
            cb.on_rollout(&mut samples);
        }
        let inputs = rollout::reward_inputs(&self.tokenizer, self.dataset.rows(), &samples)?;
        let matrix = self.rewards.score(&inputs)?;
        Ok(ScoredRound {
            generation_index: plan.generation_index,
            steps_per_generation: plan.steps_per_generation,
            mine,
            samples,
            inputs,
            matrix,
            metrics: BTreeMap::new(),
        })
    }

    /// Rewards gathered from every rank, advantages over the whole batch
    /// (this rank's rows kept), and the batch's metrics.
    fn advantages_of(&mut self, round: ScoredRound) -> Result<Scored> {
        let ScoredRound {
            ref mine,
            ref samples,
            ref inputs,
            ref matrix,
            metrics: ref round_metrics,
            ..
        } = round;
        let mine = mine.clone();
        let weights = match &self.config.reward_weights {
            Some(w) => w.clone(),
            None => self.rewards.weights(),
        };
        let (global_matrix, outcomes, tokens) =
            parallel::gather_rollout(self.parallel.as_ref(), matrix, samples)?;
        let mut advantages = compute_advantages(
            &global_matrix,
            &weights,
            &AdvantageSettings::from_config(&self.config),
        )?;
        let mut metrics = advantages.metrics.to_map();
        metrics.extend(round_metrics.clone());
        // Advantages and rewards of this rank's rows.
        advantages.advantages = advantages
            .advantages
            .get(mine.clone())
            .map(<[f32]>::to_vec)
            .ok_or_else(|| Error::internal("advantages of fewer rows than the batch"))?;
        advantages.rewards = advantages
            .rewards
            .get(mine.clone())
            .map(<[f32]>::to_vec)
            .ok_or_else(|| Error::internal("rewards of fewer rows than the batch"))?;
        for cb in &mut self.callbacks {
            cb.on_advantages(inputs, &mut advantages.advantages);
        }
        metrics.extend(batch::completion_metrics_of(&outcomes));
        metrics.extend(crate::tools::tool_metrics(samples));
        Ok(Scored {
            round,
            advantages,
            metrics,
            tokens,
        })
    }

    /// Writes the batch's samples (`samples.jsonl`, callbacks) and prints
    /// the first completions when asked to.
    fn report(&mut self, scored: &Scored) -> Result<()> {
        let (inputs, matrix, advantages) = (
            &scored.round.inputs,
            &scored.round.matrix,
            &scored.advantages,
        );
        if self.is_main_process() && (self.config.log_completions || self.write_samples) {
            self.record_samples(inputs, matrix, advantages)?;
        }
        if self.config.log_completions && self.show_progress {
            let n = self
                .config
                .num_completions_to_print
                .unwrap_or(2)
                .min(inputs.len());
            for (input, reward) in inputs.iter().zip(&advantages.rewards).take(n) {
                eprintln!(
                    "[completion] prompt: {:?}\n             output: {:?}\n             reward: {reward:.3}",
                    input.prompt.last_user_text(),
                    input.completion.raw_text
                );
            }
        }
        Ok(())
    }

    /// The batch cut into `steps_per_generation` micro-batches with their
    /// old and reference log-probabilities.
    fn micro_batches_of(&mut self, scored: Scored) -> Result<RolloutBuffer> {
        let Scored {
            round,
            advantages,
            mut metrics,
            ..
        } = scored;
        let ScoredRound {
            generation_index,
            steps_per_generation,
            samples,
            ..
        } = round;
        // TRL shuffles each process's rows with the same seed on every
        // process, then cuts them into `steps_per_generation` parts.
        let mut rng = SplitMix64::for_stream(self.config.seed, generation_index);
        let order = rng.permutation(samples.len());
        let parts = dynamic_sampling::split_parts(&order, steps_per_generation);
        let local_items: f64 = samples
            .iter()
            .filter(|s| {
                !(self.config.mask_truncated_completions
                    && s.finish_reason == crate::rewards::FinishReason::Length)
            })
            .map(|s| s.model_tokens() as f64)
            .sum();
        // All ranks' loss tokens, divided by the ranks as TRL does: the
        // gradients are averaged over them afterwards.
        let num_items = match &self.parallel {
            Some(p) => {
                let total = p.sum(&[local_items as f32])?;
                f64::from(total.first().copied().unwrap_or(0.0)) / p.size() as f64
            }
            None => local_items,
        };
        let pad_id = self
            .tokenizer
            .pad_token_id()
            .or(self.tokenizer.eos_token_id())
            .unwrap_or(0);
        let adapter_reference = match &self.ref_model {
            None if self.config.beta != 0.0 && adapters::has_adapters(&self.model) => {
                Some(adapters::reference_without_adapters(&self.model)?)
            }
            _ => None,
        };
        let reference = self.ref_model.as_ref().or(adapter_reference.as_ref());
        let mut micro_batches = Vec::with_capacity(parts.len());
        for part in parts {
            let mb = MicroBatch::build(
                &part,
                &samples,
                &advantages.advantages,
                pad_id,
                num_items,
                &self.config,
                &self.model,
                reference,
            )?;
            micro_batches.push(mb);
        }
        metrics.extend(rollout_correction::sampling_metrics(
            &micro_batches,
            &self.config,
            self.parallel.as_ref(),
        )?);
        let count = micro_batches.len() * self.config.num_iterations.max(1);
        Ok(RolloutBuffer {
            micro_batches,
            next: 0,
            remaining: count,
            metrics,
        })
    }
}
