//! Throughput and memory of a Qwen3-0.6B-shaped model on the default MLX
//! device (the GPU when there is one).
//!
//! The model is built in-process with random bf16 weights (hidden 1024,
//! 28 layers, 16 query / 8 key-value heads of 128, SwiGLU 3072, vocabulary
//! 151936, tied embeddings, rope base 1e6). Measured, each after a warm-up:
//!
//! - prompt processing (prefill) tokens/s at 128 and 512 prompt tokens;
//! - decode tokens/s at batch 1 (prompt 128, 256 greedy tokens), with the
//!   share of the bandwidth limit it reaches (weight bytes per token over
//!   `--bandwidth`, 3.0 TB/s by default) and a split of one token's time into
//!   host time (building the step's graph) and device time;
//! - batch generation at 8 and 64 sequences (prompt 128, 256 greedy tokens
//!   each, end-of-sequence ignored);
//! - one GRPO step: 8 prompts × G = 8 completions of 256 sampled tokens,
//!   rewards drawn at random, loss `dapo`, β = 0, one iteration, 8
//!   micro-batches of 8 completions, AdamW (rollout, scoring, backward and
//!   update, timed together), in completions/s;
//!
//! each with the peak memory MLX reports. A table goes to standard output
//! and, with `--json PATH`, every figure to a JSON file (read by
//! `tools/gpu_bench/gpu_compare.py`).
//!
//! ```sh
//! cargo run --release -p gpu-bench --features cuda -- --json bench.json
//! # a small configuration for a quick check on the CPU:
//! cargo run --release -p gpu-bench -- --layers 2 --quick
//! ```
//!
//! Flags: `--layers N`, `--vocab N` (smaller models), `--quick` (fewer
//! tokens everywhere), `--only a,b` (any of `prefill`, `decode`, `batch`,
//! `vocab`, `layerops`, `offload`, `grpo`; `layerops` — the device time of
//! each operation of a decoding step at batch 1 and 64 — `offload` —
//! the rates at which optimizer state moves to the host and back — and
//! `trainer` — the library's `Trainer` with generation overlapped with
//! training against the synchronous one, same batch as the GRPO step — run
//! only when named), `--tokenizer DIR` (the tokenizer `trainer` decodes
//! with, `assets/qwen3-tokenizer` by default),
//! `--decode-headroom-mb N|none` (batch generation's memory bound),
//! `--whole-steps` (batch generation queues whole decoding steps instead of
//! halves that write the cache in place), `--bandwidth TB_PER_S`,
//! `--json PATH`, `--no-compile` (turns MLX's compiler off: every fused
//! element-wise piece runs op by op).

mod layer_ops;
mod offload;
mod overlap;
mod shapes;

use std::collections::BTreeMap;
use std::error::Error;
use std::time::{Duration, Instant};

use mlx_grpo::config::GrpoConfig;
use mlx_grpo::loss::{EntropyControl, GrpoLoss};
use mlx_grpo::rewards::FinishReason;
use mlx_grpo::trainer::rollout::generate_in_chunks;
use mlx_grpo::trainer::{MicroBatch, RolloutSample, build_optimizer, optimize_step};
use mlx_lm::cache::LayerCache;
use mlx_lm::generate::{BatchOptions, Decoder, GenerateOptions, generate_batch, generate_step};
use mlx_lm::loader::random_model;
use mlx_lm::models::Model;
use mlx_lm::sample::{RandomState, SamplerConfig};
use mlx_lm::{CheckedTokens, LanguageModel};
use mlx_nn::ModuleExt;
use mlx_tensor::{Array, Device, Dtype, memory};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error>>;

/// Command-line settings.
struct Args {
    layers: i32,
    vocab: i32,
    quick: bool,
    only: Option<Vec<String>>,
    bandwidth_tb: f64,
    json: Option<String>,
    no_compile: bool,
    /// `BatchOptions::memory_headroom_mb` for batch generation and the
    /// rollout measurement.
    decode_headroom_mb: Option<usize>,
    /// `BatchOptions::in_place_cache_writes` for batch generation and the
    /// rollout measurement (`--whole-steps` turns it off).
    in_place_cache_writes: bool,
    /// GRPO settings to run (`--grpo-settings default,offload`); all but
    /// the adapter settings (`lora`, `qlora`) when not given.
    grpo_settings: Option<Vec<String>>,
    /// The model shape (`--shape 0.6b|4b|8b`).
    shape: String,
    /// The tokenizer of the `trainer` measurement.
    tokenizer: String,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        layers: 28,
        vocab: 151_936,
        quick: false,
        only: None,
        bandwidth_tb: 3.0,
        json: None,
        no_compile: false,
        decode_headroom_mb: BatchOptions::default().memory_headroom_mb,
        in_place_cache_writes: BatchOptions::default().in_place_cache_writes,
        grpo_settings: None,
        shape: "0.6b".into(),
        tokenizer: "assets/qwen3-tokenizer".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--layers" => args.layers = value()?.parse()?,
            "--shape" => args.shape = value()?,
            "--tokenizer" => args.tokenizer = value()?,
            "--vocab" => args.vocab = value()?.parse()?,
            "--quick" => args.quick = true,
            "--only" => args.only = Some(value()?.split(',').map(str::to_string).collect()),
            "--bandwidth" => args.bandwidth_tb = value()?.parse()?,
            "--json" => args.json = Some(value()?),
            "--no-compile" => args.no_compile = true,
            "--whole-steps" => args.in_place_cache_writes = false,
            "--grpo-settings" => {
                args.grpo_settings = Some(value()?.split(',').map(str::to_string).collect())
            }
            "--decode-headroom-mb" => {
                args.decode_headroom_mb = match value()?.as_str() {
                    "none" => None,
                    mb => Some(mb.parse()?),
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: gpu_bench [--layers N] [--vocab N] [--quick] [--only prefill,decode,batch,vocab,layerops,offload,grpo,trainer] \
                     [--tokenizer DIR] [--shape 0.6b|4b|8b] [--bandwidth TB_PER_S] [--json PATH] [--no-compile] [--decode-headroom-mb N|none] [--whole-steps] [--grpo-settings NAME,…]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other} (see --help)").into()),
        }
    }
    Ok(args)
}

impl Args {
    /// The decoding settings of batch generation: memory bound and how
    /// steps are queued.
    fn decoding(&self) -> BatchOptions {
        BatchOptions {
            memory_headroom_mb: self.decode_headroom_mb,
            in_place_cache_writes: self.in_place_cache_writes,
            ..BatchOptions::default()
        }
    }

    fn wants(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|p| p == part))
    }
}

/// Token counts of every measurement (smaller with `--quick`).
struct Sizes {
    prefill_lengths: Vec<usize>,
    prompt: usize,
    new_tokens: usize,
    batches: Vec<usize>,
    grpo_prompts: usize,
    grpo_group: usize,
    grpo_tokens: usize,
    grpo_micro: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                prefill_lengths: vec![16, 64],
                prompt: 16,
                new_tokens: 24,
                batches: vec![2, 4],
                grpo_prompts: 2,
                grpo_group: 4,
                grpo_tokens: 16,
                grpo_micro: 4,
            }
        } else {
            Sizes {
                prefill_lengths: vec![128, 512],
                prompt: 128,
                new_tokens: 256,
                batches: vec![8, 64],
                grpo_prompts: 8,
                grpo_group: 8,
                grpo_tokens: 256,
                grpo_micro: 8,
            }
        }
    }
}

/// Deterministic pseudo-random token ids in `[0, vocab)`.
fn random_tokens(n: usize, vocab: i32, seed: u64) -> Vec<u32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab as u64) as u32
        })
        .collect()
}

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        return f64::NAN;
    }
    xs[xs.len() / 2]
}

/// Starts a measurement: frees cached buffers and resets the peak.
fn fresh_peak() {
    memory::clear_cache();
    memory::reset_peak_memory();
}

/// Prefill of `len` prompt tokens into a fresh cache, up to the last
/// position's logits (what the time to the first token costs).
fn prefill_once(model: &Model, tokens: &[u32]) -> Res<Duration> {
    let start = Instant::now();
    let mut cache = model.new_cache();
    let input = Array::from_slice(tokens, &[1, tokens.len() as i32])?;
    let input = CheckedTokens::new(&input, model.vocab_size())?;
    let logits = Decoder::new(model)?.step(&input, &mut cache)?;
    let n = tokens.len() as i32;
    let last = logits.slice_axis(1, n - 1, Some(n), 1)?;
    last.eval()?;
    Ok(start.elapsed())
}

fn bench_prefill(model: &Model, sizes: &Sizes, vocab: i32) -> Res<Value> {
    let mut out = serde_json::Map::new();
    for &len in &sizes.prefill_lengths {
        let tokens = random_tokens(len, vocab, len as u64);
        prefill_once(model, &tokens)?;
        fresh_peak();
        let times: Vec<f64> = (0..5)
            .map(|_| prefill_once(model, &tokens).map(|d| d.as_secs_f64()))
            .collect::<Res<_>>()?;
        let t = median(times);
        out.insert(
            len.to_string(),
            json!({
                "prompt_tokens": len,
                "seconds": t,
                "tokens_per_s": len as f64 / t,
                "peak_gib": gib(memory::peak_memory()),
            }),
        );
    }
    Ok(Value::Object(out))
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// Decode at batch 1 through [`generate_step`]: greedy, `new_tokens`
/// tokens after a `prompt`-token prompt.
fn decode_once(model: &Model, prompt: &[u32], new_tokens: usize) -> Res<(f64, f64, usize)> {
    let options = GenerateOptions {
        max_tokens: Some(new_tokens),
        ..GenerateOptions::default()
    };
    let start = Instant::now();
    let mut generator = generate_step(model, prompt, &options, RandomState::from_seed(0)?)?;
    let mut first = None;
    let mut n = 0usize;
    for token in &mut generator {
        token?;
        n += 1;
        if first.is_none() {
            first = Some(Instant::now());
        }
    }
    let end = Instant::now();
    let first = first.unwrap_or(end);
    let prefill = first.duration_since(start).as_secs_f64();
    let decode = end.duration_since(first).as_secs_f64();
    Ok((prefill, decode, n))
}

/// Splits one decode step's time into host and device parts by building
/// each step's graph (forward and argmax over the last logits) for `rows`
/// copies of `prompt` and then evaluating it synchronously: the building is
/// host time; the wait for the result is the device's time (plus launch
/// latency the host did not hide). Returns the medians in seconds.
/// A fresh cache holding `rows` copies of `prompt` and the greedy first
/// tokens after it (`[rows, 1]`, not evaluated).
fn greedy_start<'m>(
    decoder: &Decoder<'m, Model>,
    prompt: &[u32],
    rows: usize,
) -> Res<(Vec<LayerCache>, CheckedTokens)> {
    let model = decoder.model();
    let mut cache = if rows == 1 {
        model.new_cache()
    } else {
        model.new_batch_cache(&vec![0; rows])?
    };
    let tokens: Vec<u32> = (0..rows).flat_map(|_| prompt.iter().copied()).collect();
    let n = prompt.len() as i32;
    let input = Array::from_slice(&tokens, &[rows as i32, n])?;
    let input = CheckedTokens::new(&input, model.vocab_size())?;
    let first = decoder.greedy(&decoder.step(&input, &mut cache)?)?;
    Ok((cache, first))
}

fn decode_split(model: &Model, prompt: &[u32], rows: usize, steps: usize) -> Res<(f64, f64)> {
    let decoder = Decoder::new(model)?;
    let (mut cache, mut token) = greedy_start(&decoder, prompt, rows)?;
    token.array().eval()?;
    let (mut host, mut device) = (Vec::new(), Vec::new());
    for i in 0..steps + 4 {
        let t0 = Instant::now();
        let next = decoder.greedy(&decoder.step(&token, &mut cache)?)?;
        let t1 = Instant::now();
        next.array().eval()?;
        let t2 = Instant::now();
        if i >= 4 {
            host.push(t1.duration_since(t0).as_secs_f64());
            device.push(t2.duration_since(t1).as_secs_f64());
        }
        token = next;
    }
    Ok((median(host), median(device)))
}

/// Greedy decode of `rows` copies of `prompt` without the generator's
/// bookkeeping (no log-probabilities, no random state): forward and argmax,
/// the next step queued with `async_eval` before the current tokens are read
/// back. Returns the median host time per step spent building the graph,
/// inside `async_eval` (encoding and launching the kernels) and waiting for
/// the previous step's tokens, and the steps per second over `steps` steps.
fn decode_pipelined(model: &Model, prompt: &[u32], rows: usize, steps: usize) -> Res<Value> {
    let decoder = Decoder::new(model)?;
    let (mut cache, mut current) = greedy_start(&decoder, prompt, rows)?;
    mlx_tensor::async_eval(&[current.array()])?;
    let (mut build, mut queue, mut wait) = (Vec::new(), Vec::new(), Vec::new());
    let mut first = None;
    for _ in 0..steps {
        let t0 = Instant::now();
        let next = decoder.greedy(&decoder.step(&current, &mut cache)?)?;
        let t1 = Instant::now();
        mlx_tensor::async_eval(&[next.array()])?;
        let t2 = Instant::now();
        current.array().to_vec::<u32>()?;
        let t3 = Instant::now();
        build.push(t1.duration_since(t0).as_secs_f64() * 1e3);
        queue.push(t2.duration_since(t1).as_secs_f64() * 1e3);
        wait.push(t3.duration_since(t2).as_secs_f64() * 1e3);
        first.get_or_insert(t3);
        current = next;
    }
    current.array().to_vec::<u32>()?;
    let elapsed = first.map_or(0.0, |f: Instant| f.elapsed().as_secs_f64());
    Ok(json!({
        "steps_per_s": steps.saturating_sub(1).max(1) as f64 / elapsed,
        "build_ms": median(build),
        "async_eval_ms": median(queue),
        "wait_ms": median(wait),
    }))
}

fn bench_decode(model: &Model, sizes: &Sizes, vocab: i32, args: &Args) -> Res<Value> {
    let prompt = random_tokens(sizes.prompt, vocab, 7);
    decode_once(model, &prompt, sizes.new_tokens.min(32))?;
    fresh_peak();
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(decode_once(model, &prompt, sizes.new_tokens)?);
    }
    let peak = memory::peak_memory();
    let tps: Vec<f64> = runs
        .iter()
        .map(|&(_, d, n)| (n.saturating_sub(1)) as f64 / d)
        .collect();
    let tokens_per_s = median(tps);
    let weight_bytes: usize = model.parameters().values().map(Array::nbytes).sum();
    let roofline = args.bandwidth_tb * 1e12 / weight_bytes as f64;
    let (host, device) = decode_split(model, &prompt, 1, sizes.new_tokens.min(64))?;
    decode_pipelined(model, &prompt, 1, 16)?;
    let minimal = decode_pipelined(model, &prompt, 1, sizes.new_tokens)?;
    Ok(json!({
        "prompt_tokens": sizes.prompt,
        "new_tokens": sizes.new_tokens,
        "tokens_per_s": tokens_per_s,
        "ms_per_token": 1e3 / tokens_per_s,
        "prefill_seconds": median(runs.iter().map(|r| r.0).collect()),
        "peak_gib": gib(peak),
        "weight_bytes": weight_bytes,
        "roofline_tokens_per_s": roofline,
        "roofline_fraction": tokens_per_s / roofline,
        "sync_step_host_ms": host * 1e3,
        "sync_step_device_ms": device * 1e3,
        "minimal_loop_tokens_per_s": minimal["steps_per_s"],
        "minimal_loop": minimal,
    }))
}

fn batch_once(
    model: &Model,
    prompts: &[Vec<u32>],
    new_tokens: usize,
    decoding: &BatchOptions,
) -> Res<(f64, f64, usize)> {
    let options = BatchOptions {
        num_generations: 1,
        max_tokens: new_tokens,
        eos_token_ids: Vec::new(),
        ..decoding.clone()
    };
    let start = Instant::now();
    let out = generate_batch(model, prompts, &options, &mut RandomState::from_seed(0)?)?;
    let total = start.elapsed().as_secs_f64();
    Ok((
        total,
        out.stats.generation_time.as_secs_f64(),
        out.stats.generation_tokens,
    ))
}

fn bench_batch(model: &Model, sizes: &Sizes, vocab: i32, decoding: &BatchOptions) -> Res<Value> {
    let mut out = serde_json::Map::new();
    for &b in &sizes.batches {
        let prompts: Vec<Vec<u32>> = (0..b)
            .map(|i| random_tokens(sizes.prompt, vocab, 100 + i as u64))
            .collect();
        batch_once(model, &prompts, sizes.new_tokens.min(16), decoding)?;
        fresh_peak();
        let (total, decode, tokens) = batch_once(model, &prompts, sizes.new_tokens, decoding)?;
        let peak = memory::peak_memory();
        let (host, device) = decode_split(model, &prompts[0], b, sizes.new_tokens.min(64))?;
        let minimal = decode_pipelined(model, &prompts[0], b, sizes.new_tokens.min(128))?;
        out.insert(
            b.to_string(),
            json!({
                "sequences": b,
                "prompt_tokens": sizes.prompt,
                "new_tokens": sizes.new_tokens,
                "generated_tokens": tokens,
                "seconds": total,
                "tokens_per_s": tokens as f64 / total,
                "decode_tokens_per_s": tokens as f64 / decode,
                "ms_per_step": 1e3 * decode * b as f64 / tokens as f64,
                "sync_step_host_ms": host * 1e3,
                "sync_step_device_ms": device * 1e3,
                "minimal_loop": minimal,
                "peak_gib": gib(peak),
            }),
        );
    }
    Ok(Value::Object(out))
}

/// Batch generation in the GRPO rollout's shape: the largest batch as groups
/// of 8 sampled completions (temperature 1, TRL's log-probabilities).
fn bench_rollout(model: &Model, sizes: &Sizes, vocab: i32, decoding: &BatchOptions) -> Res<Value> {
    let mut out = serde_json::Map::new();
    if let Some(&b) = sizes.batches.iter().max() {
        let groups = (b / 8).max(1);
        let prompts: Vec<Vec<u32>> = (0..groups)
            .map(|i| random_tokens(sizes.prompt, vocab, 300 + i as u64))
            .collect();
        // Sampled as in a GRPO rollout, and greedy (the same groups).
        for (name, sampler) in [
            (b.to_string(), SamplerConfig::with_temperature(1.0)),
            (format!("{b} greedy"), SamplerConfig::default()),
        ] {
            let options = BatchOptions {
                num_generations: b / groups,
                max_tokens: sizes.new_tokens,
                sampler,
                eos_token_ids: Vec::new(),
                logprob_temperature: Some(1.0),
                ..decoding.clone()
            };
            let run = || -> Res<(f64, usize)> {
                let t = Instant::now();
                let o = generate_batch(model, &prompts, &options, &mut RandomState::from_seed(1)?)?;
                Ok((t.elapsed().as_secs_f64(), o.stats.generation_tokens))
            };
            run()?;
            fresh_peak();
            let (seconds, tokens) = run()?;
            let peak = memory::peak_memory();
            out.insert(
                name,
                json!({
                    "sequences": b,
                    "groups": groups,
                    "seconds": seconds,
                    "tokens_per_s": tokens as f64 / seconds,
                    "ms_per_step": 1e3 * seconds / sizes.new_tokens as f64,
                    "peak_gib": gib(peak),
                }),
            );
        }
    }
    Ok(Value::Object(out))
}

/// Median time (ms) of `f`'s result evaluated synchronously, over 10 runs
/// after 2 warm-ups.
fn time_op(f: impl Fn() -> Res<Array>) -> Res<f64> {
    let mut times = Vec::new();
    for i in 0..12 {
        let t = Instant::now();
        f()?.eval()?;
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(median(times))
}

/// What one decoding step's sampling costs on its own: the reductions over
/// the vocabulary of `[rows, vocab]` bf16 logits that generation adds to the
/// forward pass.
fn bench_vocab_ops(vocab: i32, rows: &[usize]) -> Res<Value> {
    let mut out = serde_json::Map::new();
    for &b in rows {
        let logits = mlx_tensor::random::normal(&[b as i32, vocab], Dtype::F32, 0.0, 3.0, None)?
            .as_type(Dtype::BF16)?;
        logits.eval()?;
        let index = logits.argmax(Some(-1), true)?;
        index.eval()?;
        let mut row = serde_json::Map::new();
        row.insert(
            "argmax_ms".into(),
            json!(time_op(|| Ok(logits.argmax(Some(-1), true)?))?),
        );
        row.insert(
            "logsumexp_bf16_ms".into(),
            json!(time_op(|| Ok(logits.logsumexp(-1, true)?))?),
        );
        row.insert(
            "logsumexp_f32_ms".into(),
            json!(time_op(|| Ok(logits
                .as_type(Dtype::F32)?
                .logsumexp(-1, true)?))?),
        );
        row.insert(
            "max_exp_sum_f32_ms".into(),
            json!(time_op(|| {
                let x = logits.as_type(Dtype::F32)?;
                let m = x.max(-1, true)?;
                Ok(x.subtract(&m)?.exp()?.sum(-1, true)?.log()?.add(&m)?)
            })?),
        );
        row.insert(
            "logprobs_bf16_ms".into(),
            json!(time_op(|| Ok(mlx_lm::sample::logprobs(&logits)?))?),
        );
        row.insert(
            "take_along_ms".into(),
            json!(time_op(|| Ok(logits.take_along_axis(&index, -1)?))?),
        );
        let key = mlx_tensor::random::key(5)?;
        row.insert(
            "categorical_ms".into(),
            json!(time_op(|| {
                let lp = mlx_lm::sample::logprobs(&logits)?;
                Ok(mlx_lm::sample::categorical_sampling(&lp, 1.0, Some(&key))?)
            })?),
        );
        // Everything a sampled batch-generation step adds after the logits:
        // log-probabilities, the draw, the sampler's and the scoring
        // temperature's log-probability of the drawn token.
        row.insert(
            "sampled_step_tail_ms".into(),
            json!(time_op(|| {
                let lp = mlx_lm::sample::logprobs(&logits)?;
                let tokens = mlx_lm::sample::categorical_sampling(&lp, 1.0, Some(&key))?;
                let index = tokens.reshape(&[b as i32, 1])?;
                let sampler_lp = lp.take_along_axis(&index, -1)?.as_type(Dtype::F32)?;
                let scoring = logits
                    .as_type(Dtype::F32)?
                    .log_softmax(-1, true)?
                    .take_along_axis(&index, -1)?;
                Ok(mlx_tensor::concatenate(&[&sampler_lp, &scoring], 1)?)
            })?),
        );
        out.insert(b.to_string(), Value::Object(row));
    }
    Ok(Value::Object(out))
}

/// The GRPO settings of the step.
fn grpo_config(sizes: &Sizes) -> GrpoConfig {
    GrpoConfig {
        num_generations: sizes.grpo_group,
        max_completion_length: sizes.grpo_tokens,
        per_device_train_batch_size: sizes.grpo_micro,
        gradient_accumulation_steps: sizes.grpo_prompts * sizes.grpo_group / sizes.grpo_micro,
        temperature: 1.0,
        beta: 0.0,
        num_iterations: 1,
        learning_rate: 1e-6,
        max_steps: 2,
        ..GrpoConfig::default()
    }
}

/// GRPO steps timed in each setting (after one warm-up step).
const TIMED_GRPO_STEPS: usize = 3;

/// Wall time of the parts of one GRPO step.
#[derive(Default)]
struct StepTimes {
    rollout: f64,
    prepare: f64,
    optimize: f64,
    rollout_peak: usize,
    optimize_peak: usize,
}

/// How the step trades speed for memory.
#[derive(Clone, Copy)]
struct MemorySettings {
    /// Per-layer gradient checkpointing (`gradient_checkpointing`).
    gradient_checkpointing: bool,
    /// Prompts generated at a time (`generation_chunk_prompts`).
    chunk_prompts: Option<usize>,
    /// Working-memory bound of the training pass
    /// (`training_memory_headroom_mb`).
    headroom_mb: Option<usize>,
    /// Optimizer state in host memory between updates
    /// (`offload_optimizer_state`).
    offload: bool,
    /// The rollout's decoding memory bound (`generation_memory_headroom_mb`).
    decode_headroom_mb: Option<usize>,
    /// The rollout's steps queued in halves, writing the KV cache in place
    /// (`BatchOptions::in_place_cache_writes`).
    in_place_cache_writes: bool,
}

/// One GRPO step on `model` with the library's pieces: rollout
/// (`generate_in_chunks`), group-normalised random rewards, micro-batches,
/// then `optimize_step` (loss and gradients per micro-batch, accumulation,
/// clipping, AdamW).
fn grpo_step(
    model: &mut Model,
    optimizer: &mut mlx_grpo::trainer::TrainerOptimizer,
    config: &GrpoConfig,
    prompts: &[Vec<u32>],
    memory_settings: MemorySettings,
    seed: u64,
) -> Res<(StepTimes, f64)> {
    let mut times = StepTimes::default();
    let t0 = Instant::now();
    let options = BatchOptions {
        num_generations: config.num_generations,
        max_tokens: config.max_completion_length,
        sampler: SamplerConfig::with_temperature(config.temperature),
        eos_token_ids: Vec::new(),
        logprob_temperature: Some(config.temperature),
        memory_headroom_mb: config.generation_memory_headroom_mb,
        in_place_cache_writes: memory_settings.in_place_cache_writes,
        ..BatchOptions::default()
    };
    // As the trainer does before each rollout: the update replaced the
    // weights, so store the decoding products' weights stacked again.
    mlx_lm::generate::pack_weights(&mut *model)?;
    let completions = generate_in_chunks(
        &*model,
        prompts,
        &options,
        memory_settings.chunk_prompts,
        seed,
    )?;
    times.rollout = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let samples: Vec<RolloutSample> = completions
        .into_iter()
        .map(|c| RolloutSample {
            row_index: c.prompt_index,
            prompt_ids: prompts[c.prompt_index].clone(),
            completion_ids: c.tokens,
            sampling_logps: c.logprobs,
            finish_reason: FinishReason::Length,
            tools: None,
        })
        .collect();
    let rewards = random_tokens(samples.len(), 1000, seed)
        .into_iter()
        .map(|x| x as f32 / 1000.0)
        .collect::<Vec<_>>();
    let g = config.num_generations;
    let mut advantages = vec![0.0f32; rewards.len()];
    for (group, chunk) in rewards.chunks(g).enumerate() {
        let mean = chunk.iter().sum::<f32>() / chunk.len() as f32;
        let var =
            chunk.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / (chunk.len() - 1).max(1) as f32;
        for (i, r) in chunk.iter().enumerate() {
            advantages[group * g + i] = (r - mean) / (var.sqrt() + 1e-4);
        }
    }
    let num_items: f64 = samples.iter().map(|s| s.completion_ids.len() as f64).sum();
    let slots: Vec<usize> = (0..samples.len()).collect();
    let micro: Vec<MicroBatch> = slots
        .chunks(config.per_device_train_batch_size)
        .map(|part| {
            MicroBatch::build(
                part,
                &samples,
                &advantages,
                0,
                num_items,
                config,
                model,
                None,
            )
        })
        .collect::<Result<_, _>>()?;
    times.prepare = t1.elapsed().as_secs_f64();

    times.rollout_peak = memory::peak_memory();
    memory::reset_peak_memory();
    let t2 = Instant::now();
    let loss_fn = GrpoLoss::from_config(config);
    let metrics = optimize_step(
        model,
        optimizer,
        &loss_fn,
        &mut EntropyControl::from_config(config),
        config,
        &micro,
    )?;
    times.optimize = t2.elapsed().as_secs_f64();
    times.optimize_peak = memory::peak_memory();
    Ok((times, metrics.get("loss").copied().unwrap_or(f64::NAN)))
}

impl MemorySettings {
    /// `config` with these settings.
    fn apply(&self, config: &GrpoConfig) -> GrpoConfig {
        GrpoConfig {
            gradient_checkpointing: self.gradient_checkpointing,
            generation_chunk_prompts: self.chunk_prompts,
            training_memory_headroom_mb: self.headroom_mb,
            offload_optimizer_state: self.offload,
            generation_memory_headroom_mb: self.decode_headroom_mb,
            ..config.clone()
        }
    }
}

/// One warm-up step, then `TIMED_GRPO_STEPS` timed ones: the median step's
/// figures with the highest peaks of all of them.
fn time_grpo_setting(
    model: &mut Model,
    config: &GrpoConfig,
    prompts: &[Vec<u32>],
    sizes: &Sizes,
    memory_settings: MemorySettings,
) -> Res<Value> {
    let mut optimizer = build_optimizer(config, 2)?;
    model.set_gradient_checkpointing(memory_settings.gradient_checkpointing);
    grpo_step(model, &mut optimizer, config, prompts, memory_settings, 1)?;
    let mut steps = Vec::with_capacity(TIMED_GRPO_STEPS);
    let (mut rollout_peak, mut optimize_peak) = (0, 0);
    for seed in 2..2 + TIMED_GRPO_STEPS as u64 {
        fresh_peak();
        let start = Instant::now();
        let (times, loss) = grpo_step(
            model,
            &mut optimizer,
            config,
            prompts,
            memory_settings,
            seed,
        )?;
        rollout_peak = rollout_peak.max(times.rollout_peak);
        optimize_peak = optimize_peak.max(times.optimize_peak);
        steps.push((start.elapsed().as_secs_f64(), times, loss));
    }
    steps.sort_by(|a, b| a.0.total_cmp(&b.0));
    let all_seconds: Vec<f64> = steps.iter().map(|s| s.0).collect();
    let (seconds, times, loss) = steps.swap_remove(steps.len() / 2);
    let completions = sizes.grpo_prompts * sizes.grpo_group;
    Ok(json!({
        "completions": completions,
        "completion_tokens": sizes.grpo_tokens,
        "group": sizes.grpo_group,
        "micro_batch": sizes.grpo_micro,
        "gradient_checkpointing": memory_settings.gradient_checkpointing,
        "generation_chunk_prompts": memory_settings.chunk_prompts,
        "training_memory_headroom_mb": memory_settings.headroom_mb,
        "offload_optimizer_state": memory_settings.offload,
        "generation_memory_headroom_mb": memory_settings.decode_headroom_mb,
        "in_place_cache_writes": memory_settings.in_place_cache_writes,
        "seconds": seconds,
        "completions_per_s": completions as f64 / seconds,
        "rollout_seconds": times.rollout,
        "prepare_seconds": times.prepare,
        "optimize_seconds": times.optimize,
        "loss": loss,
        "step_seconds": all_seconds,
        "rollout_peak_gib": gib(rollout_peak),
        "optimize_peak_gib": gib(optimize_peak),
        "peak_gib": gib(rollout_peak.max(optimize_peak)),
    }))
}

fn bench_grpo(
    model: &mut Model,
    model_config: &mlx_lm::models::ModelConfig,
    sizes: &Sizes,
    vocab: i32,
    only: Option<&[String]>,
) -> Res<Value> {
    let config = grpo_config(sizes);
    let prompts: Vec<Vec<u32>> = (0..sizes.grpo_prompts)
        .map(|i| random_tokens(sizes.prompt, vocab, 1000 + i as u64))
        .collect();
    let mut out = serde_json::Map::new();
    // "default" is the library's (and TRL's) default: layer checkpointing
    // on, the whole rollout at once.
    let default = MemorySettings {
        gradient_checkpointing: config.gradient_checkpointing,
        chunk_prompts: config.generation_chunk_prompts,
        headroom_mb: config.training_memory_headroom_mb,
        offload: config.offload_optimizer_state,
        decode_headroom_mb: config.generation_memory_headroom_mb,
        in_place_cache_writes: true,
    };
    let offload = MemorySettings {
        offload: true,
        ..default
    };
    let settings = [
        ("default", default),
        ("offload", offload),
        (
            "offload_whole_steps",
            MemorySettings {
                in_place_cache_writes: false,
                ..offload
            },
        ),
        (
            "offload_bounded",
            MemorySettings {
                gradient_checkpointing: config.gradient_checkpointing,
                chunk_prompts: config.generation_chunk_prompts,
                headroom_mb: Some(512),
                offload: true,
                decode_headroom_mb: Some(512),
                in_place_cache_writes: true,
            },
        ),
        (
            "low_memory",
            MemorySettings {
                gradient_checkpointing: true,
                chunk_prompts: Some((sizes.grpo_prompts / 2).max(1)),
                headroom_mb: Some(512),
                offload: false,
                decode_headroom_mb: None,
                in_place_cache_writes: true,
            },
        ),
        (
            "low_memory_offload",
            MemorySettings {
                gradient_checkpointing: true,
                chunk_prompts: Some((sizes.grpo_prompts / 2).max(1)),
                headroom_mb: Some(512),
                offload: true,
                decode_headroom_mb: None,
                in_place_cache_writes: true,
            },
        ),
        (
            "no_checkpointing",
            MemorySettings {
                gradient_checkpointing: false,
                chunk_prompts: None,
                headroom_mb: None,
                offload: false,
                decode_headroom_mb: None,
                in_place_cache_writes: true,
            },
        ),
    ];
    for (name, memory_settings) in settings {
        if only.is_some_and(|names| !names.iter().any(|n| n == name)) {
            continue;
        }
        let config = memory_settings.apply(&config);
        let figures = time_grpo_setting(model, &config, &prompts, sizes, memory_settings)?;
        out.insert(name.to_string(), figures);
    }
    model.set_gradient_checkpointing(false);
    // The adapter settings run only when named: each builds its own model
    // (LoRA r = 16 on every linear layer, over the bf16 weights or their
    // 4-bit quantization) with the default memory settings.
    for (name, quantized) in [("lora", false), ("qlora", true)] {
        if !only.is_some_and(|names| names.iter().any(|n| n == name)) {
            continue;
        }
        eprintln!("GRPO step, {name} ...");
        let scratch = std::env::temp_dir().join(format!("gpu_bench_{name}_{}", std::process::id()));
        let mut adapted = shapes::adapted_model(model_config, &config, quantized, &scratch)?;
        adapted.eval_params()?;
        let config = shapes::lora_settings(&default.apply(&config));
        let trainable: usize = adapted
            .trainable_parameters()
            .values()
            .map(Array::size)
            .sum();
        let mut figures = time_grpo_setting(&mut adapted, &config, &prompts, sizes, default)?;
        figures["trainable_parameters"] = json!(trainable);
        out.insert(name.to_string(), figures);
    }
    // The default configuration's figures stay at the top level (what the
    // comparison script reads); a run without it still lists the others.
    let mut top = match out.get("default") {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    top.insert("settings".into(), Value::Object(out));
    Ok(Value::Object(top))
}

fn main() -> Res<()> {
    let args = parse_args()?;
    if args.no_compile {
        mlx_tensor::transforms::set_compile_enabled(false);
    }
    // `MLX_FFI_CUDA_*=0` switch fast paths off for A/B runs.
    mlx_tensor::fast::FastPaths::from_env().apply();
    let sizes = Sizes::new(args.quick);
    let device = Device::default_device();
    let config = shapes::model_config(&args.shape, args.layers, args.vocab)?;
    let build = Instant::now();
    let mut model = random_model(&config, 0, Dtype::BF16)?;
    model.eval_params()?;
    let params: usize = model.parameters().values().map(Array::size).sum();
    eprintln!(
        "device {device:?}, MLX {}, {} parameters, built in {:.1}s, direct CUDA copies {}, few-rows product kernel {}, q/k norm-rope kernel {}",
        mlx_tensor::device::mlx_version(),
        params,
        build.elapsed().as_secs_f64(),
        on_off(mlx_tensor::memory::cuda_direct_copies_active()),
        on_off(mlx_tensor::fast::few_rows_linear_active()),
        on_off(mlx_tensor::fast::norm_rope_heads_active()),
    );

    let mut results = BTreeMap::new();
    results.insert("device", json!(format!("{device:?}")));
    results.insert("mlx_version", json!(mlx_tensor::device::mlx_version()));
    results.insert("parameters", json!(params));
    results.insert("shape", json!(args.shape));
    results.insert("layers", json!(args.layers));
    results.insert("vocab", json!(args.vocab));
    results.insert("quick", json!(args.quick));
    results.insert("compile", json!(!args.no_compile));
    if args.wants("prefill") {
        eprintln!("prefill ...");
        results.insert("prefill", bench_prefill(&model, &sizes, args.vocab)?);
    }
    if args.wants("decode") {
        eprintln!("decode, batch 1 ...");
        results.insert("decode", bench_decode(&model, &sizes, args.vocab, &args)?);
    }
    if args.wants("batch") {
        eprintln!("batch generation ...");
        let decoding = args.decoding();
        results.insert("batch", bench_batch(&model, &sizes, args.vocab, &decoding)?);
        results.insert(
            "rollout",
            bench_rollout(&model, &sizes, args.vocab, &decoding)?,
        );
    }
    if args.wants("vocab") {
        eprintln!("vocabulary reductions ...");
        results.insert("vocab_ops", bench_vocab_ops(args.vocab, &[1, 8, 64])?);
    }
    if args.only.iter().flatten().any(|p| p == "layerops") {
        eprintln!("decoding-step operations ...");
        let mut ops = serde_json::Map::new();
        for (b, context) in [(1, 256), (64, 256)] {
            ops.insert(
                format!("b{b}_ctx{context}"),
                layer_ops::bench(b, context, args.vocab)?,
            );
        }
        results.insert("layer_ops", Value::Object(ops));
    }
    if args.only.iter().flatten().any(|p| p == "offload") {
        eprintln!("state moves ...");
        let (pieces, elements) = if args.quick {
            (4, 1 << 20)
        } else {
            (32, 32 << 20)
        };
        let mut moves = offload::bench(pieces, elements)?;
        moves["update"] = offload::bench_update(&mut model)?;
        results.insert("offload", moves);
    }
    if args.wants("grpo") {
        eprintln!("GRPO step ...");
        results.insert(
            "grpo",
            bench_grpo(
                &mut model,
                &config,
                &sizes,
                args.vocab,
                args.grpo_settings.as_deref(),
            )?,
        );
    }
    if args.only.iter().flatten().any(|p| p == "trainer") {
        let tokenizer = mlx_lm::Tokenizer::from_dir(&args.tokenizer)?;
        model.set_gradient_checkpointing(grpo_config(&sizes).gradient_checkpointing);
        results.insert(
            "trainer",
            overlap::bench(&model, &grpo_config(&sizes), &tokenizer, sizes.prompt)?,
        );
    }
    let results = Value::Object(
        results
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    );
    print_table(&results);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

fn print_table(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "device: {}  MLX {}",
        r["device"].as_str().unwrap_or("?"),
        r["mlx_version"].as_str().unwrap_or("?")
    );
    println!("{:<34} {:>14} {:>10}", "measurement", "rate", "peak GiB");
    if let Some(p) = r["prefill"].as_object() {
        for (len, v) in p {
            println!(
                "{:<34} {:>10.0} t/s {:>10.2}",
                format!("prefill {len}"),
                f(&v["tokens_per_s"]),
                f(&v["peak_gib"])
            );
        }
    }
    let d = &r["decode"];
    if d.is_object() {
        println!(
            "{:<34} {:>10.1} t/s {:>10.2}",
            "decode b1",
            f(&d["tokens_per_s"]),
            f(&d["peak_gib"])
        );
        println!(
            "  {:.1}% of the {:.0} t/s bandwidth limit; sync step: host {:.2} ms, device {:.2} ms",
            100.0 * f(&d["roofline_fraction"]),
            f(&d["roofline_tokens_per_s"]),
            f(&d["sync_step_host_ms"]),
            f(&d["sync_step_device_ms"])
        );
        println!(
            "  forward + argmax loop alone: {:.1} t/s",
            f(&d["minimal_loop_tokens_per_s"])
        );
    }
    if let Some(b) = r["batch"].as_object() {
        for (n, v) in b {
            println!(
                "{:<34} {:>10.1} t/s {:>10.2}",
                format!(
                    "batch {n} (decode only {:.0} t/s)",
                    f(&v["decode_tokens_per_s"])
                ),
                f(&v["tokens_per_s"]),
                f(&v["peak_gib"])
            );
            println!(
                "  {:.2} ms a step; sync step: host {:.2} ms, device {:.2} ms",
                f(&v["ms_per_step"]),
                f(&v["sync_step_host_ms"]),
                f(&v["sync_step_device_ms"])
            );
            let m = &v["minimal_loop"];
            println!(
                "  forward + argmax loop alone: {:.2} ms a step (build {:.2}, async_eval {:.2}, wait {:.2})",
                1e3 / f(&m["steps_per_s"]),
                f(&m["build_ms"]),
                f(&m["async_eval_ms"]),
                f(&m["wait_ms"])
            );
        }
    }
    if let Some(b) = r["rollout"].as_object() {
        for (n, v) in b {
            println!(
                "{:<34} {:>10.1} t/s {:>10.2}",
                format!("rollout {n} (groups of 8)"),
                f(&v["tokens_per_s"]),
                f(&v["peak_gib"])
            );
            println!("  {:.2} ms a step", f(&v["ms_per_step"]));
        }
    }
    if let Some(v) = r["vocab_ops"].as_object() {
        for (n, ops) in v {
            let parts: Vec<String> = ops
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, x)| format!("{} {:.3}", k.trim_end_matches("_ms"), f(x)))
                .collect();
            println!("  [{n}, vocab] ms: {}", parts.join(", "));
        }
    }
    if let Some(ops) = r["layer_ops"].as_object() {
        for (shape, row) in ops {
            let parts: Vec<String> = row
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.ends_with("_ms"))
                .map(|(k, x)| format!("{} {:.4}", k.trim_end_matches("_ms"), f(x)))
                .collect();
            println!("  ops {shape} (ms each): {}", parts.join(", "));
        }
    }
    if let Some(settings) = r["grpo"]["settings"].as_object() {
        for (name, g) in settings {
            println!(
                "{:<34} {:>8.2} compl/s {:>10.2}",
                format!("GRPO step ({name})"),
                f(&g["completions_per_s"]),
                f(&g["peak_gib"])
            );
            println!(
                "  {:.2} s: rollout {:.2}, prepare {:.2}, loss + backward + update {:.2}; peak GiB: rollout {:.2}, training {:.2}",
                f(&g["seconds"]),
                f(&g["rollout_seconds"]),
                f(&g["prepare_seconds"]),
                f(&g["optimize_seconds"]),
                f(&g["rollout_peak_gib"]),
                f(&g["optimize_peak_gib"])
            );
        }
    }
    let t = &r["trainer"];
    if t.is_object() {
        println!(
            "{:<34} {:>8.2} s sync {:>8.2} s overlapped  ({:.2}x)",
            "Trainer step (median)",
            f(&t["sync"]["median_step_seconds"]),
            f(&t["overlap"]["median_step_seconds"]),
            f(&t["speedup"])
        );
    }
}
