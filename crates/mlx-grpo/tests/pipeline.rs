//! A generation batch end to end: JSONL file -> sampler -> rewards -> advantages.

use mlx_grpo::Error;
use mlx_grpo::advantages::{AdvantageSettings, compute_advantages};
use mlx_grpo::config::GrpoConfig;
use mlx_grpo::dataset::{Dataset, GenerationSampler, SamplerSpec};
use mlx_grpo::rewards::{
    AccuracyReward, Completion, FinishReason, FormatReward, RewardInput, RewardSet,
    SoftOverlongPunishment,
};

/// Writes `text` to `<name>.jsonl` in a directory of its own, removed when
/// the returned guard is dropped.
fn write_dataset(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join(format!("{name}.jsonl"));
    std::fs::write(&path, text).expect("write dataset");
    (dir, path)
}

#[test]
fn one_generation_batch() {
    let lines: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"prompt": [{{"role": "user", "content": "{i}+{i}?"}}], "answer": {}, "id": {i}}}"#, 2 * i))
        .collect();
    let (_dir, path) = write_dataset("pipeline", &lines.join("\n"));
    let dataset = Dataset::from_jsonl_path(&path).expect("dataset");
    assert_eq!(dataset.len(), 5);

    let mut cfg = GrpoConfig::default();
    cfg.apply_overrides([
        "num_generations=2",
        "per_device_train_batch_size=2",
        "gradient_accumulation_steps=2",
    ])
    .expect("overrides");
    cfg.validate().expect("valid config");
    let mut sampler =
        GenerationSampler::new(dataset.len(), SamplerSpec::from_config(&cfg)).expect("sampler");
    assert_eq!(
        sampler.batches_per_epoch(),
        2,
        "5 prompts, 2 per generation batch"
    );
    let batch = sampler.next_batch();

    // Completion 0 of each group answers correctly inside the expected format; completion 1 runs long.
    let inputs: Vec<RewardInput> = batch
        .sample_indices()
        .iter()
        .enumerate()
        .map(|(slot, &row_index)| {
            let row = dataset.get(row_index).expect("row");
            let gold = row.answer.clone().expect("answer");
            let (text, tokens, finish) = if slot % 2 == 0 {
                (
                    format!("<think>easy</think><answer>{gold}</answer>"),
                    12,
                    FinishReason::Stop,
                )
            } else {
                ("<think>hmm hmm hmm".to_string(), 512, FinishReason::Length)
            };
            RewardInput {
                prompt: row.prompt.clone(),
                completion: Completion::from_text(text, tokens, finish),
                answer: Some(gold),
                extra: row.extra.clone(),
            }
        })
        .collect();

    let mut rewards = RewardSet::new();
    rewards.add(AccuracyReward::default()).expect("add");
    rewards.add(FormatReward::think_answer()).expect("add");
    rewards
        .add_weighted(SoftOverlongPunishment::new(512, 64).expect("params"), 0.5)
        .expect("add");
    let matrix = rewards.score(&inputs).expect("scores");
    assert_eq!(matrix.row(0), Some(&[1.0, 1.0, 0.0][..]));
    assert_eq!(matrix.row(1), Some(&[0.0, 0.0, -1.0][..]));

    let out = compute_advantages(
        &matrix,
        &rewards.weights(),
        &AdvantageSettings::from_config(&cfg),
    )
    .expect("advantages");
    for pair in out.advantages.chunks(2) {
        assert!(pair[0] > 0.7 && pair[1] < -0.7, "{pair:?}");
    }
    let metrics = out.metrics.to_map();
    assert_eq!(metrics["reward"], 0.75); // (2 + -0.5) / 2
    assert_eq!(
        metrics["rewards/soft_overlong_punishment_reward/mean"],
        -0.5
    );
    assert_eq!(metrics["frac_reward_zero_std"], 0.0);
}

#[test]
fn bad_rows_are_reported_with_file_and_line() {
    let (_dir, path) = write_dataset("bad", "{\"prompt\": \"ok\"}\n{\"prompt\": 5}\n");
    let err = Dataset::from_jsonl_path(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::DatasetRow { line: 2, .. }), "{msg}");
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("a number"),
        "{msg}"
    );
}
