//! Helpers of the resume tests: a tiny task and model, and the check that a
//! run stopped at a checkpoint and resumed ends bit for bit where the same
//! run trained straight through ends.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlx_grpo::config::{GrpoConfig, LossType};
use mlx_grpo::rewards::{AccuracyReward, RewardInput, RewardSet, per_sample};
use mlx_grpo::trainer::checkpoint::read_trainer_state;
use mlx_grpo::trainer::metrics_log::read_metrics;
use mlx_grpo::trainer::{LogRecord, Trainer};
use mlx_lm::Tokenizer;
use mlx_lm::loader::{random_model, tiny_qwen3_moe_config};
use mlx_lm::models::{Model, ModelConfig};
use mlx_nn::{ModuleExt, ParamMap};
use mlx_tensor::Dtype;
use tempfile::TempDir;

pub use crate::tiny_task::{dataset, dense_model, scratch, tokenizer};

/// mlx-lm's tiny Qwen3-MoE (a dense and a sparse layer, 8 experts, top 2)
/// with this tokenizer's vocabulary.
pub fn moe_model(tok: &Tokenizer) -> Model {
    let ModelConfig::Qwen3Moe(mut config) = tiny_qwen3_moe_config() else {
        panic!("tiny_qwen3_moe_config is not a Qwen3-MoE config");
    };
    config.base.vocab_size = tok.vocab_size() as i32;
    config.base.max_position_embeddings = 32;
    random_model(&ModelConfig::Qwen3Moe(config), 7, Dtype::F32).unwrap()
}

/// Accuracy, completion length, and the sum of the completion's digits (so
/// that almost every group has a spread of rewards, hence gradients).
pub fn rewards() -> RewardSet {
    let mut set = RewardSet::new();
    set.add(AccuracyReward::default()).unwrap();
    set.add(per_sample("length", |x: &RewardInput| {
        x.completion.num_tokens as f32
    }))
    .unwrap();
    set.add(per_sample("digit_sum", |x: &RewardInput| {
        x.completion
            .raw_text
            .chars()
            .filter_map(|c| c.to_digit(10))
            .sum::<u32>() as f32
    }))
    .unwrap();
    set
}

/// [`rewards`] plus `plus_zero`, which is "not applicable" (NaN, TRL's
/// `None`) for the prompts `a+0=`.
pub fn rewards_with_gaps() -> RewardSet {
    let mut set = rewards();
    set.add(per_sample("plus_zero", |x: &RewardInput| {
        let text = x.prompt.last_user_text();
        if text.ends_with("+0=") {
            f32::NAN
        } else {
            1.0 / (1.0 + x.completion.num_tokens as f32)
        }
    }))
    .unwrap();
    set
}

/// The base config: G = 4, four completions per micro-batch, three tokens.
pub fn base_config(dir: &Path, steps: i64) -> GrpoConfig {
    GrpoConfig {
        output_dir: dir.to_path_buf(),
        num_generations: 4,
        per_device_train_batch_size: 4,
        max_completion_length: 3,
        learning_rate: 1e-2,
        loss_type: LossType::Dapo,
        max_steps: steps,
        logging_steps: 1,
        save_steps: 1000,
        seed: 3,
        ..GrpoConfig::default()
    }
}

/// A resume scenario.
pub struct Scenario {
    /// Test name (directories).
    pub name: &'static str,
    /// Changes to [`base_config`].
    pub adjust: fn(&mut GrpoConfig),
    /// The model.
    pub model: fn(&Tokenizer) -> Model,
    /// The reward functions.
    pub rewards: fn() -> RewardSet,
    /// Optimizer steps of the run.
    pub steps: i64,
    /// The step whose checkpoint is resumed from.
    pub stop: usize,
    /// Whether `stop` is in the middle of a generation batch.
    pub mid_batch: bool,
}

/// What a finished run is compared by.
pub struct RunEnd {
    /// Final parameters.
    pub params: ParamMap,
    /// Final reference-model parameters.
    pub ref_params: Option<ParamMap>,
    /// Optimizer tensors and metadata.
    pub optimizer: (ParamMap, std::collections::HashMap<String, String>),
    /// The returned log history.
    pub history: Vec<LogRecord>,
    /// The records of `metrics.jsonl`.
    pub file: Vec<LogRecord>,
    /// Steps taken.
    pub steps: usize,
}

/// Trains to the end and collects what runs are compared by.
pub fn run(trainer: &mut Trainer, dir: &Path) -> RunEnd {
    let out = trainer.train().unwrap();
    RunEnd {
        params: trainer.model().parameters(),
        ref_params: trainer.ref_model().map(|m| m.parameters()),
        optimizer: trainer.optimizer().state_dict().unwrap(),
        history: out.log_history,
        file: read_metrics(&dir.join("metrics.jsonl")).unwrap(),
        steps: out.global_step,
    }
}

fn trainer(s: &Scenario, dir: &Path, save_steps: usize, resume: Option<PathBuf>) -> Trainer {
    let tok = tokenizer();
    let mut cfg = base_config(dir, s.steps);
    (s.adjust)(&mut cfg);
    cfg.save_steps = save_steps;
    cfg.resume_from_checkpoint = resume;
    Trainer::new(cfg, (s.model)(&tok), tok, dataset(), (s.rewards)())
        .unwrap()
        .with_progress(false)
}

/// Trains the scenario straight through (no checkpoint before the end);
/// then again saving at `stop` (the run goes on to the end after the save,
/// as a run killed later would have logged more steps); then resumes from
/// the `stop` checkpoint in that second directory. Asserts that the second
/// and the resumed run end exactly as the first, and returns the first
/// run's end and the directory of the resumed run (removed when dropped).
pub fn assert_exact_resume(s: &Scenario) -> (RunEnd, TempDir) {
    let straight_tmp = scratch(&format!("{}-straight", s.name));
    let straight_dir = straight_tmp.path();
    let no_save = usize::try_from(s.steps).unwrap() + 1;
    let straight = run(&mut trainer(s, straight_dir, no_save, None), straight_dir);

    let tmp = scratch(&format!("{}-stopped", s.name));
    let dir = tmp.path();
    let saving = run(&mut trainer(s, dir, s.stop, None), dir);
    assert_same(
        &straight,
        &saving,
        &format!("{}: saving at step {}", s.name, s.stop),
    );

    let checkpoint = dir.join(format!("checkpoint-{}", s.stop));
    let state = read_trainer_state(&checkpoint).unwrap();
    assert_eq!(state.global_step, s.stop, "{}", s.name);
    assert_eq!(
        state.buffered_micro_steps > 0,
        s.mid_batch,
        "{}: is step {} in the middle of a generation batch?",
        s.name,
        s.stop
    );
    assert_eq!(
        checkpoint.join("rollout_buffer.safetensors").is_file(),
        s.mid_batch,
        "{}",
        s.name
    );
    let resumed = run(&mut trainer(s, dir, s.stop, Some(checkpoint)), dir);
    assert_same(
        &straight,
        &resumed,
        &format!("{}: resumed at step {}", s.name, s.stop),
    );
    (straight, tmp)
}

/// Bits of a metric (NaN equals NaN); `step_time` (wall clock) left out.
fn metric_bits(record: &LogRecord) -> (usize, BTreeMap<String, u64>) {
    let bits = record
        .metrics
        .iter()
        .filter(|(k, _)| k.as_str() != "step_time")
        .map(|(k, v)| (k.clone(), v.to_bits()))
        .collect();
    (record.step, bits)
}

fn records_bits(records: &[LogRecord]) -> Vec<(usize, BTreeMap<String, u64>)> {
    records.iter().map(metric_bits).collect()
}

/// Two parameter maps alike bit for bit: names, dtypes, shapes and bytes.
pub fn assert_same_params(a: &ParamMap, b: &ParamMap, what: &str) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (name, p) in a {
        assert_eq!(p.dtype(), b[name].dtype(), "{name}: {what}");
        assert_eq!(p.shape(), b[name].shape(), "{name}: {what}");
        assert!(
            p.to_bytes().unwrap() == b[name].to_bytes().unwrap(),
            "{name} differs: {what}"
        );
    }
}

/// Two runs ended bit for bit alike: parameters, reference model,
/// optimizer state, log history and metrics file.
pub fn assert_same(a: &RunEnd, b: &RunEnd, what: &str) {
    assert_eq!(a.steps, b.steps, "{what}");
    assert_same_params(&a.params, &b.params, &format!("parameters, {what}"));
    match (&a.ref_params, &b.ref_params) {
        (Some(x), Some(y)) => assert_same_params(x, y, &format!("reference model, {what}")),
        (None, None) => {}
        _ => panic!("only one run has a reference model: {what}"),
    }
    assert_same_params(
        &a.optimizer.0,
        &b.optimizer.0,
        &format!("optimizer, {what}"),
    );
    assert_eq!(a.optimizer.1, b.optimizer.1, "optimizer metadata, {what}");
    assert_eq!(
        records_bits(&a.history),
        records_bits(&b.history),
        "log history, {what}"
    );
    assert_eq!(
        records_bits(&a.file),
        records_bits(&b.file),
        "metrics.jsonl, {what}"
    );
}
