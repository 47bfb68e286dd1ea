//! A terminal UI for mlx-grpo training runs.
//!
//! The UI shows a [`RunView`]: a run's status, logged metrics, scored
//! completions, log lines and config, built from [`RunEvent`]s. Events
//! come either from the trainer in the same process, through a channel
//! ([`run_in_terminal`] runs training on its own thread and the UI on the
//! calling one), or from a run directory's files ([`RunDirReader`], as the
//! `mlx-grpo-tui watch RUN_DIR` binary uses). Keys steer the run through a
//! [`Controller`]: the trainer's shared [`mlx_grpo::trainer::TrainerControl`]
//! or the run's control file.
#![deny(missing_docs)]

pub mod app;
pub mod controls;
pub mod error;
pub mod event;
pub mod format;
pub mod in_process;
pub mod tail;
pub mod terminal;
pub mod ui;
pub mod view;

pub use app::{App, Flow, Mode, Panel};
pub use controls::{Controller, FileController, HandleController};
pub use error::{Error, Result};
pub use event::{ChannelCallback, RunEvent};
pub use in_process::{Hooks, run_in_terminal};
pub use tail::RunDirReader;
pub use view::RunView;
