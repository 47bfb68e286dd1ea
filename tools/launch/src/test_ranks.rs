//! Running ranks of a test binary: each rank is the current test executable
//! re-invoked to run one `#[ignore]`d test, the rank's body.

use std::ffi::OsString;
use std::time::Duration;

use crate::{Backend, Error, OutputLine, Plan, Report, Result, RunOptions, run};

/// What a run of test ranks produced.
#[derive(Debug)]
pub struct TestRanks {
    /// How the ranks ended.
    pub report: Report,
    /// Every line they printed, in arrival order.
    pub lines: Vec<OutputLine>,
}

impl TestRanks {
    /// The lines rank `rank` printed, joined with newlines.
    pub fn output_of(&self, rank: usize) -> String {
        self.lines
            .iter()
            .filter(|l| l.rank == rank)
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `ranks` ranks on 127.0.0.1 over `backend`, each one the current
/// executable (a libtest test binary) running only the ignored test
/// `test_name` (`--exact --ignored --nocapture`). Ranks are stopped after
/// `timeout`, or as soon as one fails.
pub fn run_test_ranks(
    backend: Backend,
    ranks: usize,
    test_name: &str,
    timeout: Duration,
) -> Result<TestRanks> {
    let exe = std::env::current_exe().map_err(|e| Error::Invalid(format!("current_exe: {e}")))?;
    let plan = Plan::local(backend, ranks)?;
    let args: Vec<OsString> = [test_name, "--exact", "--ignored", "--nocapture"]
        .iter()
        .map(OsString::from)
        .collect();
    let options = RunOptions {
        timeout: Some(timeout),
        extra_env: Vec::new(),
    };
    let mut lines = Vec::new();
    let report = run(&plan, &exe.into_os_string(), &args, &options, &mut |line| {
        lines.push(line)
    })?;
    Ok(TestRanks { report, lines })
}
