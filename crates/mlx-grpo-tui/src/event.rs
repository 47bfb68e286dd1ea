//! What the UI learns about a run, as plain data that crosses threads.

use std::sync::mpsc::Sender;

use mlx_grpo::trainer::{LogRecord, RunStatus, SampleRecord, TrainerCallback};

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The trainer's status (state, step, tokens, memory, last checkpoint).
    Status(RunStatus),
    /// A logged metrics record.
    Log(LogRecord),
    /// Scored completions of a generation batch.
    Samples(Vec<SampleRecord>),
    /// The run's config as text.
    Config(String),
    /// A line for the logs panel.
    Message(String),
    /// The metrics file was cut back (a resumed run): forget the history.
    Reset,
    /// The training thread ended: `None` when it succeeded, else its error.
    Finished(Option<String>),
}

/// A trainer callback that sends the trainer's logs, samples and status
/// down a channel (to a UI on another thread).
#[derive(Debug, Clone)]
pub struct ChannelCallback {
    sender: Sender<RunEvent>,
}

impl ChannelCallback {
    /// A callback sending into `sender`.
    pub fn new(sender: Sender<RunEvent>) -> Self {
        Self { sender }
    }

    fn send(&self, event: RunEvent) {
        // A UI that has gone away leaves the run to finish on its own.
        let _ = self.sender.send(event);
    }
}

impl TrainerCallback for ChannelCallback {
    fn on_log(&mut self, record: &LogRecord) {
        self.send(RunEvent::Log(record.clone()));
    }

    fn on_samples(&mut self, samples: &[SampleRecord]) {
        self.send(RunEvent::Samples(samples.to_vec()));
    }

    fn on_status(&mut self, status: &RunStatus) {
        self.send(RunEvent::Status(status.clone()));
    }
}
