//! The frame the training examples share: a config from the example's
//! choices and the `--set` overrides, then training with or without the
//! terminal UI and a printed summary.

use std::time::Instant;

use mlx_grpo::config::GrpoConfig;
use mlx_grpo_tui::Hooks;

use crate::cli::{self, BoxError};

/// Applies `overrides` (`key=value`, TRL's field names) to `cfg`, validates
/// it and prints its warnings on standard error.
pub fn settle_config(mut cfg: GrpoConfig, overrides: &[String]) -> Result<GrpoConfig, BoxError> {
    cfg.apply_overrides(overrides.iter().map(String::as_str))?;
    for warning in cfg.validate()? {
        eprintln!("warning: {warning}");
    }
    Ok(cfg)
}

/// Creates `cfg.output_dir`, runs `train` (in the terminal UI when `tui`,
/// the model then living on the training thread), prints the summary lines
/// it returns and the elapsed time.
pub fn run_training<F>(cfg: GrpoConfig, tui: bool, train: F) -> Result<(), BoxError>
where
    F: FnOnce(GrpoConfig, &Hooks) -> Result<Vec<String>, BoxError> + Send + 'static,
{
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.output_dir).map_err(cli::at_path(
        "creating the output directory",
        &cfg.output_dir,
    ))?;
    let summary = if tui {
        mlx_grpo_tui::run_in_terminal(move |hooks| {
            train(cfg, &hooks).map_err(|e| cli::one_line(e.as_ref()))
        })??
    } else {
        train(cfg, &Hooks::plain())?
    };
    for line in summary {
        println!("{line}");
    }
    println!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
