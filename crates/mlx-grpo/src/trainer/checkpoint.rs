//! Checkpoint directories that are never half-written.
//!
//! A checkpoint is written into a temporary directory beside its final
//! place and renamed into `output_dir/checkpoint-<step>` only when every file
//! is complete, so a crash or kill during a save leaves the previous
//! checkpoint untouched and loadable. `trainer_state.json` is written last
//! and marks a checkpoint as complete.
//!
//! The weights are the model in Hugging Face's layout under [`MODEL_DIR`];
//! for a model with LoRA adapters attached, the adapters alone in PEFT's
//! layout at the top of the checkpoint (`adapter_config.json`,
//! `adapter_model.safetensors`, as TRL's checkpoints of PEFT models), so
//! that the directory loads as an adapter directory too.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::SamplerPosition;
use crate::trainer::metric_serde;
use crate::trainer::metrics_log::LogRecord;
use crate::{Error, Result};

/// File name of the trainer state inside a checkpoint.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
/// File name of the optimizer state inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Folder of the model weights (Hugging Face layout) inside a checkpoint.
pub const MODEL_DIR: &str = "model";
/// Folder of the reference model's weights inside a checkpoint.
pub const REF_MODEL_DIR: &str = "ref_model";
/// File of the rollout buffer inside a checkpoint saved in the middle of a
/// generation batch.
pub const ROLLOUT_BUFFER_FILE: &str = "rollout_buffer.safetensors";
/// Prefix of the directory a checkpoint is written into before its rename.
const TMP_PREFIX: &str = ".tmp-checkpoint-";
/// Prefix of a checkpoint moved aside while the same step is saved again.
const OLD_PREFIX: &str = ".old-checkpoint-";

/// Everything besides weights, optimizer moments and the rollout buffer
/// that resuming needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps taken.
    pub global_step: usize,
    /// Where the prompt sampler stands.
    pub sampler_position: SamplerPosition,
    /// Seed of the run (random keys are derived from it and the generation
    /// counter).
    pub seed: u64,
    /// Every logged metrics record so far.
    pub log_history: Vec<LogRecord>,
    /// Steps since the reference model was last synchronised.
    pub ref_sync_counter: usize,
    /// Generation batches sampled so far: the stream of the next one's
    /// sampling keys (0 in files written before it was kept; resuming then
    /// derives it from the sampler position).
    #[serde(default)]
    pub generations: u64,
    /// Prompt and completion tokens of every generation so far (TRL's
    /// `num_tokens`).
    #[serde(default, with = "metric_serde::value")]
    pub num_tokens: f64,
    /// Metrics of the steps since the last logged record (with
    /// `logging_steps > 1`), averaged into the next record.
    #[serde(default, with = "metric_serde::maps")]
    pub pending_logs: Vec<BTreeMap<String, f64>>,
    /// Micro-steps the current generation batch still serves. When not 0 the
    /// batch itself is saved beside this file ([`ROLLOUT_BUFFER_FILE`]),
    /// because it was generated and scored by weights that later updates
    /// replaced.
    #[serde(default)]
    pub buffered_micro_steps: usize,
    /// Generation batches that dynamic sampling drew beyond one per
    /// generation (its extra rounds): the sampler position and
    /// [`TrainerState::generations`] are ahead of what the steps imply by
    /// this many.
    #[serde(default)]
    pub extra_generation_batches: u64,
    /// Whether the next generation batch was already sampled (generation
    /// overlapped with training): its samples are saved beside this file
    /// ([`crate::trainer::overlap::PENDING_ROLLOUT_FILE`]), and the sampler
    /// position and [`TrainerState::generations`] count it.
    #[serde(default)]
    pub pending_rollout: bool,
}

impl TrainerState {
    /// The state of a run before its first step.
    pub fn start(seed: u64, sampler_position: SamplerPosition) -> Self {
        TrainerState {
            global_step: 0,
            sampler_position,
            seed,
            log_history: Vec::new(),
            ref_sync_counter: 0,
            generations: 0,
            num_tokens: 0.0,
            pending_logs: Vec::new(),
            buffered_micro_steps: 0,
            extra_generation_batches: 0,
            pending_rollout: false,
        }
    }
}

/// Writes and finds checkpoints under an output directory.
#[derive(Debug, Clone)]
pub struct CheckpointManager {
    output_dir: PathBuf,
    save_total_limit: Option<usize>,
}

impl CheckpointManager {
    /// Manages `output_dir/checkpoint-*`, keeping at most `save_total_limit` of them.
    pub fn new(output_dir: impl Into<PathBuf>, save_total_limit: Option<usize>) -> Self {
        CheckpointManager {
            output_dir: output_dir.into(),
            save_total_limit,
        }
    }

    /// The directory of the checkpoint of `step`.
    pub fn path_for(&self, step: usize) -> PathBuf {
        self.output_dir.join(format!("checkpoint-{step}"))
    }

    /// Like [`CheckpointManager::new`], and first clears what an
    /// interrupted save left in `output_dir`: temporary directories of saves
    /// that never completed are removed, and a complete checkpoint that was
    /// moved aside to be replaced is put back when its replacement is
    /// missing (else removed). One run at a time may use an output
    /// directory.
    pub fn open(output_dir: impl Into<PathBuf>, save_total_limit: Option<usize>) -> Result<Self> {
        let manager = Self::new(output_dir, save_total_limit);
        manager.clear_interrupted_saves()?;
        Ok(manager)
    }

    /// Removes `.tmp-checkpoint-*` directories and settles
    /// `.old-checkpoint-<step>-*` ones (see [`CheckpointManager::open`]).
    /// Returns the paths removed.
    pub fn clear_interrupted_saves(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let entries = match fs::read_dir(&self.output_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(Error::io(&self.output_dir, e)),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let path = self.output_dir.join(&name);
            if name.starts_with(TMP_PREFIX) {
                fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
                removed.push(path);
            } else if let Some(rest) = name.strip_prefix(OLD_PREFIX) {
                let step = rest.split('-').next().and_then(|s| s.parse::<usize>().ok());
                let Some(step) = step else { continue };
                let final_path = self.path_for(step);
                let replaced = final_path.join(TRAINER_STATE_FILE).is_file();
                if !replaced && path.join(TRAINER_STATE_FILE).is_file() {
                    if final_path.exists() {
                        fs::remove_dir_all(&final_path).map_err(|e| Error::io(&final_path, e))?;
                    }
                    fs::rename(&path, &final_path).map_err(|e| Error::io(&final_path, e))?;
                    sync_dir(&self.output_dir)?;
                } else {
                    fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
                    removed.push(path);
                }
            }
        }
        Ok(removed)
    }

    /// Writes a checkpoint: `write` fills a fresh temporary directory; then
    /// the trainer state is written, every file and directory is flushed to
    /// disk, the directory renamed into place (and the rename flushed), and
    /// old checkpoints pruned. Returns the final path.
    pub fn save(
        &self,
        step: usize,
        state: &TrainerState,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        fs::create_dir_all(&self.output_dir).map_err(|e| Error::io(&self.output_dir, e))?;
        let tmp = self
            .output_dir
            .join(format!("{TMP_PREFIX}{step}-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        if let Err(e) = write(&tmp) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let state_json = serde_json::to_string_pretty(state)
            .map_err(|e| Error::io(&tmp, std::io::Error::other(e)))?;
        let state_path = tmp.join(TRAINER_STATE_FILE);
        fs::write(&state_path, state_json).map_err(|e| Error::io(&state_path, e))?;
        sync_tree(&tmp)?;

        let final_path = self.path_for(step);
        if final_path.exists() {
            // Re-saving a step: move the old one aside first so that some
            // complete copy exists at every moment.
            let trash = self
                .output_dir
                .join(format!("{OLD_PREFIX}{step}-{}", std::process::id()));
            fs::rename(&final_path, &trash).map_err(|e| Error::io(&final_path, e))?;
            fs::rename(&tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
            sync_dir(&self.output_dir)?;
            let _ = fs::remove_dir_all(&trash);
        } else {
            fs::rename(&tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
        }
        sync_dir(&self.output_dir)?;
        self.prune()?;
        Ok(final_path)
    }

    /// Complete checkpoints (those with a trainer state), oldest first.
    pub fn list(&self) -> Result<Vec<(usize, PathBuf)>> {
        let mut found = Vec::new();
        let entries = match fs::read_dir(&self.output_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(Error::io(&self.output_dir, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(step) = name
                .strip_prefix("checkpoint-")
                .and_then(|s| s.parse::<usize>().ok())
                && entry.path().join(TRAINER_STATE_FILE).is_file()
            {
                found.push((step, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// The newest complete checkpoint, if any.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        Ok(self.list()?.pop().map(|(_, p)| p))
    }

    fn prune(&self) -> Result<()> {
        let Some(limit) = self.save_total_limit else {
            return Ok(());
        };
        let all = self.list()?;
        let excess = all.len().saturating_sub(limit.max(1));
        for (_, path) in all.into_iter().take(excess) {
            fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }
}

/// Reads the trainer state of a checkpoint directory (its values are
/// checked against a run by [`super::resume_check`]).
pub fn read_trainer_state(checkpoint: &Path) -> Result<TrainerState> {
    let path = checkpoint.join(TRAINER_STATE_FILE);
    let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::checkpoint(&path, "(json)", e.to_string()))
}

/// Writes `bytes` to `path` durably and atomically: a temporary file beside
/// it is written and flushed to disk, renamed over `path`, and the rename
/// flushed.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    {
        let mut file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        std::io::Write::write_all(&mut file, bytes).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Flushes every file under `dir`, then every directory (deepest first).
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&path, e))?;
        }
    }
    sync_dir(dir)
}

/// Flushes a directory's entries (names created or renamed in it) to disk.
/// Only Unix systems can open a directory for this; elsewhere it does nothing.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
