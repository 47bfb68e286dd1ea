//! Stop-and-resume equals the straight run bit for bit (parameters,
//! reference model, optimizer state, log records, metrics file) for each
//! way a generation batch can be spread over optimizer steps, and with the
//! state that lives across steps: TR-DPO's reference model, pending log
//! entries, NaN metrics, a mixture-of-experts model.

mod resume_support;
mod tiny_task;

use mlx_grpo::config::GrpoConfig;
use resume_support::{
    Scenario, assert_exact_resume, dense_model, moe_model, rewards, rewards_with_gaps,
};

fn aligned(_: &mut GrpoConfig) {}

#[test]
fn aligned_batches_resume_exactly() {
    // gas = spg = μ = 1, β = 0: every step is one generation batch.
    assert_exact_resume(&Scenario {
        name: "aligned",
        adjust: aligned,
        model: dense_model,
        rewards,
        steps: 4,
        stop: 2,
        mid_batch: false,
    });
}

#[test]
fn several_iterations_resume_mid_batch_exactly() {
    assert_exact_resume(&Scenario {
        name: "iterations",
        adjust: |c| c.num_iterations = 2,
        model: dense_model,
        rewards,
        steps: 5,
        stop: 3,
        mid_batch: true,
    });
}

#[test]
fn more_generation_steps_than_accumulation_resume_mid_batch_exactly() {
    assert_exact_resume(&Scenario {
        name: "spg-above-gas",
        adjust: |c| c.steps_per_generation = Some(2),
        model: dense_model,
        rewards,
        steps: 5,
        stop: 3,
        mid_batch: true,
    });
}

#[test]
fn more_accumulation_than_generation_steps_resume_mid_batch_exactly() {
    // Each step takes 3 micro-batches from batches of 2: step 3 ends after
    // the first half of the fifth batch.
    assert_exact_resume(&Scenario {
        name: "gas-above-spg",
        adjust: |c| {
            c.gradient_accumulation_steps = 3;
            c.steps_per_generation = Some(2);
        },
        model: dense_model,
        rewards,
        steps: 4,
        stop: 3,
        mid_batch: true,
    });
}

#[test]
fn kl_with_reference_sync_resumes_mid_batch_exactly() {
    let (straight, _) = assert_exact_resume(&Scenario {
        name: "tr-dpo",
        adjust: |c| {
            c.beta = 0.1;
            c.sync_ref_model = true;
            c.ref_model_sync_steps = 2;
            c.ref_model_mixup_alpha = 0.5;
            c.num_iterations = 2;
        },
        model: dense_model,
        rewards,
        steps: 5,
        stop: 3,
        mid_batch: true,
    });
    assert!(
        straight
            .history
            .iter()
            .any(|r| r.metrics.contains_key("kl")),
        "the KL term is not in the run"
    );
}

#[test]
fn masked_truncated_completions_resume_mid_batch_exactly() {
    let (straight, _) = assert_exact_resume(&Scenario {
        name: "mask-truncated",
        adjust: |c| {
            c.mask_truncated_completions = true;
            c.num_iterations = 2;
        },
        model: dense_model,
        rewards,
        steps: 5,
        stop: 3,
        mid_batch: true,
    });
    assert!(
        straight
            .history
            .iter()
            .any(|r| r.metrics["completions/clipped_ratio"] > 0.0),
        "no completion was truncated"
    );
}

#[test]
fn pending_log_entries_resume_exactly() {
    // Logging every 2 steps: the checkpoint of step 3 holds step 3's metrics,
    // which the record of step 4 averages.
    let (straight, dir) = assert_exact_resume(&Scenario {
        name: "pending-logs",
        adjust: |c| {
            c.logging_steps = 2;
            c.steps_per_generation = Some(2);
        },
        model: dense_model,
        rewards,
        steps: 6,
        stop: 3,
        mid_batch: true,
    });
    let steps: Vec<usize> = straight.history.iter().map(|r| r.step).collect();
    assert_eq!(steps, [2, 4, 6]);
    let state = mlx_grpo::trainer::checkpoint::read_trainer_state(&dir.path().join("checkpoint-3"))
        .unwrap();
    assert_eq!(state.pending_logs.len(), 1);
    assert!(state.num_tokens > 0.0);
}

#[test]
fn nan_metrics_resume_exactly() {
    // Unshuffled, the first two batches are the prompts `a+0=`, for which
    // `plus_zero` is not applicable: its metrics are NaN for the whole first
    // logging window, and that record is in the checkpoint.
    let (straight, dir) = assert_exact_resume(&Scenario {
        name: "nan-metric",
        adjust: |c| {
            c.shuffle_dataset = false;
            c.logging_steps = 2;
            c.num_generations = 2;
            c.per_device_train_batch_size = 4;
        },
        model: dense_model,
        rewards: rewards_with_gaps,
        steps: 5,
        stop: 3,
        mid_batch: false,
    });
    let first = &straight.history[0];
    assert_eq!(first.step, 2);
    let nan: Vec<&String> = first
        .metrics
        .iter()
        .filter(|(k, v)| k.contains("plus_zero") && v.is_nan())
        .map(|(k, _)| k)
        .collect();
    assert!(
        !nan.is_empty(),
        "no NaN metric of plus_zero: {:?}",
        first.metrics
    );
    let text = std::fs::read_to_string(dir.path().join("checkpoint-3/trainer_state.json")).unwrap();
    assert!(text.contains("\"NaN\""), "{text}");
}

#[test]
fn moe_model_resumes_mid_batch_exactly() {
    assert_exact_resume(&Scenario {
        name: "moe",
        adjust: |c| c.num_iterations = 2,
        model: moe_model,
        rewards,
        steps: 4,
        stop: 3,
        mid_batch: true,
    });
}
