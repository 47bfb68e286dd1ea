//! The GRPO trainer: TRL's training loop on MLX.
//!
//! One optimizer step is: a rollout (every `steps_per_generation`
//! micro-steps: prompts → `num_generations` completions each → rewards →
//! advantages, plus the reference and old log-probabilities when needed),
//! then `gradient_accumulation_steps` micro-batches of loss through the
//! model with autograd, gradient clipping, an optimizer update and the
//! learning-rate schedule. Metrics carry TRL's names.
//!
//! Custom trainers reuse the loop through [`TrainerCallback`] (change
//! rollouts, rewards or the loss inputs; observe logs and saves) or build
//! their own from the public pieces: [`rollout`], [`batch`],
//! [`crate::loss`], [`step`], [`optimizer`], [`checkpoint`], [`metrics_log`].

pub mod batch;
pub mod callbacks;
pub mod checkpoint;
pub mod metrics_log;
pub mod optimizer;
pub mod rollout;
pub mod step;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mlx_lm::loader::{load_model, save_model, SaveOptions};
use mlx_lm::models::Model;
use mlx_lm::{LanguageModel, Tokenizer};
use mlx_nn::ModuleExt;

use crate::advantages::{compute_advantages, AdvantageSettings};
use crate::config::GrpoConfig;
use crate::dataset::{Dataset, GenerationSampler, SamplerSpec, SplitMix64};
use crate::loss::GrpoLoss;
use crate::rewards::RewardSet;
use crate::{Error, Result};

pub use batch::MicroBatch;
pub use callbacks::TrainerCallback;
pub use checkpoint::{CheckpointManager, TrainerState};
pub use metrics_log::{LogRecord, MetricsLog, Progress};
pub use optimizer::{build_optimizer, build_schedule, TrainerOptimizer};
pub use rollout::RolloutSample;
pub use step::optimize_step;

/// What [`Trainer::train`] returns.
#[derive(Debug, Clone)]
pub struct TrainOutput {
    /// Optimizer steps taken in total.
    pub global_step: usize,
    /// Every logged record.
    pub log_history: Vec<LogRecord>,
    /// The last checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
}

/// Completions of one generation, split into micro-batches and reused for
/// `num_iterations` passes.
struct RolloutBuffer {
    micro_batches: Vec<MicroBatch>,
    next: usize,
    remaining: usize,
    metrics: BTreeMap<String, f64>,
}

/// GRPO training of a Qwen3 / Qwen3-MoE model.
pub struct Trainer {
    config: GrpoConfig,
    model: Model,
    ref_model: Option<Model>,
    tokenizer: Tokenizer,
    rewards: RewardSet,
    dataset: Dataset,
    sampler: GenerationSampler,
    optimizer: TrainerOptimizer,
    loss: GrpoLoss,
    state: TrainerState,
    callbacks: Vec<Box<dyn TrainerCallback>>,
    checkpoints: CheckpointManager,
    source_dir: Option<PathBuf>,
    total_steps: usize,
    show_progress: bool,
    buffer: Option<RolloutBuffer>,
    pending_logs: Vec<BTreeMap<String, f64>>,
    num_tokens: f64,
}

impl Trainer {
    /// A trainer for `model` on `dataset` with `rewards`. The config is
    /// validated first (invalid combinations are errors naming the fields).
    pub fn new(
        config: GrpoConfig,
        model: Model,
        tokenizer: Tokenizer,
        dataset: Dataset,
        rewards: RewardSet,
    ) -> Result<Self> {
        config.validate()?;
        if rewards.names().is_empty() {
            return Err(Error::InvalidConfig {
                message: "no reward functions: add at least one to the RewardSet".into(),
            });
        }
        if let Some(weights) = &config.reward_weights {
            if weights.len() != rewards.names().len() {
                return Err(Error::InvalidConfig {
                    message: format!(
                        "reward_weights has {} entries but there are {} reward functions",
                        weights.len(),
                        rewards.names().len()
                    ),
                });
            }
        }
        let spec = SamplerSpec::from_config(&config);
        let sampler = GenerationSampler::new(dataset.len(), spec)?;
        let total_steps = if config.max_steps > 0 {
            config.max_steps as usize
        } else {
            config.total_optimizer_steps(dataset.len())
        };
        let optimizer = build_optimizer(&config, total_steps)?;
        let mut model = model;
        model.set_gradient_checkpointing(config.gradient_checkpointing);
        let ref_model = (config.beta != 0.0).then(|| {
            let mut r = model.clone();
            r.freeze();
            r
        });
        let state = TrainerState {
            global_step: 0,
            sampler_position: sampler.position(),
            seed: config.seed,
            log_history: Vec::new(),
            ref_sync_counter: 0,
        };
        let checkpoints = CheckpointManager::new(&config.output_dir, config.save_total_limit);
        Ok(Trainer {
            loss: GrpoLoss::from_config(&config),
            config,
            model,
            ref_model,
            tokenizer,
            rewards,
            dataset,
            sampler,
            optimizer,
            state,
            callbacks: Vec::new(),
            checkpoints,
            source_dir: None,
            total_steps,
            show_progress: true,
            buffer: None,
            pending_logs: Vec::new(),
            num_tokens: 0.0,
        })
    }

    /// The directory the model was loaded from: its tokenizer and config
    /// files are copied into every checkpoint.
    pub fn with_source_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.source_dir = Some(dir.into());
        self
    }

    /// Adds a callback.
    pub fn with_callback(mut self, callback: impl TrainerCallback + 'static) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// Shows (default) or hides the progress bar.
    pub fn with_progress(mut self, show: bool) -> Self {
        self.show_progress = show;
        self
    }

    /// The model being trained.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The configuration.
    pub fn config(&self) -> &GrpoConfig {
        &self.config
    }

    /// Optimizer steps taken.
    pub fn global_step(&self) -> usize {
        self.state.global_step
    }

    /// Optimizer steps the run will take.
    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    /// Loads a checkpoint written by [`Trainer::save_checkpoint`]: weights,
    /// optimizer state, sampler position, step and logs. Training then
    /// continues the same trajectory as an uninterrupted run.
    pub fn resume_from(&mut self, checkpoint: &Path) -> Result<()> {
        let state = checkpoint::read_trainer_state(checkpoint)?;
        let dtype = self.model.dtype();
        self.model = load_model(checkpoint.join(checkpoint::MODEL_DIR), Some(dtype))?;
        self.model
            .set_gradient_checkpointing(self.config.gradient_checkpointing);
        let ref_dir = checkpoint.join("ref_model");
        if self.ref_model.is_some() && ref_dir.is_dir() {
            let mut r = load_model(ref_dir, Some(dtype))?;
            r.freeze();
            self.ref_model = Some(r);
        }
        self.optimizer
            .load_for(checkpoint.join(checkpoint::OPTIMIZER_FILE), &self.model)?;
        self.sampler = GenerationSampler::resume(
            self.dataset.len(),
            SamplerSpec::from_config(&self.config),
            state.sampler_position,
        )?;
        self.state = state;
        self.buffer = None;
        Ok(())
    }

    /// Trains until `max_steps` (or the epochs) are done, logging and saving
    /// as configured. Resumes first when `resume_from_checkpoint` is set.
    pub fn train(&mut self) -> Result<TrainOutput> {
        if let Some(path) = self.config.resume_from_checkpoint.clone() {
            let path = if path.as_os_str() == "latest" {
                self.checkpoints
                    .latest()?
                    .ok_or_else(|| Error::InvalidConfig {
                        message: format!(
                            "resume_from_checkpoint = latest, but {} has no checkpoint",
                            self.config.output_dir.display()
                        ),
                    })?
            } else {
                path
            };
            self.resume_from(&path)?;
        }
        let mut log = MetricsLog::open(&self.config.output_dir, self.state.log_history.clone())?;
        let progress = if self.show_progress {
            Progress::new(self.total_steps, self.state.global_step)
        } else {
            Progress::hidden()
        };
        while self.state.global_step < self.total_steps {
            let metrics = self.train_step()?;
            progress.step(&metrics);
            self.pending_logs.push(metrics);
            let step = self.state.global_step;
            let logging = self.config.logging_steps.max(1);
            if step.is_multiple_of(logging) || step == self.total_steps {
                let record = LogRecord {
                    step,
                    metrics: average(&self.pending_logs),
                };
                self.pending_logs.clear();
                for cb in &mut self.callbacks {
                    cb.on_log(&record);
                }
                log.append(record.clone())?;
                self.state.log_history.push(record);
            }
            let save_every = self.config.save_steps;
            if save_every > 0 && step.is_multiple_of(save_every) && step != self.total_steps {
                self.save_checkpoint()?;
                metrics_log::plot_curves(
                    log.history(),
                    &self.config.output_dir.join("curves.png"),
                )?;
            }
        }
        progress.finish();
        let last_checkpoint = Some(self.save_checkpoint()?);
        metrics_log::plot_curves(log.history(), &self.config.output_dir.join("curves.png"))?;
        Ok(TrainOutput {
            global_step: self.state.global_step,
            log_history: self.state.log_history.clone(),
            last_checkpoint,
        })
    }

    /// Writes `output_dir/checkpoint-<step>` atomically: weights in the
    /// Hugging Face layout, optimizer state and trainer state.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        self.state.sampler_position = self.sampler.position();
        let step = self.state.global_step;
        let options = SaveOptions {
            source_dir: self.source_dir.clone(),
            ..Default::default()
        };
        let model = &self.model;
        let ref_model = &self.ref_model;
        let optimizer = &self.optimizer;
        let path = self.checkpoints.save(step, &self.state, |dir| {
            save_model(model, dir.join(checkpoint::MODEL_DIR), &options)?;
            if let Some(r) = ref_model {
                save_model(r, dir.join("ref_model"), &options)?;
            }
            optimizer.save(dir.join(checkpoint::OPTIMIZER_FILE))?;
            Ok(())
        })?;
        for cb in &mut self.callbacks {
            cb.on_save(&path);
        }
        Ok(path)
    }

    /// One optimizer step (generating a new rollout first when the previous
    /// one is used up). Returns the step's metrics.
    pub fn train_step(&mut self) -> Result<BTreeMap<String, f64>> {
        let started = Instant::now();
        let accumulation = self.config.gradient_accumulation_steps.max(1);
        let mut micro = Vec::with_capacity(accumulation);
        let mut rollout_metrics = BTreeMap::new();
        while micro.len() < accumulation {
            if self.buffer.as_ref().is_none_or(|b| b.remaining == 0) {
                self.buffer = Some(self.generate()?);
            }
            let Some(buffer) = self.buffer.as_mut() else {
                return Err(Error::InvalidConfig {
                    message: "no rollout buffer".into(),
                });
            };
            let index = buffer.next % buffer.micro_batches.len().max(1);
            micro.push(buffer.micro_batches[index].clone());
            buffer.next += 1;
            buffer.remaining -= 1;
            rollout_metrics = buffer.metrics.clone();
        }
        let mut metrics = step::optimize_step(
            &mut self.model,
            &mut self.optimizer,
            &self.loss,
            &self.config,
            &micro,
        )?;
        self.state.global_step += 1;
        self.sync_reference()?;
        metrics.extend(rollout_metrics);
        metrics.insert("step_time".into(), started.elapsed().as_secs_f64());
        metrics.insert("num_tokens".into(), self.num_tokens);
        for cb in &mut self.callbacks {
            cb.on_step_end(self.state.global_step, &metrics);
        }
        Ok(metrics)
    }

    /// TR-DPO: every `ref_model_sync_steps`, `ref = α·model + (1−α)·ref`.
    fn sync_reference(&mut self) -> Result<()> {
        if !self.config.sync_ref_model {
            return Ok(());
        }
        let Some(reference) = self.ref_model.as_mut() else {
            return Ok(());
        };
        self.state.ref_sync_counter += 1;
        if self.state.ref_sync_counter < self.config.ref_model_sync_steps.max(1) {
            return Ok(());
        }
        self.state.ref_sync_counter = 0;
        let alpha = self.config.ref_model_mixup_alpha;
        let current = self.model.parameters();
        let mut mixed = mlx_nn::ParamMap::new();
        for (name, r) in reference.parameters() {
            if let Some(p) = current.get(&name) {
                mixed.insert(name, p.mul_scalar(alpha)?.add(&r.mul_scalar(1.0 - alpha)?)?);
            }
        }
        reference.update(&mixed)?;
        reference.eval_params()?;
        Ok(())
    }

    /// Samples a generation batch and prepares its micro-batches.
    fn generate(&mut self) -> Result<RolloutBuffer> {
        let gen = self.sampler.next_batch();
        let rows = self.dataset.rows();
        let slots = gen.sample_indices();
        let mut prompts = Vec::with_capacity(gen.prompt_indices.len());
        for &i in &gen.prompt_indices {
            let row = rows.get(i).ok_or_else(|| Error::InvalidConfig {
                message: format!("sampler produced row {i}"),
            })?;
            prompts.push(rollout::render_prompt(&self.tokenizer, &row.prompt)?);
        }
        let generation_index = self.state.global_step as u64;
        // The last update replaced the weights: keep decoding from holding
        // a stacked copy of them beside the parameters.
        self.model.pack_inference_weights()?;
        let mut samples = rollout::generate(
            &self.model,
            &self.tokenizer,
            &gen.prompt_indices,
            &prompts,
            &self.config,
            self.config
                .seed
                .wrapping_mul(0x9e37_79b9)
                .wrapping_add(generation_index),
        )?;
        for cb in &mut self.callbacks {
            cb.on_rollout(&mut samples);
        }
        debug_assert_eq!(samples.len(), slots.len());
        let inputs = rollout::reward_inputs(&self.tokenizer, rows, &samples)?;
        let matrix = self.rewards.score(&inputs)?;
        let weights = match &self.config.reward_weights {
            Some(w) => w.clone(),
            None => self.rewards.weights(),
        };
        let mut advantages = compute_advantages(
            &matrix,
            &weights,
            &AdvantageSettings::from_config(&self.config),
        )?;
        for cb in &mut self.callbacks {
            cb.on_advantages(&inputs, &mut advantages.advantages);
        }
        let mut metrics = advantages.metrics.to_map();
        metrics.extend(batch::completion_metrics(&samples));
        if self.config.log_completions {
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
        self.num_tokens += samples
            .iter()
            .map(|s| (s.prompt_ids.len() + s.completion_ids.len()) as f64)
            .sum::<f64>();

        let mut rng = SplitMix64::for_stream(self.config.seed, generation_index);
        let parts = gen.micro_batches(&mut rng);
        let num_items: f64 = samples
            .iter()
            .filter(|s| {
                !(self.config.mask_truncated_completions
                    && s.finish_reason == crate::rewards::FinishReason::Length)
            })
            .map(|s| s.completion_ids.len() as f64)
            .sum();
        let pad_id = self
            .tokenizer
            .pad_token_id()
            .or(self.tokenizer.eos_token_id())
            .unwrap_or(0);
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
                self.ref_model.as_ref(),
            )?;
            micro_batches.push(mb);
        }
        let count = micro_batches.len() * self.config.num_iterations.max(1);
        Ok(RolloutBuffer {
            micro_batches,
            next: 0,
            remaining: count,
            metrics,
        })
    }
}

/// The mean of each metric over a list of records (NaN values skipped).
fn average(records: &[BTreeMap<String, f64>]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for r in records {
        for (k, v) in r {
            let e = sums.entry(k.clone()).or_insert((0.0, 0));
            if v.is_finite() {
                e.0 += v;
                e.1 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(k, (s, n))| (k, if n == 0 { f64::NAN } else { s / n as f64 }))
        .collect()
}
