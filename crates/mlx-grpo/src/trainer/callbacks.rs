//! Hooks into the training loop.

use std::collections::BTreeMap;
use std::path::Path;

use crate::rewards::RewardInput;
use crate::trainer::control::{RunStatus, SampleRecord};
use crate::trainer::metrics_log::LogRecord;
use crate::trainer::rollout::RolloutSample;

/// Called at points of the training loop; every method has a default that
/// does nothing, so implement only what you need.
pub trait TrainerCallback {
    /// After sampling, before rewards: inspect or change the completions
    /// (e.g. truncate at a stop string, drop tool output tokens). The
    /// samples can be edited but not added or removed: every slot of the
    /// generation batch keeps its completion, grouped by prompt.
    fn on_rollout(&mut self, _samples: &mut [RolloutSample]) {}

    /// After advantages are computed: inspect or reshape them (one per
    /// completion, in the order of the inputs).
    fn on_advantages(&mut self, _inputs: &[RewardInput], _advantages: &mut [f32]) {}

    /// After each optimizer step, with that step's metrics.
    fn on_step_end(&mut self, _step: usize, _metrics: &BTreeMap<String, f64>) {}

    /// When a metrics record is logged.
    fn on_log(&mut self, _record: &LogRecord) {}

    /// After a checkpoint is written.
    fn on_save(&mut self, _checkpoint: &Path) {}

    /// After a generation batch is scored, with the completions that
    /// `samples.jsonl` gets (when the trainer writes samples).
    fn on_samples(&mut self, _samples: &[SampleRecord]) {}

    /// When the run's state changes or a step ends (what `status.json` holds).
    fn on_status(&mut self, _status: &RunStatus) {}
}
