//! Overlapped generation samples every batch on one worker thread: MLX
//! gives each thread its own streams (on the CPU, each with a thread of its
//! own) and keeps them for the process's life, so a thread per batch would
//! leave threads behind in proportion to the run's length. This file holds
//! one test, so that no other test's threads come and go in its process.

mod resume_support;
mod tiny_task;

use mlx_grpo::trainer::Trainer;
use resume_support::{base_config, dense_model, rewards};
use tiny_task::{dataset, scratch, tokenizer};

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

fn overlapped_run(steps: i64) {
    let tmp = scratch("overlap-threads");
    let tok = tokenizer();
    let mut cfg = base_config(tmp.path(), steps);
    cfg.overlap_generation = true;
    cfg.vllm_importance_sampling_correction = true;
    let mut trainer = Trainer::new(cfg, dense_model(&tok), tok, dataset(), rewards())
        .unwrap()
        .with_progress(false);
    trainer.train().unwrap();
}

#[test]
fn a_long_overlapped_run_leaves_no_thread_per_batch() {
    if threads() == 0 {
        eprintln!("no /proc/self/task here: skipped");
        return;
    }
    overlapped_run(2);
    let before = threads();
    overlapped_run(12);
    let after = threads();
    // Twelve generation batches, eleven sampled ahead: at most the one
    // worker's stream thread may stay.
    assert!(
        after <= before + 1,
        "{before} threads before a 12-step overlapped run, {after} after"
    );
}
