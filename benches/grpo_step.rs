//! One GRPO step of the library's [`Trainer`] on a small random Qwen3:
//! rollout (batched sampling), rewards and advantages, scoring with
//! gradients per micro-batch, clipping and the AdamW update, timed together
//! as [`Trainer::train_step`] runs them.
//!
//! Model: Qwen3 shapes with hidden 256, 4 layers, 4 query / 2 key-value
//! heads of 64, SwiGLU 768, vocabulary 1,000, tied embeddings, random f32
//! weights. Tokenizer: word level, token `i` is the word `ti` (ids 0–2 are
//! `<unk>`, `<pad>`, `<eos>`, as in the TRL script's), with no
//! end-of-sequence id, so every completion runs to `max_completion_length`. GRPO: 4 prompts of 32 tokens × G = 8
//! completions of 64 sampled tokens (temperature 1), loss `dapo`, β = 0,
//! one iteration, micro-batches of 8 completions (4 accumulation steps),
//! a cheap pseudo-random reward. Criterion reports completions per second;
//! a summary line adds completion tokens per second.
//!
//! Settings (environment): `GRPO_STEP_HIDDEN` (256), `GRPO_STEP_LAYERS` (4),
//! `GRPO_STEP_VOCAB` (1000), `GRPO_STEP_PROMPTS` (4), `GRPO_STEP_GROUP` (8),
//! `GRPO_STEP_PROMPT_LEN` (32), `GRPO_STEP_TOKENS` (64), `GRPO_STEP_MICRO`
//! (8), `GRPO_STEP_SAMPLES` (criterion samples, 10). The benchmark id names
//! them, e.g. `grpo_step/h256_l4_v1000_p4_g8_n64_mb8`.
//! `scripts/compare/grpo_step_trl.py` runs this bench and TRL's `GRPOTrainer` on the
//! same shapes and prints the ratio:
//!
//! ```text
//! cargo bench --bench grpo_step
//! /work/venv-ref/bin/python scripts/compare/grpo_step_trl.py
//! ```

mod common;

use common::env;

use std::cell::Cell;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use mlx_grpo::config::{GrpoConfig, LossType};
use mlx_grpo::dataset::{Dataset, Prompt, Row};
use mlx_grpo::rewards::{RewardSet, reward_fn};
use mlx_grpo::trainer::{RolloutSample, Trainer, TrainerCallback};
use mlx_lm::loader::random_model;
use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_lm::{ModelConfig, Qwen3Config};
use mlx_nn::ModuleExt;
use mlx_tensor::{Device, Dtype};

/// The sizes of the run.
struct Settings {
    hidden: usize,
    layers: i32,
    vocab: usize,
    prompts: usize,
    group: usize,
    prompt_len: usize,
    tokens: usize,
    micro: usize,
    samples: usize,
}

fn settings() -> Settings {
    Settings {
        hidden: env("GRPO_STEP_HIDDEN", 256),
        layers: env("GRPO_STEP_LAYERS", 4),
        vocab: env("GRPO_STEP_VOCAB", 1000),
        prompts: env("GRPO_STEP_PROMPTS", 4),
        group: env("GRPO_STEP_GROUP", 8),
        prompt_len: env("GRPO_STEP_PROMPT_LEN", 32),
        tokens: env("GRPO_STEP_TOKENS", 64),
        micro: env("GRPO_STEP_MICRO", 8),
        samples: env::<usize>("GRPO_STEP_SAMPLES", 10).max(10),
    }
}

/// Qwen3 with `hidden` (64-wide heads, a quarter of them key-value heads
/// rounded up to divide, SwiGLU 3 × hidden).
fn model_config(s: &Settings) -> ModelConfig {
    let heads = (s.hidden / 64).max(1) as i32;
    ModelConfig::Qwen3(Qwen3Config {
        model_type: "qwen3".into(),
        vocab_size: s.vocab as i32,
        hidden_size: s.hidden as i32,
        intermediate_size: 3 * s.hidden as i32,
        num_hidden_layers: s.layers,
        num_attention_heads: heads,
        num_key_value_heads: Some((heads / 2).max(1)),
        head_dim: Some(64),
        rms_norm_eps: 1e-6,
        rope_theta: Some(1_000_000.0),
        rope_scaling: None,
        rope_parameters: None,
        max_position_embeddings: 4096,
        tie_word_embeddings: true,
        attention_bias: false,
        hidden_act: "silu".into(),
        use_sliding_window: false,
        layer_types: None,
        torch_dtype: None,
        dtype: None,
    })
}

/// `rows` pseudo-random prompts of `len` words `t<id>` (ids from 3 up, as
/// the TRL script's).
fn prompt_texts(rows: usize, len: usize, vocab: u64) -> Vec<String> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..rows)
        .map(|_| {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    format!("t{}", 3 + state % (vocab - 3))
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Notes when the rollout of a step has been sampled.
struct RolloutClock(Rc<Cell<Option<Instant>>>);

impl TrainerCallback for RolloutClock {
    fn on_rollout(&mut self, _samples: &mut [RolloutSample]) {
        self.0.set(Some(Instant::now()));
    }
}

/// The trainer of the bench, and the clock its rollouts set.
fn trainer(s: &Settings) -> (Trainer, Rc<Cell<Option<Instant>>>) {
    let words = ["<unk>", "<pad>", "<eos>"]
        .into_iter()
        .map(String::from)
        .chain((3..s.vocab).map(|i| format!("t{i}")));
    // No end-of-sequence token: every completion runs to full length.
    let tokenizer = VocabTokenizerBuilder::word_level(words)
        .unk("<unk>")
        .build()
        .unwrap_or_else(|e| panic!("tokenizer: {e}"));
    assert_eq!(tokenizer.vocab_size(), s.vocab);
    assert!(tokenizer.eos_token_ids().is_empty());
    let model =
        random_model(&model_config(s), 0, Dtype::F32).unwrap_or_else(|e| panic!("model: {e}"));
    model
        .eval_params()
        .unwrap_or_else(|e| panic!("weights: {e}"));
    eprintln!(
        "grpo_step: random Qwen3, {} parameters, f32, on {:?} (MLX {})",
        model.num_parameters(),
        Device::default_device(),
        mlx_tensor::device::mlx_version()
    );
    let rows = prompt_texts(s.prompts, s.prompt_len, s.vocab as u64)
        .into_iter()
        .map(|text| Row {
            prompt: Prompt::Text(text),
            answer: None,
            extra: Default::default(),
        })
        .collect();
    let dataset = Dataset::from_rows(rows, "random").unwrap_or_else(|e| panic!("dataset: {e}"));
    let mut rewards = RewardSet::new();
    rewards
        .add(reward_fn("hash", |inputs| {
            Ok(inputs
                .iter()
                .map(|x| {
                    let mut h = DefaultHasher::new();
                    x.completion.raw_text.hash(&mut h);
                    (h.finish() % 1000) as f32 / 1000.0
                })
                .collect())
        }))
        .unwrap_or_else(|e| panic!("reward: {e}"));
    let completions = s.prompts * s.group;
    let config = GrpoConfig {
        num_generations: s.group,
        max_completion_length: s.tokens,
        per_device_train_batch_size: s.micro,
        gradient_accumulation_steps: (completions / s.micro).max(1),
        temperature: 1.0,
        loss_type: LossType::Dapo,
        beta: 0.0,
        num_iterations: 1,
        learning_rate: 1e-6,
        // Far beyond the steps taken, so the schedule stays put.
        max_steps: 1_000_000,
        shuffle_dataset: false,
        // Off on both sides (scripts/compare/grpo_step_trl.py): for a small model on
        // the CPU recomputing activations only costs time.
        gradient_checkpointing: false,
        output_dir: std::env::temp_dir().join("mlx-grpo-bench-grpo-step"),
        ..GrpoConfig::default()
    };
    let clock = Rc::new(Cell::new(None));
    let trainer = Trainer::new(config, model, tokenizer, dataset, rewards)
        .unwrap_or_else(|e| panic!("trainer: {e}"))
        .with_progress(false)
        .with_callback(RolloutClock(clock.clone()));
    (trainer, clock)
}

/// The time of one step and of its rollout (sampling only); checks that
/// every completion ran to full length.
fn step(
    trainer: &mut Trainer,
    clock: &Cell<Option<Instant>>,
    tokens: usize,
) -> (Duration, Duration) {
    clock.set(None);
    let start = Instant::now();
    let metrics = trainer
        .train_step()
        .unwrap_or_else(|e| panic!("train_step: {e}"));
    let elapsed = start.elapsed();
    for key in ["completions/min_length", "completions/max_length"] {
        assert_eq!(metrics.get(key).copied(), Some(tokens as f64), "{key}");
    }
    let rollout = clock.get().map_or(Duration::ZERO, |t| t - start);
    (elapsed, rollout)
}

fn bench_grpo_step(c: &mut Criterion) {
    let s = settings();
    let (mut trainer, clock) = trainer(&s);
    let completions = s.prompts * s.group;
    // Warm-up: kernels, optimizer state.
    let (first, _) = step(&mut trainer, &clock, s.tokens);
    eprintln!("grpo_step: first step {:.3} s", first.as_secs_f64());

    let mut group = c.benchmark_group("grpo_step");
    group.sample_size(s.samples);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(first.mul_f64(1.2 * s.samples as f64));
    group.throughput(Throughput::Elements(completions as u64));
    let name = format!(
        "h{}_l{}_v{}_p{}_g{}_n{}_mb{}",
        s.hidden, s.layers, s.vocab, s.prompts, s.group, s.tokens, s.micro
    );
    // (step, rollout) seconds of every step criterion runs.
    let mut times: Vec<(f64, f64)> = Vec::new();
    group.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (t, rollout) = step(&mut trainer, &clock, s.tokens);
                times.push((t.as_secs_f64(), rollout.as_secs_f64()));
                total += t;
            }
            total
        })
    });
    group.finish();

    if !times.is_empty() {
        let n = times.len() as f64;
        let mean = times.iter().map(|t| t.0).sum::<f64>() / n;
        let rollout = times.iter().map(|t| t.1).sum::<f64>() / n;
        let tokens = (completions * s.tokens) as f64;
        println!(
            "grpo_step {name}: {mean:.3} s/step ({rollout:.3} s sampling), {:.1} completions/s, \
             {:.0} completion tokens/s ({completions} completions × {} tokens, mean of {} steps)",
            completions as f64 / mean,
            tokens / mean,
            s.tokens,
            times.len()
        );
    }
}

criterion_group!(benches, bench_grpo_step);
criterion_main!(benches);
