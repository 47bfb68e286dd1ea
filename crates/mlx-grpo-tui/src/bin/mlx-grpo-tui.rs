//! `mlx-grpo-tui watch RUN_DIR`: follows a training run from another
//! terminal (or shows a finished one) and steers it through its control
//! file.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mlx_grpo_tui::{App, FileController, Mode, RunDirReader, RunView, terminal};

/// A terminal UI for mlx-grpo training runs.
#[derive(Parser, Debug)]
#[command(name = "mlx-grpo-tui")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Shows a run directory (its metrics, samples, status and config) and
    /// steers the run: p pause/resume, s save, x save and stop, q leave.
    Watch {
        /// The run's output_dir
        run_dir: PathBuf,
    },
}

/// Without a terminal: prints the log lines as they come until the run is over.
fn follow_plain(reader: &mut RunDirReader) -> mlx_grpo_tui::Result<()> {
    let mut view = RunView::new();
    let mut printed = 0;
    loop {
        for event in reader.poll()? {
            view.apply(event);
        }
        for line in view.logs.iter().skip(printed) {
            println!("{line}");
        }
        printed = view.logs.len();
        if view.is_over() || view.status.is_none() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn main() {
    let Args {
        command: Command::Watch { run_dir },
    } = Args::parse();
    let result = RunDirReader::new(&run_dir).and_then(|mut reader| {
        if !std::io::stdout().is_terminal() {
            return follow_plain(&mut reader);
        }
        let mut app = App::new(Box::new(FileController::new(&run_dir)), Mode::Watch);
        terminal::run(&mut app, || reader.poll())
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
