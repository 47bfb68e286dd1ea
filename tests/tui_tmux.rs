//! End to end: `grpo_arithmetic --tui` in an 80×24 tmux pane. Keys pause
//! the run, save a checkpoint while paused and quit; the pane shows the
//! states; the checkpoint appears, and the run stops cleanly (exit code 0,
//! status `stopped`, a last checkpoint, the example's final model).
//!
//! Skipped, saying so, when `tmux` is not installed (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use mlx_grpo::trainer::checkpoint::read_trainer_state;
use mlx_grpo::trainer::{RunState, RunStatus};

#[allow(dead_code)]
#[path = "hostile_cli/runner.rs"]
mod runner;

/// The longest the test waits for one thing to happen.
const PATIENCE: Duration = Duration::from_secs(120);

/// A tmux server of this test alone, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("running tmux")
    }

    fn keys(&self, keys: &str) {
        let out = self.run(&["send-keys", "-t", "tui", keys]);
        assert!(out.status.success(), "send-keys {keys}: {out:?}");
    }

    fn pane(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "tui"]).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn wait_until<T>(what: &str, tmux: &Tmux, mut ready: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "waited {PATIENCE:?} for {what}; the pane:\n{}",
            tmux.pane()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn status_when<'a>(
    dir: &'a Path,
    ready: impl Fn(&RunStatus) -> bool + 'a,
) -> impl FnMut() -> Option<RunStatus> + 'a {
    move || RunStatus::read(dir).ok().flatten().filter(|s| ready(s))
}

#[test]
fn tui_in_tmux_pauses_saves_and_quits_a_real_run() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!(
            "SKIPPED tui_in_tmux_pauses_saves_and_quits_a_real_run: tmux is not installed (apt-get install tmux)"
        );
        return;
    }
    let exe = runner::examples_dir().join("grpo_arithmetic");
    let work_dir = tempfile::Builder::new()
        .prefix("mlx-grpo-tui-tmux-")
        .tempdir()
        .unwrap();
    let work = work_dir.path();
    let run_dir: PathBuf = work.join("run");
    let exit_file = work.join("exit_code");
    let script = work.join("run.sh");
    std::fs::write(
        &script,
        format!(
            "'{}' --tui --sft-steps 2 --max-steps 100000 --output-dir '{}' \
             --set num_generations=4 --set per_device_train_batch_size=16 \
             --set logging_steps=1 --set save_steps=100000 2>'{}'\necho $? > '{}'\n",
            exe.display(),
            run_dir.display(),
            work.join("stderr").display(),
            exit_file.display()
        ),
    )
    .unwrap();
    let tmux = Tmux {
        socket: format!("mlx-grpo-tui-test-{}", std::process::id()),
    };
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "tui",
        "-x",
        "80",
        "-y",
        "24",
        "sh",
        script.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "tmux new-session: {out:?}");

    wait_until("two steps", &tmux, status_when(&run_dir, |s| s.step >= 2));
    let running = wait_until("the UI", &tmux, || {
        Some(tmux.pane()).filter(|p| p.contains("1 Metrics"))
    });
    assert!(running.contains("step "), "{running}");

    tmux.keys("p");
    let paused = wait_until(
        "the pause",
        &tmux,
        status_when(&run_dir, |s| s.state == RunState::Paused),
    );
    wait_until("PAUSED on the pane", &tmux, || {
        Some(tmux.pane()).filter(|p| p.contains("PAUSED"))
    });

    tmux.keys("s");
    let checkpoint = run_dir.join(format!("checkpoint-{}", paused.step));
    wait_until("the checkpoint", &tmux, || {
        status_when(&run_dir, |s| {
            s.last_checkpoint.as_deref() == Some(checkpoint.as_path())
        })()
    });
    assert_eq!(
        read_trainer_state(&checkpoint).unwrap().global_step,
        paused.step
    );
    thread::sleep(Duration::from_millis(300));
    let screenshot = tmux.pane();
    println!("--- the pane, paused after saving ---\n{screenshot}");
    let _ = std::fs::write(work.join("pane.txt"), &screenshot);
    assert!(screenshot.contains("PAUSED"), "{screenshot}");
    assert_eq!(
        RunStatus::read(&run_dir).unwrap().unwrap().step,
        paused.step
    );

    tmux.keys("q");
    let code = wait_until("the example to exit", &tmux, || {
        std::fs::read_to_string(&exit_file)
            .ok()
            .filter(|t| t.ends_with('\n'))
    });
    let stderr = std::fs::read_to_string(work.join("stderr")).unwrap_or_default();
    assert_eq!(code.trim(), "0", "exit code; stderr:\n{stderr}");
    let status = RunStatus::read(&run_dir).unwrap().unwrap();
    assert_eq!(status.state, RunState::Stopped);
    // Stopped while paused: no step after the pause, and a checkpoint of it.
    assert_eq!(status.step, paused.step);
    assert_eq!(status.last_checkpoint, Some(checkpoint.clone()));
    assert!(run_dir.join("final").join("config.json").is_file());
}
