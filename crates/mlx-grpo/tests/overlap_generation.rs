//! Generation overlapped with training (`overlap_generation`): with a
//! frozen policy the run is the synchronous run bit for bit; with learning
//! on, each generation batch after the first is exactly what the weights of
//! one step earlier sample; a run stopped with a batch sampled ahead
//! resumes bit for bit.

mod resume_support;
mod tiny_task;

use std::sync::{Arc, Mutex};

use mlx_grpo::config::{GrpoConfig, ImportanceSamplingMode};
use mlx_grpo::trainer::rollout::{self, RolloutSample};
use mlx_grpo::trainer::{Trainer, TrainerCallback};
use mlx_nn::ModuleExt;
use resume_support::{
    RunEnd, Scenario, assert_exact_resume, assert_same, base_config, dense_model, rewards, run,
};
use tiny_task::{dataset, scratch, tokenizer};

/// Records every rollout the trainer samples, in order.
#[derive(Clone, Default)]
struct Rollouts(Arc<Mutex<Vec<Vec<RolloutSample>>>>);

impl TrainerCallback for Rollouts {
    fn on_rollout(&mut self, samples: &mut [RolloutSample]) {
        self.0.lock().unwrap().push(samples.to_vec());
    }
}

fn corrected(c: &mut GrpoConfig) {
    c.vllm_importance_sampling_correction = true;
    c.vllm_importance_sampling_mode = ImportanceSamplingMode::TokenTruncate;
}

fn train(
    name: &str,
    overlap: bool,
    adjust: impl FnOnce(&mut GrpoConfig),
) -> (RunEnd, Vec<Vec<RolloutSample>>) {
    let tmp = scratch(name);
    let tok = tokenizer();
    let mut cfg = base_config(tmp.path(), 5);
    corrected(&mut cfg);
    adjust(&mut cfg);
    cfg.overlap_generation = overlap;
    let rollouts = Rollouts::default();
    let mut trainer = Trainer::new(cfg, dense_model(&tok), tok, dataset(), rewards())
        .unwrap()
        .with_progress(false)
        .with_callback(rollouts.clone());
    let end = run(&mut trainer, tmp.path());
    let samples = rollouts.0.lock().unwrap().clone();
    (end, samples)
}

#[test]
fn frozen_policy_overlapped_run_is_the_synchronous_run() {
    for (name, spg, beta) in [("one", None, 0.0), ("two-steps-per-batch", Some(2), 0.04)] {
        let frozen = |c: &mut GrpoConfig| {
            c.learning_rate = 0.0;
            c.steps_per_generation = spg;
            c.beta = beta;
        };
        let (sync, sync_rollouts) = train(&format!("frozen-sync-{name}"), false, frozen);
        let (overlapped, overlapped_rollouts) =
            train(&format!("frozen-overlap-{name}"), true, frozen);
        assert_eq!(sync_rollouts.len(), overlapped_rollouts.len(), "{name}");
        assert_eq!(sync_rollouts, overlapped_rollouts, "{name}: rollouts");
        assert_same(&sync, &overlapped, &format!("{name}: frozen policy"));
    }
}

#[test]
fn each_batch_is_sampled_by_the_weights_one_step_earlier() {
    // Batch 0 is sampled before training; batch k ≥ 1 while step k − 1
    // trains, so with the weights step k − 1 starts from: batches 0 and 1
    // with the initial weights, batch 2 with the weights after step 0.
    let tok = tokenizer();
    let (_, rollouts) = train("one-step-old", true, |c| c.max_steps = 3);
    assert_eq!(rollouts.len(), 3, "one generation batch per step");

    let tmp = scratch("one-step-old-sync");
    let mut cfg = base_config(tmp.path(), 3);
    corrected(&mut cfg);
    let initial = dense_model(&tok);
    let mut sync = Trainer::new(
        cfg.clone(),
        initial.clone(),
        tok.clone(),
        dataset(),
        rewards(),
    )
    .unwrap()
    .with_progress(false);
    sync.train_step().unwrap();
    let after_step_0 = sync.model().clone();
    let moved = after_step_0
        .parameters()
        .iter()
        .any(|(name, p)| p.to_bytes().unwrap() != initial.parameters()[name].to_bytes().unwrap());
    assert!(moved, "step 0 changed no weight");

    for (generation, weights) in [(0, &initial), (1, &initial), (2, &after_step_0)] {
        let batch = &rollouts[generation];
        let (rows, prompts) = prompts_of(batch, cfg.num_generations);
        let expected = rollout::generate(
            weights,
            &tok,
            &rows,
            &prompts,
            &cfg,
            rollout::generation_seed(cfg.seed, generation as u64),
        )
        .unwrap();
        assert_eq!(&expected, batch, "batch {generation}");
    }
    // And batch 2 is not what the initial weights sample.
    let (rows, prompts) = prompts_of(&rollouts[2], cfg.num_generations);
    let stale = rollout::generate(
        &initial,
        &tok,
        &rows,
        &prompts,
        &cfg,
        rollout::generation_seed(cfg.seed, 2),
    )
    .unwrap();
    assert!(
        stale
            .iter()
            .zip(&rollouts[2])
            .any(|(a, b)| a.sampling_logps != b.sampling_logps),
        "batch 2 came from the initial weights"
    );
}

/// The dataset rows and prompt ids of a batch grouped by prompt.
fn prompts_of(batch: &[RolloutSample], g: usize) -> (Vec<usize>, Vec<Vec<u32>>) {
    batch
        .chunks(g)
        .map(|group| (group[0].row_index, group[0].prompt_ids.clone()))
        .unzip()
}

#[test]
fn overlapped_run_resumes_exactly_with_a_batch_sampled_ahead() {
    let (_, tmp) = assert_exact_resume(&Scenario {
        name: "overlap",
        adjust: |c| {
            corrected(c);
            c.overlap_generation = true;
        },
        model: dense_model,
        rewards,
        steps: 5,
        stop: 2,
        mid_batch: false,
    });
    let checkpoint = tmp.path().join("checkpoint-2");
    assert!(
        checkpoint.join("pending_rollout.json").is_file(),
        "the batch sampled during step 2 is kept"
    );
    let state = mlx_grpo::trainer::checkpoint::read_trainer_state(&checkpoint).unwrap();
    assert!(state.pending_rollout);
    // The last checkpoint (end of the run) has nothing sampled ahead.
    let last = tmp.path().join("checkpoint-5");
    assert!(!last.join("pending_rollout.json").exists());
}

#[test]
fn overlapped_run_resumes_exactly_mid_batch() {
    assert_exact_resume(&Scenario {
        name: "overlap-mid-batch",
        adjust: |c| {
            corrected(c);
            c.overlap_generation = true;
            c.steps_per_generation = Some(2);
        },
        model: dense_model,
        rewards,
        steps: 5,
        stop: 3,
        mid_batch: true,
    });
}

#[test]
fn a_damaged_pending_rollout_is_an_error_naming_the_file() {
    let tmp = scratch("overlap-damaged");
    let tok = tokenizer();
    let mut cfg = base_config(tmp.path(), 4);
    corrected(&mut cfg);
    cfg.overlap_generation = true;
    cfg.save_steps = 2;
    let mut trainer = Trainer::new(
        cfg.clone(),
        dense_model(&tok),
        tok.clone(),
        dataset(),
        rewards(),
    )
    .unwrap()
    .with_progress(false);
    trainer.train().unwrap();
    let checkpoint = tmp.path().join("checkpoint-2");
    let file = checkpoint.join("pending_rollout.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vocab = tok.vocab_size();
    for (what, damage) in [
        ("token id", {
            let mut v = value.clone();
            v["samples"][0]["completion_ids"][0] = serde_json::json!(vocab + 5);
            v.to_string()
        }),
        ("log-probabilities", {
            let mut v = value.clone();
            v["samples"][0]["sampling_logp_bits"] = serde_json::json!([]);
            v.to_string()
        }),
        ("dataset row", {
            let mut v = value.clone();
            v["samples"][0]["row_index"] = serde_json::json!(1000);
            v.to_string()
        }),
        ("samples", {
            let mut v = value.clone();
            v["samples"].as_array_mut().unwrap().pop();
            v.to_string()
        }),
        ("samples", "{\"plan\": 3}".to_string()),
    ] {
        std::fs::write(&file, &damage).unwrap();
        let mut resumed = cfg.clone();
        resumed.resume_from_checkpoint = Some(checkpoint.clone());
        let mut trainer = Trainer::new(
            resumed,
            dense_model(&tok),
            tok.clone(),
            dataset(),
            rewards(),
        )
        .unwrap()
        .with_progress(false);
        let err = trainer.train().unwrap_err().to_string();
        assert!(
            err.contains("pending_rollout.json") && err.contains(what),
            "{what}: {err}"
        );
    }
}
