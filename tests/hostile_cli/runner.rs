//! Runs the example binaries as child processes with a time limit and
//! checks how they fail.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The examples the suite runs.
pub const EXAMPLES: [&str; 6] = [
    "generate",
    "chat",
    "score",
    "grpo",
    "grpo_arithmetic",
    "blas_compare",
];

/// How long one run may take before it is killed and the case fails.
const TIME_LIMIT: Duration = Duration::from_secs(20);

/// What a finished child did.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// `target/<profile>` of this test executable (`target/<profile>/deps/hostile_cli-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable lies in <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds the examples once (a no-op when `cargo test` has built them, as
/// it does for a whole-package run) and returns `target/<profile>/examples`.
pub fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let profile = profile_dir();
        let target = profile.parent().expect("<target>/<profile>");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target)
            .arg("--quiet");
        if profile.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        } else {
            cmd.args(["--profile", "test"]);
        }
        if cfg!(feature = "cuda") {
            cmd.args(["--features", "cuda"]);
        }
        for name in EXAMPLES {
            cmd.args(["--example", name]);
        }
        let status = cmd.status().expect("running cargo build for the examples");
        assert!(status.success(), "building the examples failed: {status}");
        profile.join("examples")
    })
}

/// Drains a child's pipe on a thread (so a full pipe cannot stall it).
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn wait_with_limit(child: &mut Child, what: &str) -> Option<i32> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code(),
            Ok(None) if start.elapsed() > TIME_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: still running after {TIME_LIMIT:?}; killed");
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{what}: waiting failed: {e}"),
        }
    }
}

/// Runs example `name` with `args` in `cwd` (standard input empty).
pub fn run(name: &str, args: &[OsString], cwd: &Path) -> Outcome {
    let exe = examples_dir().join(name);
    let what = format!("{name} {args:?}");
    let mut child = Command::new(&exe)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let code = wait_with_limit(&mut child, &what);
    Outcome {
        code,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Asserts that the run failed cleanly: a non-zero exit code (not a
/// signal), no panic, and a last stderr line that starts with `error:` and
/// contains every one of `needles` (what it must name).
pub fn assert_clean_error(name: &str, args: &[OsString], outcome: &Outcome, needles: &[&str]) {
    let what = format!("{name} {args:?}\n--- stderr\n{}", outcome.stderr);
    let code = outcome
        .code
        .unwrap_or_else(|| panic!("{what}\nended by a signal, not an exit code"));
    assert_ne!(code, 0, "{what}\nexited 0");
    assert!(!outcome.stderr.contains("panicked"), "{what}\npanicked");
    let last = outcome
        .stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{what}\nnothing on stderr"));
    println!("{name}: {last}");
    assert!(
        last.starts_with("error: "),
        "{what}\nlast line is not `error: ...`"
    );
    for needle in needles {
        assert!(
            last.contains(needle),
            "{what}\nthe error line does not name {needle:?}"
        );
    }
}

/// Words as arguments.
pub fn os<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}
