//! Checkpoint directories that are never half-written.
//!
//! A checkpoint is written into a temporary directory beside its final
//! place and renamed into `output_dir/checkpoint-<step>` only when every file
//! is complete, so a crash or kill during a save leaves the previous
//! checkpoint untouched and loadable. `trainer_state.json` is written last
//! and marks a checkpoint as complete.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::SamplerPosition;
use crate::trainer::metrics_log::LogRecord;
use crate::{Error, Result};

/// File name of the trainer state inside a checkpoint.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
/// File name of the optimizer state inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Folder of the model weights (Hugging Face layout) inside a checkpoint.
pub const MODEL_DIR: &str = "model";

/// Everything besides weights and optimizer moments that resuming needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps taken.
    pub global_step: usize,
    /// Where the prompt sampler stands.
    pub sampler_position: SamplerPosition,
    /// Seed of the run (random keys are derived from it and the step).
    pub seed: u64,
    /// Every logged metrics record so far.
    pub log_history: Vec<LogRecord>,
    /// Steps since the reference model was last synchronised.
    pub ref_sync_counter: usize,
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

    /// Writes a checkpoint: `write` fills a fresh temporary directory; then
    /// the trainer state is written, the directory renamed into place, and
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
            .join(format!(".tmp-checkpoint-{step}-{}", std::process::id()));
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

        let final_path = self.path_for(step);
        if final_path.exists() {
            // Re-saving a step: move the old one aside first so that some
            // complete copy exists at every moment.
            let trash = self
                .output_dir
                .join(format!(".old-checkpoint-{step}-{}", std::process::id()));
            fs::rename(&final_path, &trash).map_err(|e| Error::io(&final_path, e))?;
            fs::rename(&tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
            let _ = fs::remove_dir_all(&trash);
        } else {
            fs::rename(&tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
        }
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
            {
                if entry.path().join(TRAINER_STATE_FILE).is_file() {
                    found.push((step, entry.path()));
                }
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

/// Reads the trainer state of a checkpoint directory.
pub fn read_trainer_state(checkpoint: &Path) -> Result<TrainerState> {
    let path = checkpoint.join(TRAINER_STATE_FILE);
    let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::io(&path, std::io::Error::other(e)))
}
