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

pub mod adapters;
pub mod batch;
pub mod callbacks;
pub mod checkpoint;
pub mod control;
pub mod dynamic_sampling;
mod generation;
pub mod memory_plan;
pub mod metric_serde;
pub mod metrics_log;
pub mod optimizer;
pub mod overlap;
pub mod parallel;
pub mod resume_check;
pub mod rollout;
pub mod rollout_buffer;
pub mod rollout_correction;
pub mod step;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mlx_lm::loader::{SaveOptions, load_model, save_model};
use mlx_lm::models::Model;
use mlx_lm::{LanguageModel, Tokenizer};
use mlx_nn::ModuleExt;

use crate::config::GrpoConfig;
use crate::dataset::{Dataset, GenerationSampler, SamplerSpec};
use crate::loss::{EntropyControl, EntropyControlState, GrpoLoss};
use crate::rewards::RewardSet;
use crate::{Error, Result};

pub use batch::MicroBatch;
pub use callbacks::TrainerCallback;
pub use checkpoint::{CheckpointManager, TrainerState};
pub use control::{ControlRequest, RunState, RunStatus, SampleRecord, TrainerControl};
pub use dynamic_sampling::ScoredRound;
pub use memory_plan::MemoryPlan;
pub use metrics_log::{LogRecord, MetricsLog, Progress};
pub use optimizer::{TrainerOptimizer, build_optimizer, build_schedule};
pub use parallel::Parallel;
pub use resume_check::{RunShape, check_trainer_state};
pub use rollout::RolloutSample;
pub use rollout_buffer::RolloutBuffer;
pub use step::{optimize_step, optimize_step_in};

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
    prompt_truncation: rollout::PromptTruncation,
    entropy_control: EntropyControl,
    /// The step of the checkpoint this trainer resumed from, until
    /// [`Trainer::train`] has settled the metrics file with it.
    resumed_at: Option<usize>,
    control: Option<TrainerControl>,
    write_samples: bool,
    status: Option<RunStatus>,
    parallel: Option<Parallel>,
    tools: Option<crate::tools::Tools>,
    /// The next generation batch, when `overlap_generation` samples it
    /// ahead of its turn (or a checkpoint held it).
    ahead: overlap::AheadRollout,
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
        Self::build(config, model, tokenizer, dataset, rewards, 1)
    }

    /// [`Trainer::new`] followed by [`Trainer::with_group`], with the config
    /// validated for `group.size()` processes
    /// ([`GrpoConfig::validate_for_processes`]): only the global generation
    /// batch must hold whole prompt groups, so a group may straddle ranks
    /// (e.g. `num_generations = 4` with 2 completions per rank).
    pub fn new_in_group(
        config: GrpoConfig,
        model: Model,
        tokenizer: Tokenizer,
        dataset: Dataset,
        rewards: RewardSet,
        group: mlx_tensor::distributed::Group,
    ) -> Result<Self> {
        let processes = group.size();
        Self::build(config, model, tokenizer, dataset, rewards, processes)?.with_group(group)
    }

    fn build(
        config: GrpoConfig,
        model: Model,
        tokenizer: Tokenizer,
        dataset: Dataset,
        rewards: RewardSet,
        processes: usize,
    ) -> Result<Self> {
        config.validate_for_processes(processes)?;
        let positions = model.config().base().max_position_embeddings;
        config.check_fits_model(usize::try_from(positions).unwrap_or(0))?;
        mlx_lm::check_tokenizer_fits(&model, &tokenizer)?;
        if rewards.names().is_empty() {
            return Err(Error::InvalidConfig {
                message: "no reward functions: add at least one to the RewardSet".into(),
            });
        }
        if let Some(weights) = &config.reward_weights
            && weights.len() != rewards.names().len()
        {
            return Err(Error::InvalidConfig {
                message: format!(
                    "reward_weights has {} entries but there are {} reward functions",
                    weights.len(),
                    rewards.names().len()
                ),
            });
        }
        let mut spec = SamplerSpec::from_config(&config);
        spec.prompts_per_generation = global_prompts_per_generation(&config, processes)?;
        let sampler = GenerationSampler::new(dataset.len(), spec)?;
        let total_steps = if config.max_steps > 0 {
            config.max_steps as usize
        } else {
            config.total_optimizer_steps(dataset.len())
        };
        let optimizer = build_optimizer(&config, total_steps)?;
        let mut model = model;
        MemoryPlan::from_config(&config).prepare_model(&mut model);
        adapters::check_reference(&config, &model)?;
        // With adapters the reference is the base with them switched off.
        let ref_model = (config.beta != 0.0 && !adapters::has_adapters(&model)).then(|| {
            let mut r = model.clone();
            r.freeze();
            r
        });
        let state = TrainerState::start(config.seed, sampler.position());
        let checkpoints = CheckpointManager::open(&config.output_dir, config.save_total_limit)?;
        Ok(Trainer {
            loss: GrpoLoss::from_config(&config),
            prompt_truncation: rollout::PromptTruncation::new(config.max_prompt_length),
            entropy_control: EntropyControl::from_config(&config),
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
            resumed_at: None,
            control: None,
            write_samples: false,
            status: None,
            parallel: None,
            tools: None,
            ahead: overlap::AheadRollout::default(),
        })
    }

    /// Trains as one rank of `group` (data parallelism with TRL's semantics
    /// for `N` processes, see [`parallel`]): the sampler then draws global
    /// generation batches of `N × per_device_train_batch_size ×
    /// steps_per_generation` completions, of which this rank keeps its
    /// rows. Every rank must call this with the same config and dataset;
    /// a mismatch is an error on every rank (checked here with one
    /// collective). A group of one process changes nothing.
    pub fn with_group(mut self, group: mlx_tensor::distributed::Group) -> Result<Self> {
        let parallel = Parallel::new(group);
        let ranks = parallel.size();
        if ranks <= 1 {
            return Ok(self);
        }
        let config_json = self.config.to_json_pretty()?;
        let rows = self.dataset.len().to_le_bytes();
        let print = parallel::fingerprint(&[config_json.as_bytes(), &rows]);
        parallel.check_same("the config and the dataset length", print)?;
        if let Some(gbs) = self.config.generation_batch_size {
            return Err(Error::InvalidConfig {
                message: format!(
                    "generation_batch_size = {gbs} with {ranks} ranks: set steps_per_generation instead (each \
                     rank keeps per_device_train_batch_size x steps_per_generation completions)"
                ),
            });
        }
        let mut spec = SamplerSpec::from_config(&self.config);
        spec.prompts_per_generation = global_prompts_per_generation(&self.config, ranks)?;
        self.sampler = GenerationSampler::new(self.dataset.len(), spec)?;
        if self.config.max_steps <= 0 {
            let batches = self.dataset.len() / spec.prompts_per_generation.max(1);
            let micro = batches.saturating_mul(self.config.generate_every());
            let per_epoch = micro
                .div_ceil(self.config.gradient_accumulation_steps.max(1))
                .max(1);
            self.total_steps =
                (self.config.num_train_epochs.max(0.0) * per_epoch as f64).ceil() as usize;
            self.optimizer = build_optimizer(&self.config, self.total_steps)?;
        }
        self.state = TrainerState::start(self.config.seed, self.sampler.position());
        if parallel.rank() > 0 {
            self.show_progress = false;
        }
        self.parallel = Some(parallel);
        Ok(self)
    }

    /// Whether this process writes the run's files (rank 0, or the only
    /// process).
    pub fn is_main_process(&self) -> bool {
        self.parallel.as_ref().is_none_or(|p| p.rank() == 0)
    }

    /// The rollout buffer file of this rank in a checkpoint.
    fn rollout_buffer_file(&self, checkpoint: &Path) -> PathBuf {
        match &self.parallel {
            Some(p) if p.rank() > 0 => {
                checkpoint.join(format!("rollout_buffer.rank-{}.safetensors", p.rank()))
            }
            _ => checkpoint.join(checkpoint::ROLLOUT_BUFFER_FILE),
        }
    }

    /// The file of this rank's generation batch sampled ahead of its turn
    /// in a checkpoint.
    fn pending_rollout_file(&self, checkpoint: &Path) -> PathBuf {
        match &self.parallel {
            Some(p) if p.rank() > 0 => {
                checkpoint.join(format!("pending_rollout.rank-{}.json", p.rank()))
            }
            _ => checkpoint.join(overlap::PENDING_ROLLOUT_FILE),
        }
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

    /// Shows (default) or hides the progress bar. Hidden, the completions
    /// of `log_completions` are not printed either (they still go to
    /// `samples.jsonl`).
    pub fn with_progress(mut self, show: bool) -> Self {
        self.show_progress = show;
        self
    }

    /// Steers the run with `control` (pause, save now, stop) besides the
    /// control file in the output directory (see [`control`]).
    pub fn with_control(mut self, control: TrainerControl) -> Self {
        self.control = Some(control);
        self
    }

    /// Writes the scored completions of every generation batch to
    /// `samples.jsonl` (as `log_completions` does) and hands them to the
    /// callbacks' [`TrainerCallback::on_samples`].
    pub fn with_samples(mut self, write: bool) -> Self {
        self.write_samples = write;
        self
    }

    /// Offers `tools` to the model: prompts are rendered with their
    /// schemas and every completion runs as a multi-turn rollout
    /// ([`crate::tools::generate_rows_with_tools`]), its tool results
    /// masked out of the loss; empty tools change nothing.
    pub fn with_tools(mut self, tools: crate::tools::Tools) -> Self {
        self.tools = (!tools.is_empty()).then_some(tools);
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

    /// The optimizer (its state, step and schedule).
    pub fn optimizer(&self) -> &TrainerOptimizer {
        &self.optimizer
    }

    /// The reference model (when `beta != 0` and the model has no
    /// adapters; with adapters the reference is the base with them
    /// switched off, see [`adapters`]).
    pub fn ref_model(&self) -> Option<&Model> {
        self.ref_model.as_ref()
    }

    /// Writes the trained model with its adapters folded in (PEFT's
    /// `merge_and_unload`, mlx-lm's `fuse`) to `dir`, with the source
    /// directory's tokenizer files; a model without adapters is written as
    /// it is. Over a quantized base (QLoRA) the adapted layers are quantized
    /// again ([`adapters::MergedFormat::Requantized`]); see
    /// [`Trainer::save_merged_model_as`] for a dequantized model.
    pub fn save_merged_model(&self, dir: &Path) -> Result<()> {
        self.save_merged_model_as(dir, adapters::MergedFormat::default())
    }

    /// [`Trainer::save_merged_model`] in `format` (which matters only over
    /// a quantized base; see [`adapters::save_merged_model`]).
    pub fn save_merged_model_as(&self, dir: &Path, format: adapters::MergedFormat) -> Result<()> {
        let options = SaveOptions {
            source_dir: self.source_dir.clone(),
            ..Default::default()
        };
        adapters::save_merged_model(&self.model, dir, format, &options)
    }

    /// Everything besides weights, optimizer state and the rollout buffer
    /// that a checkpoint keeps.
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// The shape of this run that a resumed trainer state must agree with.
    pub fn run_shape(&self) -> RunShape {
        RunShape {
            seed: self.config.seed,
            total_steps: self.total_steps,
            batches_per_epoch: self.sampler.batches_per_epoch(),
            micro_steps_per_generation: micro_steps_per_generation(&self.config),
            micro_steps_per_step: self.config.gradient_accumulation_steps.max(1),
        }
    }

    /// Loads a checkpoint written by [`Trainer::save_checkpoint`]: weights
    /// (and the reference model's; the adapter factors when the model has
    /// adapters attached), optimizer state, sampler position,
    /// counters, logs and the unfinished generation batch. Training then
    /// continues bit for bit the trajectory of an uninterrupted run. The
    /// trainer state is checked against this run first
    /// ([`check_trainer_state`]).
    pub fn resume_from(&mut self, checkpoint: &Path) -> Result<()> {
        let mut state = checkpoint::read_trainer_state(checkpoint)?;
        let state_path = checkpoint.join(checkpoint::TRAINER_STATE_FILE);
        let shape = self.run_shape();
        check_trainer_state(&state, &state_path, &shape)?;
        if let Some((generations, _)) = shape.generations_after(state.global_step) {
            // Files written before the counter was kept.
            state.generations = generations
                .saturating_add(state.extra_generation_batches)
                .saturating_add(u64::from(state.pending_rollout));
        }
        let buffer = if state.buffered_micro_steps > 0 {
            Some(RolloutBuffer::load(
                &self.rollout_buffer_file(checkpoint),
                state.buffered_micro_steps,
            )?)
        } else {
            None
        };
        let ahead = if state.pending_rollout {
            let vocab = usize::try_from(self.model.config().base().vocab_size).unwrap_or(0);
            Some(overlap::PendingRollout::load(
                &self.pending_rollout_file(checkpoint),
                self.dataset.len(),
                vocab,
            )?)
        } else {
            None
        };
        let dtype = self.model.dtype();
        if adapters::has_adapters(&self.model) {
            adapters::restore_adapters(&mut self.model, checkpoint)?;
        } else {
            self.model = load_model(checkpoint.join(checkpoint::MODEL_DIR), Some(dtype))?;
            MemoryPlan::from_config(&self.config).prepare_model(&mut self.model);
        }
        let ref_dir = checkpoint.join(checkpoint::REF_MODEL_DIR);
        if self.ref_model.is_some() && ref_dir.is_dir() {
            let mut r = load_model(ref_dir, Some(dtype))?;
            r.freeze();
            self.ref_model = Some(r);
        }
        self.optimizer
            .load_for(checkpoint.join(checkpoint::OPTIMIZER_FILE), &self.model)?;
        if let Some(entropy) = EntropyControlState::read(checkpoint)? {
            self.entropy_control.restore(entropy);
        }
        // This run's spec (the global batch when data-parallel).
        self.sampler = GenerationSampler::resume(
            self.dataset.len(),
            self.sampler.spec(),
            state.sampler_position,
        )?;
        self.resumed_at = Some(state.global_step);
        self.state = state;
        self.buffer = buffer;
        self.ahead.restore(ahead)?;
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
        let history = self.state.log_history.clone();
        let main = self.is_main_process();
        let resumed_at = self.resumed_at.take();
        let mut log = match resumed_at {
            _ if !main => None,
            Some(step) => Some(MetricsLog::resume(&self.config.output_dir, history, step)?),
            None => Some(MetricsLog::open(&self.config.output_dir, history)?),
        };
        let progress = if self.show_progress {
            Progress::new(self.total_steps, self.state.global_step)
        } else {
            Progress::hidden()
        };
        let output_dir = self.config.output_dir.clone();
        let config_path = output_dir.join(control::CONFIG_FILE);
        let mut control = if main {
            checkpoint::write_durably(&config_path, self.config.to_json_pretty()?.as_bytes())?;
            Some(control::ControlPoller::start(
                self.control.clone(),
                &output_dir,
            )?)
        } else {
            None
        };
        if main {
            self.start_status();
        }
        self.set_status(RunState::Running)?;
        let mut last_checkpoint = None;
        while self.state.global_step < self.total_steps {
            if self.between_steps(&mut control, &mut last_checkpoint)? {
                progress.finish();
                let path = self.save_now(&mut last_checkpoint)?;
                if let Some(log) = &log {
                    metrics_log::plot_curves(log.history(), &output_dir.join("curves.png"))?;
                }
                self.set_status(RunState::Stopped)?;
                return Ok(TrainOutput {
                    global_step: self.state.global_step,
                    log_history: self.state.log_history.clone(),
                    last_checkpoint: Some(path),
                });
            }
            let metrics = self.train_step()?;
            progress.step(&metrics);
            self.state.pending_logs.push(metrics);
            let step = self.state.global_step;
            let logging = self.config.logging_steps.max(1);
            if step.is_multiple_of(logging) || step == self.total_steps {
                let record = LogRecord {
                    step,
                    metrics: average(&self.state.pending_logs),
                };
                self.state.pending_logs.clear();
                for cb in &mut self.callbacks {
                    cb.on_log(&record);
                }
                if let Some(log) = log.as_mut() {
                    log.append(record.clone())?;
                }
                self.state.log_history.push(record);
            }
            self.set_status(RunState::Running)?;
            let save_every = self.config.save_steps;
            if save_every > 0 && step.is_multiple_of(save_every) && step != self.total_steps {
                self.save_now(&mut last_checkpoint)?;
                self.set_status(RunState::Running)?;
                if let Some(log) = &log {
                    metrics_log::plot_curves(log.history(), &output_dir.join("curves.png"))?;
                }
            }
        }
        progress.finish();
        let path = self.save_now(&mut last_checkpoint)?;
        if let Some(log) = &log {
            metrics_log::plot_curves(log.history(), &output_dir.join("curves.png"))?;
        }
        self.set_status(RunState::Finished)?;
        Ok(TrainOutput {
            global_step: self.state.global_step,
            log_history: self.state.log_history.clone(),
            last_checkpoint: Some(path),
        })
    }

    /// Serves the control requests before a step: saves when asked, waits
    /// while paused. Returns whether the run is asked to stop.
    fn between_steps(
        &mut self,
        control: &mut Option<control::ControlPoller>,
        last_checkpoint: &mut Option<PathBuf>,
    ) -> Result<bool> {
        let mut paused = false;
        loop {
            let commands = self.poll_control(control)?;
            if commands.stop {
                return Ok(true);
            }
            if commands.save {
                self.save_now(last_checkpoint)?;
                self.set_status(if paused {
                    RunState::Paused
                } else {
                    RunState::Running
                })?;
            }
            if !commands.paused {
                if paused {
                    self.set_status(RunState::Running)?;
                }
                return Ok(false);
            }
            if !paused {
                paused = true;
                self.set_status(RunState::Paused)?;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Rank 0's control commands, on every rank (one collective per poll
    /// when data-parallel, so that all ranks stop, save and pause
    /// together).
    fn poll_control(
        &self,
        control: &mut Option<control::ControlPoller>,
    ) -> Result<control::Commands> {
        let mut commands = match control.as_mut() {
            Some(c) => c.poll()?,
            None => control::Commands::default(),
        };
        if let Some(p) = self.parallel.as_ref() {
            let flag = |b: bool| if b { 1.0 } else { 0.0 };
            let shared = p.broadcast(&[
                flag(commands.stop),
                flag(commands.save),
                flag(commands.paused),
            ])?;
            let on = |i: usize| shared.get(i).is_some_and(|&v| v > 0.5);
            commands.stop = on(0);
            commands.save = on(1);
            commands.paused = on(2);
        }
        Ok(commands)
    }

    /// Saves a checkpoint with the status showing it.
    fn save_now(&mut self, last_checkpoint: &mut Option<PathBuf>) -> Result<PathBuf> {
        self.set_status(RunState::Saving)?;
        let path = self.save_checkpoint()?;
        *last_checkpoint = Some(path.clone());
        if let Some(status) = self.status.as_mut() {
            status.last_checkpoint = Some(path.clone());
        }
        Ok(path)
    }

    /// The status a run starts with.
    fn start_status(&mut self) {
        let model = match &self.source_dir {
            Some(dir) => dir.display().to_string(),
            None => {
                let base = self.model.config().base().clone();
                format!(
                    "{} layers x {} hidden",
                    base.num_hidden_layers, base.hidden_size
                )
            }
        };
        let now = control::unix_now();
        self.status = Some(RunStatus {
            state: RunState::Running,
            step: self.state.global_step,
            total_steps: self.total_steps,
            start_step: self.state.global_step,
            start_num_tokens: self.state.num_tokens,
            model,
            num_parameters: self.model.num_parameters(),
            num_tokens: self.state.num_tokens,
            active_memory: mlx_tensor::memory::active_memory(),
            peak_memory: mlx_tensor::memory::peak_memory(),
            started_unix: now,
            updated_unix: now,
            last_checkpoint: None,
        });
    }

    /// Writes `status.json` with `state` and tells the callbacks.
    fn set_status(&mut self, state: RunState) -> Result<()> {
        let Some(status) = self.status.as_mut() else {
            return Ok(());
        };
        if self.parallel.as_ref().is_some_and(|p| p.rank() > 0) {
            return Ok(());
        }
        status.state = state;
        status.step = self.state.global_step;
        status.num_tokens = self.state.num_tokens;
        status.active_memory = mlx_tensor::memory::active_memory();
        status.peak_memory = mlx_tensor::memory::peak_memory();
        status.updated_unix = control::unix_now();
        status.write(&self.config.output_dir)?;
        for cb in &mut self.callbacks {
            cb.on_status(status);
        }
        Ok(())
    }

    /// Writes `output_dir/checkpoint-<step>` atomically: weights in the
    /// Hugging Face layout (the reference model's too) or, when the model
    /// has adapters attached, the adapters alone in PEFT's layout, optimizer state,
    /// trainer state, and the current generation batch when steps remain
    /// in it.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        // A batch being sampled ahead is waited for and kept.
        self.state.pending_rollout = self.ahead.settle()?.is_some();
        self.state.sampler_position = self.sampler.position();
        let buffer = self.buffer.as_ref().filter(|b| b.remaining > 0);
        self.state.buffered_micro_steps = buffer.map_or(0, |b| b.remaining);
        let step = self.state.global_step;
        if !self.is_main_process() {
            return self.save_rank_buffer(step);
        }
        let options = SaveOptions {
            source_dir: self.source_dir.clone(),
            ..Default::default()
        };
        let model = &self.model;
        let ref_model = &self.ref_model;
        let optimizer = &self.optimizer;
        let entropy = self.entropy_control.state();
        let adaptive = self.entropy_control.is_adaptive();
        // Settled above: this only reads it.
        let pending = self.ahead.settle()?;
        let path = self.checkpoints.save(step, &self.state, |dir| {
            if adapters::has_adapters(model) {
                adapters::save_adapter_checkpoint(model, dir)?;
            } else {
                save_model(model, dir.join(checkpoint::MODEL_DIR), &options)?;
            }
            if let Some(r) = ref_model {
                save_model(r, dir.join(checkpoint::REF_MODEL_DIR), &options)?;
            }
            optimizer.save(dir.join(checkpoint::OPTIMIZER_FILE))?;
            if adaptive {
                entropy.write(dir)?;
            }
            if let Some(b) = buffer {
                b.save(&dir.join(checkpoint::ROLLOUT_BUFFER_FILE))?;
            }
            if let Some(p) = pending {
                p.save(&dir.join(overlap::PENDING_ROLLOUT_FILE))?;
            }
            Ok(())
        })?;
        if let Some(p) = &self.parallel {
            // The other ranks add their rollout buffers once it exists.
            p.barrier()?;
            p.barrier()?;
        }
        for cb in &mut self.callbacks {
            cb.on_save(&path);
        }
        Ok(path)
    }

    /// A data-parallel rank other than 0 saving: waits for rank 0's
    /// checkpoint, then adds this rank's unfinished generation batch to it.
    fn save_rank_buffer(&mut self, step: usize) -> Result<PathBuf> {
        let path = self.checkpoints.path_for(step);
        let Some(p) = self.parallel.clone() else {
            return Err(Error::internal("a rank without a group"));
        };
        p.barrier()?;
        let file = self.rollout_buffer_file(&path);
        let written = match self.buffer.as_ref().filter(|b| b.remaining > 0) {
            Some(b) => b.save(&file),
            None => Ok(()),
        };
        let pending_file = self.pending_rollout_file(&path);
        // Settled by `save_checkpoint`: this only reads it.
        let written = written.and_then(|()| match self.ahead.settle()? {
            Some(p) => p.save(&pending_file),
            None => Ok(()),
        });
        p.barrier()?;
        written?;
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
                let buffer = self.generate()?;
                // Micro-steps the rest of the run takes beyond this buffer.
                let wanted = (self.total_steps - self.state.global_step)
                    .saturating_mul(accumulation)
                    .saturating_sub(micro.len());
                if self.config.overlap_generation && wanted > buffer.remaining {
                    self.start_next_rollout()?;
                }
                self.buffer = Some(buffer);
            }
            let Some(buffer) = self.buffer.as_mut() else {
                return Err(Error::internal("no rollout buffer"));
            };
            let index = buffer.next % buffer.micro_batches.len().max(1);
            micro.push(buffer.micro_batches[index].clone());
            buffer.next += 1;
            buffer.remaining -= 1;
            rollout_metrics = buffer.metrics.clone();
        }
        let rank = self.parallel.as_ref().map_or(0, Parallel::rank);
        let (seed, step) = (self.config.seed, self.state.global_step);
        adapters::set_adapter_mode(&mut self.model, true, seed, step, rank);
        let mut metrics = step::optimize_step_in(
            &mut self.model,
            &mut self.optimizer,
            &self.loss,
            &mut self.entropy_control,
            &self.config,
            &micro,
            self.parallel.as_ref(),
        )?;
        if let Some(p) = &self.parallel {
            p.average_metrics(&mut metrics)?;
        }
        self.state.global_step += 1;
        self.sync_reference()?;
        metrics.extend(rollout_metrics);
        metrics.insert("step_time".into(), started.elapsed().as_secs_f64());
        metrics.insert("num_tokens".into(), self.state.num_tokens);
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
}

impl Trainer {
    /// Writes the scored completions of a generation batch (the first
    /// `num_completions_to_print`, all when unset) to `samples.jsonl` and
    /// hands them to the callbacks.
    fn record_samples(
        &mut self,
        inputs: &[crate::rewards::RewardInput],
        matrix: &crate::rewards::RewardMatrix,
        advantages: &crate::advantages::Advantages,
    ) -> Result<()> {
        let n = self
            .config
            .num_completions_to_print
            .unwrap_or(inputs.len())
            .min(inputs.len());
        let step = self.state.global_step + 1;
        let records: Vec<SampleRecord> = inputs
            .iter()
            .take(n)
            .enumerate()
            .map(|(i, input)| SampleRecord {
                step,
                prompt: input.prompt.last_user_text().to_string(),
                text: input.completion.text.clone(),
                thinking: input.completion.thinking.clone(),
                tool_calls: input
                    .completion
                    .tool_calls
                    .iter()
                    .map(|c| c.raw.clone())
                    .collect(),
                answer: input.answer.clone(),
                rewards: matrix
                    .names()
                    .iter()
                    .enumerate()
                    .map(|(f, name)| {
                        let v = matrix.get(i, f).map_or(f64::NAN, f64::from);
                        (name.clone(), v)
                    })
                    .collect(),
                reward: advantages
                    .rewards
                    .get(i)
                    .map(|&r| f64::from(r))
                    .filter(|r| r.is_finite()),
                advantage: advantages.advantages.get(i).copied().unwrap_or(0.0),
                num_tokens: input.completion.num_tokens,
                truncated: input.completion.is_truncated(),
            })
            .collect();
        control::append_samples(&self.config.output_dir, &records)?;
        for cb in &mut self.callbacks {
            cb.on_samples(&records);
        }
        Ok(())
    }
}

/// Micro-steps one generation batch serves: its micro-batches (the
/// completions cut into parts as [`crate::dataset::GenerationBatch::micro_batches`]
/// cuts them) times `num_iterations`.
fn micro_steps_per_generation(config: &GrpoConfig) -> usize {
    // One process's rows of the generation batch.
    let completions = config.generation_batch_size();
    let size = (completions / config.steps_per_generation().max(1)).max(1);
    (completions / size).saturating_mul(config.num_iterations.max(1))
}

/// Prompts in a generation batch of `processes` data-parallel processes:
/// `processes × generation_batch_size() / num_generations`.
fn global_prompts_per_generation(config: &GrpoConfig, processes: usize) -> Result<usize> {
    let completions = config
        .generation_batch_size()
        .checked_mul(processes.max(1))
        .ok_or_else(|| Error::InvalidConfig {
            message: format!("generation_batch_size times {processes} processes overflows"),
        })?;
    Ok(completions / config.num_generations.max(1))
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
