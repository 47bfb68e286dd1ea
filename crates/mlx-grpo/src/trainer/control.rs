//! Steering a run between optimizer steps, and the files a watcher reads.
//!
//! A run is steered by a [`TrainerControl`] handle shared with the trainer
//! (same process, any thread) or by the control file `control.json` in the
//! output directory (another process: `{"paused": bool, "save": n, "stop":
//! bool}`). Between steps the trainer merges both: while paused it waits;
//! each increase of the `save` counter writes a checkpoint now; `stop`
//! writes a checkpoint and returns from [`super::Trainer::train`].
//!
//! For watchers the trainer keeps `status.json` (state, step, totals),
//! `samples.jsonl` (scored completions, when enabled) and
//! `grpo_config.json` (the run's configuration) beside `metrics.jsonl`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The control file another process writes to steer a run.
pub const CONTROL_FILE: &str = "control.json";
/// The run's state as the trainer last wrote it.
pub const STATUS_FILE: &str = "status.json";
/// Scored completions, one JSON object a line.
pub const SAMPLES_FILE: &str = "samples.jsonl";
/// The run's configuration (TRL's names).
pub const CONFIG_FILE: &str = "grpo_config.json";

/// What the control file (and a [`TrainerControl`]) asks of the trainer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlRequest {
    /// Wait between steps while true.
    pub paused: bool,
    /// A counter: each increase asks for one checkpoint now.
    pub save: u64,
    /// Write a checkpoint and end the run.
    pub stop: bool,
}

impl ControlRequest {
    /// Reads a control file; a missing file asks for nothing.
    pub fn read(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_str(&text).map_err(|e| Error::InvalidConfig {
            message: format!(
                "{}: not a control request ({{\"paused\", \"save\", \"stop\"}}): {e}",
                path.display()
            ),
        })
    }

    /// Writes a control file atomically (a temporary file renamed over it),
    /// so the trainer never reads half of it.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text =
            serde_json::to_string(self).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        write_atomically(path, text.as_bytes())
    }
}

#[derive(Debug, Default)]
struct Shared {
    paused: AtomicBool,
    save: AtomicU64,
    stop: AtomicBool,
}

/// A handle that steers a trainer from another thread: clone it, give one
/// clone to [`super::Trainer::with_control`], keep the other.
#[derive(Debug, Clone, Default)]
pub struct TrainerControl {
    shared: Arc<Shared>,
}

impl TrainerControl {
    /// A handle that asks for nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pauses the run before its next step.
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
    }

    /// Lets a paused run go on.
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Whether a pause is asked for.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::SeqCst)
    }

    /// Asks for a checkpoint before the next step (also while paused).
    pub fn request_save(&self) {
        self.shared.save.fetch_add(1, Ordering::SeqCst);
    }

    /// Asks the run to write a checkpoint and return before its next step.
    pub fn request_stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }

    /// The request as the control file would hold it.
    pub fn request(&self) -> ControlRequest {
        ControlRequest {
            paused: self.shared.paused.load(Ordering::SeqCst),
            save: self.shared.save.load(Ordering::SeqCst),
            stop: self.shared.stop.load(Ordering::SeqCst),
        }
    }
}

/// What the trainer does at a point between steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Commands {
    /// Wait.
    pub paused: bool,
    /// Write a checkpoint now.
    pub save: bool,
    /// Write a checkpoint and return.
    pub stop: bool,
}

/// The trainer's side: merges a [`TrainerControl`] and the control file,
/// remembering which save requests it has served.
#[derive(Debug)]
pub struct ControlPoller {
    handle: Option<TrainerControl>,
    file: PathBuf,
    served_handle_saves: u64,
    served_file_saves: u64,
}

impl ControlPoller {
    /// A poller for a run writing into `output_dir`. A control file left by
    /// an earlier run is replaced by one that asks for nothing.
    pub fn start(handle: Option<TrainerControl>, output_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(output_dir).map_err(|e| Error::io(output_dir, e))?;
        let file = output_dir.join(CONTROL_FILE);
        ControlRequest::default().write(&file)?;
        let served_handle_saves = handle.as_ref().map_or(0, |h| h.request().save);
        Ok(Self {
            handle,
            file,
            served_handle_saves,
            served_file_saves: 0,
        })
    }

    /// The control file's path.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// What is asked now; a save request counts as served once returned.
    pub fn poll(&mut self) -> Result<Commands> {
        let from_file = ControlRequest::read(&self.file)?;
        let from_handle = self
            .handle
            .as_ref()
            .map(TrainerControl::request)
            .unwrap_or_default();
        let save =
            from_file.save > self.served_file_saves || from_handle.save > self.served_handle_saves;
        self.served_file_saves = self.served_file_saves.max(from_file.save);
        self.served_handle_saves = self.served_handle_saves.max(from_handle.save);
        Ok(Commands {
            paused: from_file.paused || from_handle.paused,
            save,
            stop: from_file.stop || from_handle.stop,
        })
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Taking steps.
    Running,
    /// Waiting between steps.
    Paused,
    /// Writing a checkpoint.
    Saving,
    /// Stopped on request, after saving.
    Stopped,
    /// Every step done.
    Finished,
}

impl RunState {
    /// The state's name as written in `status.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Saving => "saving",
            RunState::Stopped => "stopped",
            RunState::Finished => "finished",
        }
    }
}

/// The contents of `status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    /// Where the run is.
    pub state: RunState,
    /// Optimizer steps taken.
    pub step: usize,
    /// Optimizer steps the run will take.
    pub total_steps: usize,
    /// The step this run started (or resumed) at.
    pub start_step: usize,
    /// Tokens processed before this run started (a resumed run's).
    pub start_num_tokens: f64,
    /// The model: its source directory, or its type.
    pub model: String,
    /// Trainable and frozen parameters of the model.
    pub num_parameters: usize,
    /// Prompt and completion tokens processed so far.
    pub num_tokens: f64,
    /// MLX's active memory when this status was written (bytes).
    pub active_memory: usize,
    /// MLX's peak memory so far (bytes).
    pub peak_memory: usize,
    /// When training started (seconds since the Unix epoch).
    pub started_unix: f64,
    /// When this status was written (seconds since the Unix epoch).
    pub updated_unix: f64,
    /// The last checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
}

impl RunStatus {
    /// Writes `dir/status.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATUS_FILE);
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
        write_atomically(&path, text.as_bytes())
    }

    /// Reads `dir/status.json` (`None` when the run has not written one).
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(STATUS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::io(&path, std::io::Error::other(e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

/// Seconds since the Unix epoch (0 when the clock is before it).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One scored completion, as `samples.jsonl` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// The optimizer step that trains on this completion (1-based).
    pub step: usize,
    /// The prompt's last user message (or its text).
    pub prompt: String,
    /// The answer text, without thinking and tool-call markup.
    pub text: String,
    /// The thinking block's content, if any.
    pub thinking: Option<String>,
    /// The tool calls' text as generated.
    pub tool_calls: Vec<String>,
    /// The reference answer, if the row has one.
    pub answer: Option<String>,
    /// Each reward function's score (NaN when it did not score this one).
    #[serde(with = "super::metric_serde::map")]
    pub rewards: BTreeMap<String, f64>,
    /// The weighted reward sum (`None` when no function scored it).
    pub reward: Option<f64>,
    /// The completion's advantage.
    pub advantage: f32,
    /// Generated tokens.
    pub num_tokens: usize,
    /// Whether generation hit `max_completion_length`.
    pub truncated: bool,
}

/// Appends records to `dir/samples.jsonl`.
pub fn append_samples(dir: &Path, records: &[SampleRecord]) -> Result<()> {
    let path = dir.join(SAMPLES_FILE);
    let mut text = String::new();
    for record in records {
        let line = serde_json::to_string(record)
            .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
        text.push_str(&line);
        text.push('\n');
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io(&path, e))?;
    file.flush().map_err(|e| Error::io(&path, e))
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over
/// `path` (atomic for readers; not flushed to disk).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed when the returned guard is dropped.
    fn scratch(name: &str) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(&format!("mlx-grpo-control-{name}-"))
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))
    }

    #[test]
    fn each_save_request_is_served_once() -> Result<()> {
        let tmp = scratch("once")?;
        let dir = tmp.path();
        let handle = TrainerControl::new();
        let mut poller = ControlPoller::start(Some(handle.clone()), dir)?;
        assert_eq!(poller.poll()?, Commands::default());
        handle.request_save();
        assert!(poller.poll()?.save);
        assert!(!poller.poll()?.save);
        let file = poller.file().to_path_buf();
        ControlRequest {
            save: 1,
            ..Default::default()
        }
        .write(&file)?;
        assert!(poller.poll()?.save);
        assert!(!poller.poll()?.save);
        ControlRequest {
            paused: true,
            save: 1,
            stop: false,
        }
        .write(&file)?;
        assert_eq!(
            poller.poll()?,
            Commands {
                paused: true,
                save: false,
                stop: false
            }
        );
        handle.request_stop();
        assert!(poller.poll()?.stop);
        Ok(())
    }

    #[test]
    fn a_stale_control_file_is_reset_and_a_bad_one_named() -> Result<()> {
        let tmp = scratch("stale")?;
        let dir = tmp.path();
        let file = dir.join(CONTROL_FILE);
        ControlRequest {
            paused: true,
            save: 9,
            stop: true,
        }
        .write(&file)?;
        let mut poller = ControlPoller::start(None, dir)?;
        assert_eq!(poller.poll()?, Commands::default());
        std::fs::write(&file, "{\"pause\": true}").map_err(|e| Error::io(&file, e))?;
        let err = poller
            .poll()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(CONTROL_FILE) && err.contains("pause"), "{err}");
        Ok(())
    }
}
