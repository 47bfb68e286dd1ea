//! Decoding throughput of a Qwen3-0.6B-shaped model with random weights:
//! tokens per second at batch 1 ([`generate_step`]) and batch-generation
//! throughput at batch 8 and 64 ([`generate_batch`]).
//!
//! Shapes of Qwen3-0.6B: vocabulary 151,936, hidden 1,024, 28 layers, 16
//! query and 8 key/value heads of 128, SwiGLU 3,072, tied embeddings. Every
//! run is greedy from pseudo-random prompts, ignores end-of-sequence ids and
//! generates the same number of tokens per sequence. Only decoding is timed:
//! from the first generated token(s) to the last, so `n` new tokens per
//! sequence count as `n - 1` decode steps (the prompt and the first step are
//! left out). Criterion reports tokens per second over all rows.
//!
//! Settings (environment): `DECODE_PROMPT` (prompt tokens, default 128),
//! `DECODE_TOKENS` (new tokens per sequence, default 64), `DECODE_BATCHES`
//! (default `1,8,64`), `DECODE_LAYERS` (default 28; fewer for quick runs),
//! `DECODE_DTYPE` (`bf16` default, `f16`, `f32`), `DECODE_DEVICE` (`cpu` or
//! `gpu`; default MLX's). `scripts/compare/decode_mlx_lm.py` runs this bench and the
//! same decoding through mlx-lm and prints the ratios:
//!
//! ```text
//! cargo bench --bench decode
//! python scripts/compare/decode_mlx_lm.py
//! ```

mod common;

use common::{env, env_dtype, env_list, select_device};

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mlx_lm::Model;
use mlx_lm::generate::{BatchOptions, GenerateOptions, generate_batch, generate_step};
use mlx_lm::loader::{qwen3_0_6b_config, random_model};
use mlx_lm::sample::RandomState;
use mlx_nn::ModuleExt;
use mlx_tensor::{Device, Dtype};

struct Settings {
    prompt: usize,
    tokens: usize,
    batches: Vec<usize>,
    layers: i32,
    dtype: Dtype,
}

fn settings() -> Settings {
    let dtype = env_dtype("DECODE_DTYPE");
    select_device("DECODE_DEVICE");
    let batches = env_list("DECODE_BATCHES", "1,8,64");
    Settings {
        prompt: env("DECODE_PROMPT", 128),
        tokens: env::<usize>("DECODE_TOKENS", 64).max(2),
        batches,
        layers: env("DECODE_LAYERS", 28),
        dtype,
    }
}

/// `rows` pseudo-random prompts of `len` tokens.
fn prompts(rows: usize, len: usize, vocab: u64) -> Vec<Vec<u32>> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..rows)
        .map(|_| {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % vocab) as u32
                })
                .collect()
        })
        .collect()
}

/// Decode time of `tokens` greedy tokens after `prompt`, batch 1.
fn decode_single(model: &Model, prompt: &[u32], tokens: usize) -> Duration {
    let options = GenerateOptions {
        max_tokens: Some(tokens),
        ..GenerateOptions::default()
    };
    let rng = RandomState::global();
    let mut generator =
        generate_step(model, prompt, &options, rng).unwrap_or_else(|e| panic!("start: {e}"));
    let mut first = None;
    let mut n = 0;
    for t in generator.by_ref() {
        t.unwrap_or_else(|e| panic!("decode: {e}"));
        first.get_or_insert_with(Instant::now);
        n += 1;
    }
    assert_eq!(n, tokens);
    first.map_or(Duration::ZERO, |f| f.elapsed())
}

/// Decode time of a greedy batch of `prompts`, `tokens` new tokens each.
fn decode_batch(model: &Model, prompts: &[Vec<u32>], tokens: usize) -> Duration {
    let options = BatchOptions {
        max_tokens: tokens,
        ..BatchOptions::default()
    };
    let out = generate_batch(model, prompts, &options, &mut RandomState::global())
        .unwrap_or_else(|e| panic!("batch: {e}"));
    assert!(out.completions.iter().all(|c| c.len() == tokens));
    out.stats.generation_time
}

fn bench_decode(c: &mut Criterion) {
    let s = settings();
    let config = qwen3_0_6b_config(s.layers, 151_936);
    let model = random_model(&config, 0, s.dtype).unwrap_or_else(|e| panic!("model: {e}"));
    model
        .eval_params()
        .unwrap_or_else(|e| panic!("weights: {e}"));
    eprintln!(
        "decode: Qwen3-0.6B shapes ({} layers), {} parameters, {}, prompt {}, {} new tokens, on {:?} (MLX {})",
        s.layers,
        model.num_parameters(),
        s.dtype,
        s.prompt,
        s.tokens,
        Device::default_device(),
        mlx_tensor::device::mlx_version()
    );
    let vocab = config.base().vocab_size as u64;
    let mut group = c.benchmark_group("decode_qwen3_0.6b");
    group.sample_size(10);
    for &rows in &s.batches {
        let p = prompts(rows, s.prompt, vocab);
        let run = |m: &Model| {
            if rows == 1 {
                decode_single(m, &p[0], s.tokens)
            } else {
                decode_batch(m, &p, s.tokens)
            }
        };
        run(&model);
        group.throughput(Throughput::Elements((rows * (s.tokens - 1)) as u64));
        let name = format!(
            "{}_b{rows}_p{}_n{}_l{}",
            s.dtype, s.prompt, s.tokens, s.layers
        );
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run(&model)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
