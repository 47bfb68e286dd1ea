//! Steering a run from the UI: through the trainer's shared handle (same
//! process) or its control file (another process).

use std::path::{Path, PathBuf};

use mlx_grpo::trainer::control::CONTROL_FILE;
use mlx_grpo::trainer::{ControlRequest, TrainerControl};

use crate::Result;

/// What the UI's keys ask of a run.
pub trait Controller {
    /// Pauses the run before its next step.
    fn pause(&mut self) -> Result<()>;
    /// Lets a paused run go on.
    fn resume(&mut self) -> Result<()>;
    /// Asks for a checkpoint now.
    fn save(&mut self) -> Result<()>;
    /// Asks the run to save and end.
    fn stop(&mut self) -> Result<()>;
    /// Whether a pause is asked for.
    fn is_paused(&self) -> bool;
}

/// Steers a trainer of this process through its [`TrainerControl`].
#[derive(Debug, Clone)]
pub struct HandleController {
    control: TrainerControl,
}

impl HandleController {
    /// A controller for the trainer holding a clone of `control`.
    pub fn new(control: TrainerControl) -> Self {
        Self { control }
    }
}

impl Controller for HandleController {
    fn pause(&mut self) -> Result<()> {
        self.control.pause();
        Ok(())
    }

    fn resume(&mut self) -> Result<()> {
        self.control.resume();
        Ok(())
    }

    fn save(&mut self) -> Result<()> {
        self.control.request_save();
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.control.request_stop();
        Ok(())
    }

    fn is_paused(&self) -> bool {
        self.control.is_paused()
    }
}

/// Steers a run of another process by rewriting its `control.json`.
#[derive(Debug, Clone)]
pub struct FileController {
    path: PathBuf,
    paused: bool,
}

impl FileController {
    /// A controller for the run writing into `run_dir` (paused if its
    /// control file says so).
    pub fn new(run_dir: &Path) -> Self {
        let path = run_dir.join(CONTROL_FILE);
        let paused = ControlRequest::read(&path).is_ok_and(|r| r.paused);
        Self { path, paused }
    }

    fn update(&mut self, change: impl FnOnce(&mut ControlRequest)) -> Result<()> {
        let mut request = ControlRequest::read(&self.path)?;
        change(&mut request);
        request.write(&self.path)?;
        self.paused = request.paused;
        Ok(())
    }
}

impl Controller for FileController {
    fn pause(&mut self) -> Result<()> {
        self.update(|r| r.paused = true)
    }

    fn resume(&mut self) -> Result<()> {
        self.update(|r| r.paused = false)
    }

    fn save(&mut self) -> Result<()> {
        self.update(|r| r.save = r.save.saturating_add(1))
    }

    fn stop(&mut self) -> Result<()> {
        self.update(|r| r.stop = true)
    }

    fn is_paused(&self) -> bool {
        self.paused
    }
}
