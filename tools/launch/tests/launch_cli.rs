//! The `launch` binary: two ring ranks of this test binary (each re-invoked
//! to run one ignored `rank_*` test), a successful all_sum and a failing
//! rank whose peer would block.

use std::process::Command;
use std::time::{Duration, Instant};

use mlx_tensor::Array;
use mlx_tensor::distributed::{Backend, Group, all_sum};

/// Runs `launch -n 2 --timeout 60 -- <this test binary> <rank test>`.
fn launch_two(rank_test: &str) -> (std::process::Output, Duration) {
    let exe = std::env::current_exe().expect("test binary");
    let start = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_launch"))
        .args(["-n", "2", "--timeout", "60", "--"])
        .arg(exe)
        .args([rank_test, "--exact", "--ignored", "--nocapture"])
        .output()
        .expect("run launch");
    (output, start.elapsed())
}

#[test]
fn two_ranks_all_sum_and_print_with_rank_prefixes() {
    let (output, elapsed) = launch_two("rank_all_sum");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}",
        output.status
    );
    // Ranks hold 1 and 2: the sum is 3 on both.
    for rank in 0..2 {
        let line = format!("[rank {rank}] rank {rank} of 2: all_sum = 3");
        assert!(
            stdout.lines().any(|l| l == line),
            "missing `{line}` in\n{stdout}"
        );
    }
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

#[test]
fn a_failing_rank_stops_its_blocked_peer() {
    let (output, elapsed) = launch_two("rank_fails_or_blocks");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last, "launch: rank 1 failed (exit status: 1); stopped rank(s) 0",
        "{stderr}"
    );
    // Rank 0 sleeps for two minutes; the launcher must not wait for it.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}

#[test]
fn bad_arguments_exit_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_launch"))
        .args(["-n", "0", "--", "true"])
        .output()
        .expect("run launch");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least one rank"), "{stderr}");
}

/// A rank of [`two_ranks_all_sum_and_print_with_rank_prefixes`].
#[test]
#[ignore = "a rank body, started through the launch binary"]
fn rank_all_sum() {
    let group = Group::init(Backend::Ring).expect("ring group");
    let rank = group.rank();
    let x = Array::scalar(rank as f32 + 1.0).expect("x");
    let total: f32 = all_sum(&x, &group).expect("all_sum").item().expect("item");
    println!("rank {rank} of {}: all_sum = {total}", group.size());
}

/// A rank of [`a_failing_rank_stops_its_blocked_peer`].
#[test]
#[ignore = "a rank body, started through the launch binary"]
fn rank_fails_or_blocks() {
    let group = Group::init(Backend::Ring).expect("ring group");
    if group.rank() == 1 {
        std::process::exit(1);
    }
    // Stands for a rank stuck in a collective whose peer never comes.
    std::thread::sleep(Duration::from_secs(120));
}
