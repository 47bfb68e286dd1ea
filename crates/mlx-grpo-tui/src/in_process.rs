//! Training on its own thread with the UI on the calling one.
//!
//! MLX arrays are not `Sync`, so the model, the trainer and everything
//! that touches them stay on the training thread; the UI gets plain data
//! through a channel ([`ChannelCallback`]) and steers the trainer through a
//! [`TrainerControl`].

use std::io::IsTerminal;
use std::sync::mpsc::{self, Sender};

use mlx_grpo::trainer::{Trainer, TrainerControl};

use crate::app::{App, Mode};
use crate::controls::HandleController;
use crate::event::{ChannelCallback, RunEvent};
use crate::{Error, Result, terminal};

/// What the training closure gets: attach it to the trainer, and send
/// lines to the UI's logs instead of printing them.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    ui: Option<(TrainerControl, Sender<RunEvent>)>,
}

impl Hooks {
    /// Hooks for a run without a UI (plain progress bar, printed lines).
    pub fn plain() -> Self {
        Self::default()
    }

    /// Whether a UI is attached.
    pub fn has_ui(&self) -> bool {
        self.ui.is_some()
    }

    /// Connects `trainer` to the UI: its control handle, a callback sending
    /// logs, samples and status, samples written, and no progress bar.
    /// Without a UI the trainer is returned as it is.
    pub fn attach(&self, trainer: Trainer) -> Trainer {
        let Some((control, sender)) = &self.ui else {
            return trainer;
        };
        match trainer.config().to_json_pretty() {
            Ok(text) => self.send(RunEvent::Config(text)),
            Err(e) => self.say(format!("config: {e}")),
        }
        trainer
            .with_control(control.clone())
            .with_callback(ChannelCallback::new(sender.clone()))
            .with_samples(true)
            .with_progress(false)
    }

    /// A line for the user: into the UI's logs, or printed without a UI.
    pub fn say(&self, line: impl Into<String>) {
        let line = line.into();
        if self.ui.is_some() {
            self.send(RunEvent::Message(line));
        } else {
            println!("{line}");
        }
    }

    fn send(&self, event: RunEvent) {
        if let Some((_, sender)) = &self.ui {
            // A UI that has gone away leaves the run to finish on its own.
            let _ = sender.send(event);
        }
    }
}

/// Runs `work` (which builds and trains a [`Trainer`], attached with
/// [`Hooks::attach`]) on its own thread and the UI on this one, until the
/// user leaves after the run ended or asks it to stop (it then saves and
/// ends first). When stdout is not a terminal, `work` runs here with
/// [`Hooks::plain`] and the trainer's progress bar. The outer error is the
/// UI's; the inner result is `work`'s.
pub fn run_in_terminal<T, E, F>(work: F) -> Result<std::result::Result<T, E>>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
    F: FnOnce(Hooks) -> std::result::Result<T, E> + Send + 'static,
{
    if !std::io::stdout().is_terminal() {
        eprintln!("stdout is not a terminal: training with the plain progress bar");
        return Ok(work(Hooks::plain()));
    }
    let (sender, receiver) = mpsc::channel();
    let control = TrainerControl::new();
    let hooks = Hooks {
        ui: Some((control.clone(), sender.clone())),
    };
    let worker = std::thread::Builder::new()
        .name("trainer".into())
        .spawn(move || {
            let result = work(hooks);
            let outcome = result.as_ref().err().map(ToString::to_string);
            let _ = sender.send(RunEvent::Finished(outcome));
            result
        })
        .map_err(Error::Terminal)?;
    let mut app = App::new(
        Box::new(HandleController::new(control.clone())),
        Mode::InProcess,
    );
    let ui = terminal::run(&mut app, || Ok(receiver.try_iter().collect()));
    if app.view.finished.is_none() {
        // Left by an error of the UI: the run still stops cleanly.
        control.resume();
        control.request_stop();
    }
    let result = worker.join().map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Error::WorkerPanicked(message)
    })?;
    ui?;
    Ok(result)
}
