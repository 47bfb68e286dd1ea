//! GRPO steps of the library's `Trainer`, synchronous against generation
//! overlapped with training (`overlap_generation`), in one process on one
//! device: the same model, prompts, rewards and settings, the rollout
//! correction on in both (overlap requires it), so the two differ only in
//! when the next generation batch is sampled.

use std::time::Instant;

use mlx_grpo::config::GrpoConfig;
use mlx_grpo::dataset::{Dataset, Prompt, Row};
use mlx_grpo::rewards::{RewardInput, RewardSet, per_sample};
use mlx_grpo::trainer::Trainer;
use mlx_lm::Tokenizer;
use mlx_lm::models::Model;
use serde_json::{Value, json};

use crate::Res;

/// Optimizer steps timed per mode, after one warm-up step (which samples
/// the first batch synchronously in both modes) and before a last one
/// (which, overlapped, has no next batch to sample).
const TIMED_STEPS: usize = 4;

/// Median step time of the synchronous and the overlapped trainer, and
/// their ratio. `config` sets the batch (as the GRPO step measurement's).
pub fn bench(
    model: &Model,
    config: &GrpoConfig,
    tokenizer: &Tokenizer,
    prompt_words: usize,
) -> Res<Value> {
    let prompts = config.generation_batch_size() / config.num_generations.max(1);
    let dataset = dataset(prompts * (TIMED_STEPS + 2), prompt_words)?;
    let mut out = serde_json::Map::new();
    for (name, overlap) in [("sync", false), ("overlap", true)] {
        eprintln!("GRPO trainer steps, {name} ...");
        let scratch =
            std::env::temp_dir().join(format!("gpu_bench_trainer_{name}_{}", std::process::id()));
        let config = GrpoConfig {
            output_dir: scratch.clone(),
            max_steps: i64::try_from(TIMED_STEPS + 2)?,
            save_steps: 1_000_000,
            logging_steps: 1,
            vllm_importance_sampling_correction: true,
            overlap_generation: overlap,
            ..config.clone()
        };
        let mut trainer = Trainer::new(
            config,
            model.clone(),
            tokenizer.clone(),
            dataset.clone(),
            rewards()?,
        )?
        .with_progress(false);
        let mut seconds = Vec::with_capacity(TIMED_STEPS + 2);
        for _ in 0..TIMED_STEPS + 2 {
            let start = Instant::now();
            trainer.train_step()?;
            seconds.push(start.elapsed().as_secs_f64());
        }
        drop(trainer);
        std::fs::remove_dir_all(&scratch).ok();
        let mut timed = seconds[1..=TIMED_STEPS].to_vec();
        timed.sort_by(f64::total_cmp);
        let median = timed[timed.len() / 2];
        out.insert(
            name.into(),
            json!({ "median_step_seconds": median, "step_seconds": seconds }),
        );
    }
    let median = |name: &str| {
        out[name]["median_step_seconds"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let speedup = median("sync") / median("overlap");
    out.insert("speedup".into(), json!(speedup));
    Ok(Value::Object(out))
}

/// Text prompts of `words` words each.
fn dataset(rows: usize, words: usize) -> Res<Dataset> {
    let vocabulary = [
        "count", "the", "apples", "seven", "green", "river", "stone", "light",
    ];
    let rows = (0..rows)
        .map(|i| {
            let text: Vec<&str> = (0..words)
                .map(|w| vocabulary[(i * 31 + w * 7) % vocabulary.len()])
                .collect();
            Row {
                prompt: Prompt::Text(text.join(" ")),
                answer: None,
                extra: Default::default(),
            }
        })
        .collect();
    Ok(Dataset::from_rows(rows, "bench prompts")?)
}

/// A reward that spreads a random model's completions: the share of
/// vowels in the text.
fn rewards() -> Res<RewardSet> {
    let mut set = RewardSet::new();
    set.add(per_sample("vowels", |x: &RewardInput| {
        let text = &x.completion.raw_text;
        let vowels = text.chars().filter(|c| "aeiou".contains(*c)).count();
        vowels as f32 / text.chars().count().max(1) as f32
    }))?;
    Ok(set)
}
