//! A trainer refuses checkpoints it cannot resume exactly, and samples every
//! generation batch with keys of its own.

mod resume_support;
mod tiny_task;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mlx_grpo::dataset::{Dataset, Prompt, Row};
use mlx_grpo::rewards::{RewardInput, RewardSet, reward_fn};
use mlx_grpo::trainer::Trainer;
use resume_support::{base_config, dataset, dense_model, rewards, scratch, tokenizer};
use tempfile::TempDir;

/// A run of 3 steps with μ = 2 saved at step 3, in the middle of its
/// second generation batch; returns the run's directory (removed when
/// dropped) and the checkpoint.
fn mid_batch_checkpoint(name: &str) -> (TempDir, PathBuf) {
    let tmp = scratch(name);
    let dir = tmp.path();
    let tok = tokenizer();
    let mut cfg = base_config(dir, 4);
    cfg.num_iterations = 2;
    cfg.save_steps = 3;
    let mut trainer = Trainer::new(cfg, dense_model(&tok), tok, dataset(), rewards())
        .unwrap()
        .with_progress(false);
    trainer.train().unwrap();
    let checkpoint = dir.join("checkpoint-3");
    (tmp, checkpoint)
}

fn resume_error(checkpoint: &std::path::Path) -> String {
    let tok = tokenizer();
    let dir = checkpoint.parent().unwrap();
    let mut cfg = base_config(dir, 4);
    cfg.num_iterations = 2;
    let mut trainer = Trainer::new(cfg, dense_model(&tok), tok, dataset(), rewards())
        .unwrap()
        .with_progress(false);
    trainer.resume_from(checkpoint).unwrap_err().to_string()
}

#[test]
fn checkpoints_that_cannot_resume_exactly_are_refused() {
    let (_run, checkpoint) = mid_batch_checkpoint("refused");
    let state_path = checkpoint.join("trainer_state.json");
    let original = std::fs::read_to_string(&state_path).unwrap();

    let mut edited: serde_json::Value = serde_json::from_str(&original).unwrap();
    edited["global_step"] = serde_json::json!(1_000_000_000_000_000_000u64);
    std::fs::write(&state_path, edited.to_string()).unwrap();
    let err = resume_error(&checkpoint);
    assert!(
        err.contains("global_step") && err.contains("trainer_state.json"),
        "{err}"
    );

    let mut edited: serde_json::Value = serde_json::from_str(&original).unwrap();
    edited["sampler_position"]["epoch"] = serde_json::json!(u64::MAX);
    std::fs::write(&state_path, edited.to_string()).unwrap();
    let err = resume_error(&checkpoint);
    assert!(err.contains("sampler_position.epoch"), "{err}");

    std::fs::write(&state_path, &original).unwrap();
    let buffer = checkpoint.join("rollout_buffer.safetensors");
    std::fs::remove_file(&buffer).unwrap();
    let err = resume_error(&checkpoint);
    assert!(err.contains("rollout_buffer.safetensors"), "{err}");
}

#[test]
fn every_generation_batch_of_a_step_has_its_own_keys() {
    // Two generation batches per optimizer step, of the same prompt: with
    // shared keys they would be the same completions.
    let tmp = scratch("keys");
    let dir = tmp.path();
    let tok = tokenizer();
    let rows = (0..8)
        .map(|_| Row {
            prompt: Prompt::Text("1+1=".into()),
            answer: Some("2".into()),
            extra: Default::default(),
        })
        .collect();
    let same_prompt = Dataset::from_rows(rows, "same").unwrap();
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let record = Arc::clone(&seen);
    let mut set = RewardSet::new();
    set.add(reward_fn("length", move |xs: &[RewardInput]| {
        record
            .lock()
            .unwrap()
            .push(xs.iter().map(|x| x.completion.raw_text.clone()).collect());
        Ok(xs.iter().map(|x| x.completion.num_tokens as f32).collect())
    }))
    .unwrap();
    let mut cfg = base_config(dir, 2);
    cfg.gradient_accumulation_steps = 2;
    cfg.steps_per_generation = Some(1);
    let mut trainer = Trainer::new(cfg, dense_model(&tok), tok, same_prompt, set)
        .unwrap()
        .with_progress(false);
    trainer.train().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4, "two generation batches per step");
    assert_ne!(seen[0], seen[1], "the batches of step 1 repeat their keys");
    assert_ne!(seen[2], seen[3], "the batches of step 2 repeat their keys");
    assert_eq!(trainer.state().generations, 4);
}
