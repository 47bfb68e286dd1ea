//! The rollout-versus-training correction in the trainer: the `sampling/*`
//! metrics appear exactly when it is on and follow its bounds, a mask that
//! zeroes every ratio zeroes the policy gradient, and a corrected run
//! resumes in the middle of a generation batch bit for bit.

mod resume_support;
mod tiny_task;

use mlx_grpo::config::{GrpoConfig, ImportanceSamplingMode};
use mlx_grpo::loss::sampling_names;
use mlx_grpo::trainer::Trainer;
use mlx_nn::ModuleExt;
use resume_support::{Scenario, assert_exact_resume, base_config, dense_model, rewards};
use tiny_task::{dataset, scratch, tokenizer};

fn train(
    name: &str,
    adjust: impl FnOnce(&mut GrpoConfig),
) -> (Trainer, Vec<mlx_grpo::trainer::LogRecord>) {
    let dir = scratch(name);
    let tok = tokenizer();
    let mut cfg = base_config(dir.path(), 2);
    adjust(&mut cfg);
    let mut trainer = Trainer::new(cfg, dense_model(&tok), tok, dataset(), rewards())
        .unwrap()
        .with_progress(false);
    let out = trainer.train().unwrap();
    (trainer, out.log_history)
}

const SAMPLING_METRICS: [&str; 5] = [
    sampling_names::LOGP_DIFFERENCE_MEAN,
    sampling_names::LOGP_DIFFERENCE_MAX,
    sampling_names::RATIO_MIN,
    sampling_names::RATIO_MEAN,
    sampling_names::RATIO_MAX,
];

#[test]
fn sampling_metrics_appear_only_with_the_correction() {
    let (_, plain) = train("correction-off", |_| {});
    for record in &plain {
        for name in SAMPLING_METRICS {
            assert!(
                !record.metrics.contains_key(name),
                "{name} logged without the correction"
            );
        }
    }
    let (_, corrected) = train("correction-on", |c| {
        c.vllm_importance_sampling_correction = true
    });
    for record in &corrected {
        let m = |name: &str| {
            *record
                .metrics
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing: {:?}", record.metrics.keys()))
        };
        // The sampler and the training forward of the same weights agree
        // to rounding, so the sequence ratios are near 1 and none is masked.
        let (diff_mean, diff_max) = (m(SAMPLING_METRICS[0]), m(SAMPLING_METRICS[1]));
        assert!(
            (0.0..=diff_max).contains(&diff_mean),
            "{:?}",
            record.metrics
        );
        assert!(diff_max < 1e-3, "sampler and trainer disagree: {diff_max}");
        let (lo, mean, hi) = (
            m(SAMPLING_METRICS[2]),
            m(SAMPLING_METRICS[3]),
            m(SAMPLING_METRICS[4]),
        );
        assert!(lo <= mean && mean <= hi, "{:?}", record.metrics);
        assert!(
            (lo - 1.0).abs() < 1e-2 && (hi - 1.0).abs() < 1e-2,
            "{lo} {hi}"
        );
    }
}

#[test]
fn truncation_bounds_reach_every_ratio() {
    // Every ratio is near 1, so an upper bound of 0.25 clips all of them.
    let (_, log) = train("correction-truncate", |c| {
        c.vllm_importance_sampling_correction = true;
        c.vllm_importance_sampling_mode = ImportanceSamplingMode::TokenTruncate;
        c.vllm_importance_sampling_clip_max = Some(0.25);
    });
    for record in &log {
        for name in &SAMPLING_METRICS[2..] {
            assert_eq!(record.metrics[*name], 0.25, "{name}: {:?}", record.metrics);
        }
    }
}

#[test]
fn masking_every_ratio_stops_the_policy_gradient() {
    let tok = tokenizer();
    let initial = dense_model(&tok).parameters();
    let (trainer, log) = train("correction-mask-all", |c| {
        c.vllm_importance_sampling_correction = true;
        c.vllm_importance_sampling_mode = ImportanceSamplingMode::TokenMask;
        c.vllm_importance_sampling_clip_max = Some(0.25);
    });
    for record in &log {
        assert_eq!(record.metrics[sampling_names::RATIO_MAX], 0.0);
        assert_eq!(record.metrics["grad_norm"], 0.0, "{:?}", record.metrics);
    }
    for (name, p) in trainer.model().parameters() {
        assert!(
            p.to_bytes().unwrap() == initial[&name].to_bytes().unwrap(),
            "{name} moved though every ratio is masked"
        );
    }
}

#[test]
fn corrected_run_resumes_mid_batch_exactly() {
    let (straight, _) = assert_exact_resume(&Scenario {
        name: "rollout-correction",
        adjust: |c| {
            c.vllm_importance_sampling_correction = true;
            c.vllm_importance_sampling_mode = ImportanceSamplingMode::TokenTruncate;
            c.steps_per_generation = Some(2);
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
            .all(|r| r.metrics.contains_key(SAMPLING_METRICS[3]))
    );
}
