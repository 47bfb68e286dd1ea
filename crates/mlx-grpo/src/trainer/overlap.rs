//! Generation overlapped with training (`overlap_generation`): one-step
//! off-policy GRPO.
//!
//! A rollout is cut in two: what the main thread decides (which prompts,
//! which rows, which keys: a `RoundPlan` and a `RolloutJob`) and the
//! sampling itself (`RolloutJob::generate`), which needs only a model and
//! owned inputs. The synchronous trainer runs the job in place; with
//! overlap on, the trainer starts the next generation batch's job on a
//! second thread (`AheadRollout::start`) with a snapshot of the weights
//! the current batch starts training from, trains, and collects the
//! samples when the buffer runs dry. The snapshot shares the weights'
//! buffers (MLX arrays are immutable handles; an update makes new ones), so
//! it costs no copy until the update replaces them. On the CPU the two
//! threads share the cores; on a GPU each thread has its own MLX stream,
//! so decoding and training kernels can run side by side.
//!
//! Rewards, advantages and the old, reference and rollout-correction
//! log-probabilities are computed on the main thread when the samples are
//! collected, in the same order as the synchronous trainer, so with a
//! frozen policy both give the same run bit for bit. A checkpoint saved
//! while a job runs waits for it and keeps its samples
//! ([`PENDING_ROLLOUT_FILE`]), so a resumed run trains on exactly the
//! samples the uninterrupted one would.

use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use mlx_lm::Tokenizer;
use mlx_lm::models::Model;
use serde::{Deserialize, Serialize};

use crate::config::GrpoConfig;
use crate::dataset::Row;
use crate::rewards::FinishReason;
use crate::tools::{ToolRollout, Tools};
use crate::trainer::checkpoint::write_durably;
use crate::trainer::{MemoryPlan, RolloutSample, adapters, rollout};
use crate::{Error, Result};

/// File of a checkpoint holding the samples of a generation batch that
/// was sampled (overlapped with training) but not yet trained on.
pub const PENDING_ROLLOUT_FILE: &str = "pending_rollout.json";

/// What the main thread decided for one generation batch, besides the job:
/// its place in the run and which rows of the samples are this rank's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RoundPlan {
    /// The run's generation counter for this batch (its sampling keys and
    /// its micro-batch shuffle derive from it).
    pub generation_index: u64,
    /// Optimizer micro-steps per generation batch of this draw.
    pub steps_per_generation: usize,
    /// This rank's rows of the global generation batch (the samples).
    pub mine: Range<usize>,
}

/// Everything sampling one generation batch needs besides the model, owned
/// so that it can run on another thread.
pub(crate) struct RolloutJob {
    pub tokenizer: Tokenizer,
    pub tools: Option<Tools>,
    /// The dataset rows of the drawn prompts, one per prompt slot.
    pub rows: Vec<Row>,
    /// The dataset index of each prompt slot.
    pub row_indices: Vec<usize>,
    /// Rendered prompts (empty for slots this rank does not sample).
    pub prompts: Vec<Vec<u32>>,
    pub config: GrpoConfig,
    /// The generation's seed (each row's keys derive from it and the
    /// row's index in the global batch).
    pub seed: u64,
    /// The rows of the global generation batch this rank samples.
    pub completions: Range<usize>,
}

impl RolloutJob {
    /// Samples the batch with `model` (already prepared for decoding: see
    /// [`prepare_for_rollout`]). Samples name their dataset rows.
    pub fn generate(&self, model: &Model) -> Result<Vec<RolloutSample>> {
        let slots: Vec<usize> = (0..self.rows.len()).collect();
        let mut samples = match &self.tools {
            Some(tools) => crate::tools::generate_rows_with_tools(
                model,
                &self.tokenizer,
                tools,
                &self.rows,
                &slots,
                &self.prompts,
                &self.config,
                self.seed,
                self.completions.clone(),
            )?,
            None => rollout::generate_rows(
                model,
                &self.tokenizer,
                &slots,
                &self.prompts,
                &self.config,
                self.seed,
                self.completions.clone(),
            )?,
        };
        for sample in &mut samples {
            sample.row_index = *self.row_indices.get(sample.row_index).ok_or_else(|| {
                Error::internal(format!("a sample of prompt slot {}", sample.row_index))
            })?;
        }
        Ok(samples)
    }
}

/// Sets `model` up for sampling: decoding's packed weights, adapters'
/// dropout off.
pub(crate) fn prepare_for_rollout(model: &mut Model, config: &GrpoConfig) -> Result<()> {
    MemoryPlan::from_config(config).before_rollout(model)?;
    adapters::set_adapter_mode(model, false, 0, 0, 0);
    Ok(())
}

/// The generation batches sampled ahead of their turn: at most one at a
/// time, sampled by one long-lived worker thread (MLX gives every thread
/// its own streams and keeps them for the process's life, so a thread per
/// batch would leave one behind per batch).
#[derive(Default)]
pub(crate) struct AheadRollout {
    worker: Option<RolloutWorker>,
    running: Option<RoundPlan>,
    ready: Option<PendingRollout>,
}

impl AheadRollout {
    /// Starts sampling `job` with `model`, a snapshot of the weights (it
    /// shares their buffers), on the worker thread.
    pub fn start(&mut self, plan: RoundPlan, job: RolloutJob, model: Model) -> Result<()> {
        if self.running.is_some() || self.ready.is_some() {
            return Err(Error::internal(
                "a generation batch is already sampled ahead",
            ));
        }
        let worker = match &mut self.worker {
            Some(w) => w,
            None => self.worker.insert(RolloutWorker::start()?),
        };
        worker.submit(job, model)?;
        self.running = Some(plan);
        Ok(())
    }

    /// Waits for the batch sampled ahead, if any, and keeps it.
    pub fn settle(&mut self) -> Result<Option<&PendingRollout>> {
        if let Some(plan) = self.running.take() {
            let worker = (self.worker.as_ref())
                .ok_or_else(|| Error::internal("a running rollout without a worker"))?;
            let samples = worker.collect()?;
            self.ready = Some(PendingRollout { plan, samples });
        }
        Ok(self.ready.as_ref())
    }

    /// The batch sampled ahead (waiting for it), if any.
    pub fn take(&mut self) -> Result<Option<PendingRollout>> {
        self.settle()?;
        Ok(self.ready.take())
    }

    /// Replaces what is sampled ahead with `pending` (read from a
    /// checkpoint); a running job is waited for and dropped.
    pub fn restore(&mut self, pending: Option<PendingRollout>) -> Result<()> {
        self.settle()?;
        self.ready = pending;
        Ok(())
    }
}

/// A thread that samples rollout jobs one at a time.
struct RolloutWorker {
    jobs: Option<mpsc::Sender<(RolloutJob, Model)>>,
    results: mpsc::Receiver<Result<Vec<RolloutSample>>>,
    thread: Option<JoinHandle<()>>,
}

impl RolloutWorker {
    fn start() -> Result<Self> {
        let (jobs, incoming) = mpsc::channel::<(RolloutJob, Model)>();
        let (done, results) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("grpo-rollout".into())
            .spawn(move || {
                for (job, mut model) in incoming {
                    let sampled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        prepare_for_rollout(&mut model, &job.config)?;
                        job.generate(&model)
                    }))
                    .unwrap_or_else(|payload| {
                        Err(Error::internal(format!(
                            "sampling panicked: {}",
                            crate::rewards::panic_message(payload.as_ref())
                        )))
                    });
                    // The snapshot goes before the result: the weights it
                    // held are free once the trainer has the samples.
                    drop(model);
                    if done.send(sampled).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the rollout thread: {e}")))?;
        Ok(RolloutWorker {
            jobs: Some(jobs),
            results,
            thread: Some(thread),
        })
    }

    fn submit(&self, job: RolloutJob, model: Model) -> Result<()> {
        (self.jobs.as_ref())
            .ok_or_else(|| Error::internal("the rollout thread is closed"))?
            .send((job, model))
            .map_err(|_| Error::internal("the rollout thread stopped"))
    }

    fn collect(&self) -> Result<Vec<RolloutSample>> {
        self.results
            .recv()
            .map_err(|_| Error::internal("the rollout thread stopped"))?
    }
}

impl Drop for RolloutWorker {
    fn drop(&mut self) {
        // Closing the queue ends the thread after its current job.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A sampled generation batch not yet trained on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PendingRollout {
    pub plan: RoundPlan,
    pub samples: Vec<RolloutSample>,
}

/// A sample in [`PENDING_ROLLOUT_FILE`]: log-probabilities as their bits,
/// so they read back exactly (infinities included).
#[derive(Serialize, Deserialize)]
struct SavedSample {
    row_index: usize,
    prompt_ids: Vec<u32>,
    completion_ids: Vec<u32>,
    sampling_logp_bits: Vec<u32>,
    finish_reason: FinishReason,
    tools: Option<ToolRollout>,
}

#[derive(Serialize, Deserialize)]
struct SavedRollout {
    plan: RoundPlan,
    samples: Vec<SavedSample>,
}

impl PendingRollout {
    /// Writes the samples to `path` (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let saved = SavedRollout {
            plan: self.plan.clone(),
            samples: self
                .samples
                .iter()
                .map(|s| SavedSample {
                    row_index: s.row_index,
                    prompt_ids: s.prompt_ids.clone(),
                    completion_ids: s.completion_ids.clone(),
                    sampling_logp_bits: s.sampling_logps.iter().map(|v| v.to_bits()).collect(),
                    finish_reason: s.finish_reason,
                    tools: s.tools.clone(),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&saved).map_err(|e| Error::InvalidConfig {
            message: format!("{}: {e}", path.display()),
        })?;
        write_durably(path, &json)
    }

    /// Reads what [`PendingRollout::save`] wrote, checking that each
    /// sample's log-probabilities and tool mask match its completion, that
    /// its row exists in a dataset of `dataset_rows` rows and that its
    /// token ids are below `vocab_size`.
    pub fn load(path: &Path, dataset_rows: usize, vocab_size: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let saved: SavedRollout = serde_json::from_slice(&bytes)
            .map_err(|e| Error::checkpoint(path, "samples", e.to_string()))?;
        if saved.samples.len() != saved.plan.mine.len() {
            return Err(Error::checkpoint(
                path,
                "samples",
                format!(
                    "{} samples for the {} rows {:?} of this rank",
                    saved.samples.len(),
                    saved.plan.mine.len(),
                    saved.plan.mine
                ),
            ));
        }
        let mut samples = Vec::with_capacity(saved.samples.len());
        for (i, s) in saved.samples.into_iter().enumerate() {
            if s.sampling_logp_bits.len() != s.completion_ids.len() {
                return Err(Error::checkpoint(
                    path,
                    "samples",
                    format!(
                        "sample {i} has {} log-probabilities for {} completion tokens",
                        s.sampling_logp_bits.len(),
                        s.completion_ids.len()
                    ),
                ));
            }
            if s.row_index >= dataset_rows {
                return Err(Error::checkpoint(
                    path,
                    "samples",
                    format!(
                        "sample {i} refers to dataset row {} of {dataset_rows}",
                        s.row_index
                    ),
                ));
            }
            if let Some(&id) = (s.prompt_ids.iter().chain(&s.completion_ids))
                .find(|&&id| usize::try_from(id).map_or(true, |id| id >= vocab_size))
            {
                return Err(Error::checkpoint(
                    path,
                    "samples",
                    format!("sample {i} has token id {id}, outside the vocabulary of {vocab_size}"),
                ));
            }
            if let Some(t) = &s.tools
                && t.sampled.len() != s.completion_ids.len()
            {
                return Err(Error::checkpoint(
                    path,
                    "samples",
                    format!(
                        "sample {i} has a tool mask of {} for {} completion tokens",
                        t.sampled.len(),
                        s.completion_ids.len()
                    ),
                ));
            }
            samples.push(RolloutSample {
                row_index: s.row_index,
                prompt_ids: s.prompt_ids,
                completion_ids: s.completion_ids,
                sampling_logps: s
                    .sampling_logp_bits
                    .into_iter()
                    .map(f32::from_bits)
                    .collect(),
                finish_reason: s.finish_reason,
                tools: s.tools,
            });
        }
        Ok(PendingRollout {
            plan: saved.plan,
            samples,
        })
    }
}
