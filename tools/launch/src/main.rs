//! `launch`: starts the ranks of an MLX distributed job on this machine.
//!
//! ```text
//! launch -n 2 -- ./target/debug/my_trainer --config run.toml
//! launch -n 4 --backend nccl -- ./target/release/my_trainer
//! ```
//!
//! One machine (the default): picks free ports on 127.0.0.1, writes MLX's
//! ring hostfile to the temporary directory (ring) or uses rank 0's port as
//! the NCCL rendezvous (nccl: each rank also sees one GPU through
//! `CUDA_VISIBLE_DEVICES`, the i-th of the launcher's list when it has one).
//!
//! Several machines: write one hostfile listing every rank's address in
//! MLX's ring format (`[["10.0.0.1:5000"], ["10.0.0.1:5001"],
//! ["10.0.0.2:5000"], ["10.0.0.2:5001"]]`), copy it to every machine, and run
//! on each machine its share of the ranks:
//!
//! ```text
//! host A: launch -n 2 --hostfile hosts.json --rank-offset 0 -- ./trainer
//! host B: launch -n 2 --hostfile hosts.json --rank-offset 2 -- ./trainer
//! ```
//!
//! With `--backend nccl` the first address of the hostfile is the NCCL
//! rendezvous (rank 0's machine and a free port there).
//!
//! Every output line is printed with a `[rank i]` prefix (standard error
//! lines on standard error). When a rank fails, the others are killed and the
//! launcher exits 1 with one line naming the rank and its status; it exits
//! 124 when `--timeout` passes.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use mlx_launch::{Backend, OutputLine, Plan, RunOptions, StreamKind, run};

/// Starts N ranks of an MLX distributed job with their environment.
#[derive(Debug, Parser)]
#[command(name = "launch", version)]
struct Args {
    /// Ranks to start on this machine.
    #[arg(short = 'n', long = "ranks")]
    ranks: usize,
    /// The communication backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Ring)]
    backend: BackendArg,
    /// MLX ring hostfile listing every rank of a several-machine job;
    /// without it the job runs on this machine over 127.0.0.1.
    #[arg(long)]
    hostfile: Option<PathBuf>,
    /// The global rank of this machine's first rank (with --hostfile).
    #[arg(long, default_value_t = 0, requires = "hostfile")]
    rank_offset: usize,
    /// Stop every rank after this many seconds.
    #[arg(long)]
    timeout: Option<f64>,
    /// The program each rank runs, and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<OsString>,
}

/// `--backend` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    /// MLX's ring backend (TCP).
    Ring,
    /// NCCL, one GPU per rank.
    Nccl,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let backend = match args.backend {
        BackendArg::Ring => Backend::Ring,
        BackendArg::Nccl => Backend::Nccl,
    };
    let plan = match &args.hostfile {
        Some(hostfile) => Plan::from_hostfile(backend, hostfile, args.ranks, args.rank_offset),
        None => Plan::local(backend, args.ranks),
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("launch: {e}");
            return ExitCode::from(2);
        }
    };
    let timeout = match args.timeout.map(Duration::try_from_secs_f64).transpose() {
        Ok(timeout) => timeout,
        Err(e) => {
            eprintln!("launch: --timeout: {e}");
            return ExitCode::from(2);
        }
    };
    let Some((program, rest)) = args.command.split_first() else {
        eprintln!("launch: no command given after --");
        return ExitCode::from(2);
    };
    let options = RunOptions {
        timeout,
        extra_env: Vec::new(),
    };
    let report = match run(&plan, program, rest, &options, &mut print_line) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("launch: {e}");
            return ExitCode::from(1);
        }
    };
    match &report.failure {
        None => ExitCode::SUCCESS,
        Some(failure) => {
            eprintln!("launch: {}", report.summary());
            match failure {
                mlx_launch::Failure::Timeout(_) => ExitCode::from(124),
                mlx_launch::Failure::Rank { .. } => ExitCode::from(1),
            }
        }
    }
}

/// Prints a rank's line with its `[rank i]` prefix.
fn print_line(line: OutputLine) {
    // A closed standard output (e.g. `| head`) must not stop the ranks'
    // supervision, so write errors are ignored.
    match line.stream {
        StreamKind::Stdout => {
            let _ = writeln!(std::io::stdout(), "[rank {}] {}", line.rank, line.text);
        }
        StreamKind::Stderr => {
            let _ = writeln!(std::io::stderr(), "[rank {}] {}", line.rank, line.text);
        }
    }
}
