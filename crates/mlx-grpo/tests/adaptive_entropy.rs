//! `use_adaptive_entropy` in the training step and the trainer, with TRL's
//! semantics: no bonus until the first measurement, the bonus applied with
//! the previous step's coefficient only while the previous step's entropy
//! was at most `entropy_target`, the coefficient moved by
//! `entropy_coef_delta` within its bounds after each step and logged as
//! `entropy_coef`, and its state kept in checkpoints.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mlx_grpo::config::{GrpoConfig, LrSchedulerType, Optim};
use mlx_grpo::dataset::{Dataset, Prompt, Row};
use mlx_grpo::loss::{EntropyControl, EntropyControlState, GrpoLoss};
use mlx_grpo::rewards::{FinishReason, RewardInput, RewardSet, per_sample};
use mlx_grpo::trainer::{MicroBatch, RolloutSample, Trainer, build_optimizer, optimize_step};
use mlx_lm::loader::{load_model, random_model};
use mlx_lm::models::{Model, ModelConfig, Qwen3Config};
use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_tensor::Dtype;

fn fixture_model() -> Model {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mlx-lm/tests/fixtures/lm/qwen3_tied");
    load_model(dir, Some(Dtype::F32)).unwrap()
}

fn samples() -> Vec<RolloutSample> {
    let tokens: Vec<u32> = vec![1, 17, 245, 999, 3, 500, 42, 42, 7, 800, 123, 0, 64, 311];
    [9usize, 6]
        .iter()
        .map(|&split| RolloutSample {
            row_index: 0,
            prompt_ids: tokens[..split].to_vec(),
            completion_ids: tokens[split..].to_vec(),
            sampling_logps: vec![0.0; tokens.len() - split],
            finish_reason: FinishReason::Stop,
            tools: None,
        })
        .collect()
}

/// A config whose steps leave the model unchanged (SGD at lr 0), so that
/// every step sees the same model and only the entropy coefficient varies.
fn config(adjust: impl Fn(&mut GrpoConfig)) -> GrpoConfig {
    let mut c = GrpoConfig {
        num_generations: 2,
        per_device_train_batch_size: 2,
        gradient_accumulation_steps: 2,
        optim: Optim::Sgd,
        learning_rate: 0.0,
        lr_scheduler_type: LrSchedulerType::Constant,
        max_steps: 3,
        ..GrpoConfig::default()
    };
    adjust(&mut c);
    c
}

/// `steps` optimizer steps of two micro-batches each with one entropy
/// controller: the metrics of each step.
fn run(config: &GrpoConfig, steps: usize) -> Vec<BTreeMap<String, f64>> {
    let mut model = fixture_model();
    let samples = samples();
    let num_items = samples.iter().map(|s| s.completion_ids.len() as f64).sum();
    let micro: Vec<MicroBatch> = [[0usize, 1], [1, 0]]
        .iter()
        .map(|part| {
            MicroBatch::build(
                part,
                &samples,
                &[1.0, -1.0],
                0,
                num_items,
                config,
                &model,
                None,
            )
            .unwrap()
        })
        .collect();
    let mut optimizer = build_optimizer(config, steps).unwrap();
    let loss = GrpoLoss::from_config(config);
    let mut entropy = EntropyControl::from_config(config);
    (0..steps)
        .map(|_| {
            optimize_step(
                &mut model,
                &mut optimizer,
                &loss,
                &mut entropy,
                config,
                &micro,
            )
            .unwrap()
        })
        .collect()
}

/// The loss of a step with a fixed (static) entropy coefficient.
fn static_loss(coef: f64) -> f64 {
    run(&config(|c| c.entropy_coef = coef), 1)[0]["loss"]
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{what}: {got} vs {want}"
    );
}

#[test]
fn low_entropy_raises_the_coefficient_from_the_second_step() {
    let adaptive = config(|c| {
        c.use_adaptive_entropy = true;
        c.entropy_coef = 0.1;
        c.entropy_coef_delta = 0.05;
        c.entropy_coef_max = 0.18;
        // Always above the measured entropy: the bonus grows.
        c.entropy_target = 1e3;
    });
    let steps = run(&adaptive, 3);
    // Step 1: nothing measured yet, no bonus.
    assert_close(steps[0]["loss"], static_loss(0.0), "step 1 loss");
    assert_close(steps[0]["entropy_coef"], 0.15, "coef after step 1");
    // Step 2: the bonus with the coefficient step 1 left.
    assert_close(steps[1]["loss"], static_loss(0.15), "step 2 loss");
    assert_close(steps[1]["entropy_coef"], 0.18, "coef after step 2 (capped)");
    assert_close(steps[2]["loss"], static_loss(0.18), "step 3 loss");
    assert!(
        steps[1]["loss"] < steps[0]["loss"],
        "the bonus lowers the loss"
    );
}

#[test]
fn high_entropy_gates_the_bonus_off_and_lowers_the_coefficient() {
    let adaptive = config(|c| {
        c.use_adaptive_entropy = true;
        c.entropy_coef = 0.1;
        c.entropy_coef_delta = 0.08;
        c.entropy_coef_min = 0.0;
        // Below any measured entropy: no bonus, the coefficient falls.
        c.entropy_target = 0.0;
    });
    let steps = run(&adaptive, 2);
    let no_bonus = static_loss(0.0);
    assert_close(steps[0]["loss"], no_bonus, "step 1 loss");
    assert_close(steps[1]["loss"], no_bonus, "step 2 loss");
    assert_close(steps[0]["entropy_coef"], 0.02, "coef after step 1");
    assert_close(steps[1]["entropy_coef"], 0.0, "coef after step 2 (floored)");
}

#[test]
fn trainer_adapts_the_coefficient_and_checkpoints_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut trainer = adaptive_trainer(dir, 2);
    let out = trainer.train().unwrap();
    let coefs: Vec<f64> = out
        .log_history
        .iter()
        .map(|r| r.metrics["entropy_coef"])
        .collect();
    assert_eq!(coefs.len(), 2);
    assert_close(coefs[0], 0.01, "coef after step 1");
    assert_close(coefs[1], 0.02, "coef after step 2");
    let checkpoint = out.last_checkpoint.unwrap();
    let state = EntropyControlState::read(&checkpoint).unwrap().unwrap();
    assert_close(state.entropy_coef, 0.02, "checkpointed coef");
    assert!(state.last_world_entropy.is_finite() && state.last_world_entropy > 0.0);
    // A resumed run continues from the checkpointed controller, not from
    // the config's initial coefficient.
    let mut resumed = adaptive_trainer(dir, 3);
    resumed.resume_from(&checkpoint).unwrap();
    let metrics = resumed.train_step().unwrap();
    assert_close(metrics["entropy_coef"], 0.03, "coef after the resumed step");
}

/// A trainer of a tiny random model with adaptive entropy control whose
/// target is above any entropy (the coefficient grows by 0.01 a step).
fn adaptive_trainer(dir: &std::path::Path, steps: i64) -> Trainer {
    let tok = VocabTokenizerBuilder::char_level("0123456789+=".chars())
        .pad("<pad>")
        .eos("<|endoftext|>")
        .build()
        .unwrap();
    let model_config: Qwen3Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tok.vocab_size(), "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "rope_theta": 10000.0, "max_position_embeddings": 32, "tie_word_embeddings": true
    }))
    .unwrap();
    let model = random_model(&ModelConfig::Qwen3(model_config), 7, Dtype::F32).unwrap();
    let rows = (0..4u32)
        .map(|i| Row {
            prompt: Prompt::Text(format!("{i}+{i}=")),
            answer: None,
            extra: Default::default(),
        })
        .collect();
    let dataset = Dataset::from_rows(rows, "sums").unwrap();
    let mut rewards = RewardSet::new();
    rewards
        .add(per_sample("length", |x: &RewardInput| {
            x.completion.num_tokens as f32
        }))
        .unwrap();
    let grpo = GrpoConfig {
        output_dir: dir.to_path_buf(),
        num_generations: 2,
        per_device_train_batch_size: 4,
        max_completion_length: 3,
        use_adaptive_entropy: true,
        entropy_coef: 0.0,
        entropy_coef_delta: 0.01,
        entropy_target: 1e3,
        max_steps: steps,
        logging_steps: 1,
        ..GrpoConfig::default()
    };
    Trainer::new(grpo, model, tok, dataset, rewards)
        .unwrap()
        .with_progress(false)
}
