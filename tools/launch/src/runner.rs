//! Running the ranks: start, stream output, stop all on the first failure.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::{Error, Plan, Result};

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line a rank printed (without its line ending; invalid UTF-8 replaced).
#[derive(Debug, Clone)]
pub struct OutputLine {
    /// The global rank.
    pub rank: usize,
    /// The stream.
    pub stream: StreamKind,
    /// The text.
    pub text: String,
}

/// How to run the ranks.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop every rank once this much time has passed (none: no limit).
    pub timeout: Option<Duration>,
    /// Variables set for every rank on top of the inherited environment and
    /// the plan's per-rank variables.
    pub extra_env: Vec<(OsString, OsString)>,
}

/// How one rank ended.
#[derive(Debug, Clone)]
pub struct RankExit {
    /// The global rank.
    pub rank: usize,
    /// Its exit status.
    pub status: ExitStatus,
    /// Whether the launcher killed it (after another rank failed, or at the
    /// time limit).
    pub killed: bool,
}

/// Why a run failed.
#[derive(Debug, Clone)]
pub enum Failure {
    /// A rank ended unsuccessfully (the first one seen).
    Rank {
        /// The global rank.
        rank: usize,
        /// Its exit status.
        status: ExitStatus,
    },
    /// The time limit passed with ranks still running.
    Timeout(Duration),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Rank { rank, status } => write!(f, "rank {rank} failed ({status})"),
            Failure::Timeout(limit) => write!(f, "time limit of {limit:?} passed"),
        }
    }
}

/// What happened to the ranks.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every rank's end, in rank order.
    pub ranks: Vec<RankExit>,
    /// The reason the run failed, if it did.
    pub failure: Option<Failure>,
    /// Wall-clock time from the first start to the last exit.
    pub elapsed: Duration,
}

impl Report {
    /// Whether every rank exited successfully.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// A one-line summary naming the failed rank and its status, and the
    /// ranks that were stopped.
    pub fn summary(&self) -> String {
        let killed: Vec<String> = self
            .ranks
            .iter()
            .filter(|r| r.killed)
            .map(|r| r.rank.to_string())
            .collect();
        let stopped = if killed.is_empty() {
            String::new()
        } else {
            format!("; stopped rank(s) {}", killed.join(", "))
        };
        match &self.failure {
            Some(failure) => format!("{failure}{stopped}"),
            None => format!(
                "all {} rank(s) succeeded in {:.1?}",
                self.ranks.len(),
                self.elapsed
            ),
        }
    }
}

/// How often exits are checked while no output arrives.
const POLL: Duration = Duration::from_millis(20);

/// Starts every rank of `plan` as `program args…` with its environment,
/// hands every output line to `sink` as it arrives, and waits. As soon as a
/// rank ends unsuccessfully (or `options.timeout` passes) the other ranks
/// are killed (SIGKILL): a rank blocked in a collective whose peer died
/// would otherwise wait forever. Errors only when a rank cannot be started
/// (the ranks already started are killed first).
pub fn run(
    plan: &Plan,
    program: &OsString,
    args: &[OsString],
    options: &RunOptions,
    sink: &mut dyn FnMut(OutputLine),
) -> Result<Report> {
    let start = Instant::now();
    let (sender, receiver) = mpsc::channel::<OutputLine>();
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(plan.local_ranks());
    for local in 0..plan.local_ranks() {
        let rank = plan.global_rank(local);
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(plan.rank_env(local)?)
            .envs(options.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(source) => {
                kill_all(&mut children);
                return Err(Error::Spawn {
                    rank,
                    program: program.to_string_lossy().into_owned(),
                    source,
                });
            }
        };
        if let Some(out) = child.stdout.take() {
            forward_lines(out, rank, StreamKind::Stdout, sender.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_lines(err, rank, StreamKind::Stderr, sender.clone());
        }
        children.push((rank, child));
    }
    drop(sender);

    let mut exits: Vec<Option<RankExit>> = vec![None; children.len()];
    let mut failure = None;
    while exits.iter().any(Option::is_none) {
        match receiver.recv_timeout(POLL) {
            Ok(line) => sink(line),
            Err(mpsc::RecvTimeoutError::Timeout) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        for (slot, (rank, child)) in exits.iter_mut().zip(children.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            // `try_wait` errs only on an unexpected OS failure; the rank is
            // then checked again next round (the time limit still applies).
            let status = match child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) | Err(_) => continue,
            };
            if !status.success() && failure.is_none() {
                failure = Some(Failure::Rank {
                    rank: *rank,
                    status,
                });
            }
            *slot = Some(RankExit {
                rank: *rank,
                status,
                killed: false,
            });
        }
        if failure.is_none()
            && let Some(limit) = options.timeout
            && start.elapsed() >= limit
            && exits.iter().any(Option::is_none)
        {
            failure = Some(Failure::Timeout(limit));
        }
        if failure.is_some() {
            stop_running(&mut children, &mut exits);
            break;
        }
    }
    // Output still in flight: the pipes close when the ranks are gone (a
    // grandchild that keeps one open is not waited for beyond a moment).
    let drain_until = Instant::now() + Duration::from_millis(500);
    while let Some(left) = drain_until.checked_duration_since(Instant::now()) {
        match receiver.recv_timeout(left) {
            Ok(line) => sink(line),
            Err(_) => break,
        }
    }
    Ok(Report {
        ranks: exits.into_iter().flatten().collect(),
        failure,
        elapsed: start.elapsed(),
    })
}

/// Kills and reaps every rank that has not exited, recording it as killed.
fn stop_running(children: &mut [(usize, Child)], exits: &mut [Option<RankExit>]) {
    for (slot, (rank, child)) in exits.iter_mut().zip(children.iter_mut()) {
        if slot.is_some() {
            continue;
        }
        // Killing a process that just exited fails harmlessly; wait reaps it either way.
        let _ = child.kill();
        if let Ok(status) = child.wait() {
            *slot = Some(RankExit {
                rank: *rank,
                status,
                killed: true,
            });
        }
    }
}

/// Kills and reaps every started rank (used when a later one cannot start).
fn kill_all(children: &mut [(usize, Child)]) {
    for (_, child) in children.iter_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Reads `source` line by line on a thread and sends each line on.
fn forward_lines(
    source: impl Read + Send + 'static,
    rank: usize,
    stream: StreamKind,
    sender: mpsc::Sender<OutputLine>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while matches!(buffer.last(), Some(b'\n' | b'\r')) {
                        buffer.pop();
                    }
                    let line = OutputLine {
                        rank,
                        stream,
                        text: String::from_utf8_lossy(&buffer).into_owned(),
                    };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
}
