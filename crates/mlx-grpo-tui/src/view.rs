//! What the UI knows of a run, built from [`RunEvent`]s.

use std::collections::VecDeque;

use mlx_grpo::trainer::{LogRecord, RunState, RunStatus, SampleRecord};

use crate::event::RunEvent;
use crate::format;

/// Scored completions kept for the samples panel.
pub const MAX_SAMPLES: usize = 64;
/// Log lines kept for the logs panel.
pub const MAX_LOG_LINES: usize = 2000;

/// Metric name prefixes in the order the metrics panel shows them (TRL's
/// names); the others follow in name order.
const METRIC_ORDER: &[&str] = &[
    "reward",
    "reward_std",
    "rewards/",
    "loss",
    "kl",
    "entropy",
    "clip_ratio/",
    "grad_norm",
    "learning_rate",
    "completions/mean_length",
    "completions/",
    "tools/",
    "frac_reward_zero_std",
];

/// A run as the UI shows it.
#[derive(Debug, Clone, Default)]
pub struct RunView {
    /// The trainer's last status.
    pub status: Option<RunStatus>,
    /// Every logged metrics record, in order.
    pub history: Vec<LogRecord>,
    /// The latest scored completions, newest first.
    pub samples: VecDeque<SampleRecord>,
    /// Lines for the logs panel, oldest first.
    pub logs: VecDeque<String>,
    /// The run's config as text.
    pub config: Option<String>,
    /// Set when the training thread has ended: `Some(None)` for success,
    /// `Some(Some(error))` for a failure.
    pub finished: Option<Option<String>>,
}

impl RunView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one event in.
    pub fn apply(&mut self, event: RunEvent) {
        match event {
            RunEvent::Status(status) => self.apply_status(status),
            RunEvent::Log(record) => {
                let get = |k: &str| {
                    record
                        .metrics
                        .get(k)
                        .map_or_else(|| "-".to_string(), |v| format::metric(*v))
                };
                self.log(format!(
                    "step {}: reward {} loss {} kl {} grad_norm {}",
                    record.step,
                    get("reward"),
                    get("loss"),
                    get("kl"),
                    get("grad_norm")
                ));
                self.history.push(record);
            }
            RunEvent::Samples(samples) => {
                for sample in samples.into_iter().rev() {
                    self.samples.push_front(sample);
                }
                self.samples.truncate(MAX_SAMPLES);
            }
            RunEvent::Config(text) => self.config = Some(text),
            RunEvent::Message(line) => self.log(line),
            RunEvent::Reset => {
                self.history.clear();
                self.log("metrics.jsonl was cut back (a resumed run): history reloaded".into());
            }
            RunEvent::Finished(outcome) => {
                match &outcome {
                    None => self.log("training ended".into()),
                    Some(error) => self.log(format!("training failed: {error}")),
                }
                self.finished = Some(outcome);
            }
        }
    }

    fn apply_status(&mut self, status: RunStatus) {
        let previous_state = self.status.as_ref().map(|p| p.state);
        let previous_checkpoint = self.status.as_ref().and_then(|p| p.last_checkpoint.clone());
        if previous_state != Some(status.state) && status.state != RunState::Saving {
            self.log(format!("step {}: {}", status.step, status.state.as_str()));
        }
        if let Some(path) = &status.last_checkpoint
            && previous_checkpoint.as_ref() != Some(path)
        {
            self.log(format!("step {}: saved {}", status.step, path.display()));
        }
        self.status = Some(status);
    }

    /// Adds a line to the logs.
    pub fn log(&mut self, line: String) {
        self.logs.push_back(line);
        while self.logs.len() > MAX_LOG_LINES {
            self.logs.pop_front();
        }
    }

    /// Whether the run is over (finished, stopped, or its thread ended).
    pub fn is_over(&self) -> bool {
        self.finished.is_some()
            || self
                .status
                .as_ref()
                .is_some_and(|s| matches!(s.state, RunState::Finished | RunState::Stopped))
    }

    /// The logged metric names, in the metrics panel's order.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for record in &self.history {
            for name in record.metrics.keys() {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        let rank = |name: &str| {
            METRIC_ORDER
                .iter()
                .position(|p| {
                    if p.ends_with('/') {
                        name.starts_with(p)
                    } else {
                        name == *p
                    }
                })
                .unwrap_or(METRIC_ORDER.len())
        };
        names.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
        names
    }

    /// One metric over the logged steps (NaN where a record lacks it).
    pub fn series(&self, name: &str) -> Vec<f64> {
        self.history
            .iter()
            .map(|r| r.metrics.get(name).copied().unwrap_or(f64::NAN))
            .collect()
    }

    /// Seconds since the run started: up to `now` while it runs, up to its
    /// last status once over.
    pub fn elapsed(&self, now_unix: f64) -> Option<f64> {
        let status = self.status.as_ref()?;
        let end = if self.is_over() {
            status.updated_unix
        } else {
            now_unix.max(status.updated_unix)
        };
        Some(end - status.started_unix)
    }

    /// Seconds left at the pace of the steps taken since the run started.
    pub fn eta(&self) -> Option<f64> {
        let status = self.status.as_ref()?;
        if self.is_over() {
            return Some(0.0);
        }
        let done = status.step.checked_sub(status.start_step)?;
        if done == 0 {
            return None;
        }
        let spent = status.updated_unix - status.started_unix;
        let left = status.total_steps.saturating_sub(status.step);
        Some(spent / done as f64 * left as f64)
    }

    /// Prompt and completion tokens per second since the run started.
    pub fn tokens_per_second(&self) -> Option<f64> {
        let status = self.status.as_ref()?;
        let spent = status.updated_unix - status.started_unix;
        (spent > 0.0).then(|| (status.num_tokens - status.start_num_tokens) / spent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn record(step: usize, pairs: &[(&str, f64)]) -> LogRecord {
        LogRecord {
            step,
            metrics: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn metrics_follow_trl_order_and_series_keep_gaps() {
        let mut view = RunView::new();
        view.apply(RunEvent::Log(record(
            1,
            &[("zeta", 1.0), ("loss", 0.5), ("reward", 0.1)],
        )));
        view.apply(RunEvent::Log(record(
            2,
            &[("rewards/acc/mean", 1.0), ("reward", 0.2)],
        )));
        assert_eq!(
            view.metric_names(),
            ["reward", "rewards/acc/mean", "loss", "zeta"]
        );
        let loss = view.series("loss");
        assert_eq!(loss[0], 0.5);
        assert!(loss[1].is_nan());
    }

    #[test]
    fn eta_and_throughput_from_the_pace_since_start() {
        let mut view = RunView::new();
        view.apply(RunEvent::Status(RunStatus {
            state: RunState::Running,
            step: 14,
            total_steps: 30,
            start_step: 10,
            start_num_tokens: 1000.0,
            model: "m".into(),
            num_parameters: 1,
            num_tokens: 1800.0,
            active_memory: 0,
            peak_memory: 0,
            started_unix: 100.0,
            updated_unix: 120.0,
            last_checkpoint: None,
        }));
        // 4 steps in 20 s: 5 s a step, 16 steps left.
        assert_eq!(view.eta(), Some(80.0));
        assert_eq!(view.tokens_per_second(), Some(40.0));
        assert_eq!(view.elapsed(130.0), Some(30.0));
    }
}
