//! Peak memory and time of one GRPO optimizer step (and optionally of the
//! rollout) on the default MLX device, for a Qwen3-0.6B-shaped random model
//! scaled down to run on a CPU.
//!
//! The step is the library's [`optimize_step`]: 8 prompts × G = 8 random
//! completions, dapo, β = 0, micro-batches of 8, AdamW with clipping at 1.0.
//! The first step creates the optimizer state; the second is measured.
//! `--legacy` measures the step as it was before the memory work (plain
//! scoring graph, gradients accumulated with the new gradient set kept
//! alive) for comparison.
//!
//! ```sh
//! cargo run --release --example grpo_memory -- --layers 4 --prompt 32 --tokens 64
//! cargo run --release --example grpo_memory -- --layers 4 --gradient-checkpointing
//! cargo run --release --example grpo_memory -- --layers 4 --legacy
//! cargo run --release --example grpo_memory -- --layers 4 --rollout --rollout-chunk 2
//! ```
//!
//! Flags: `--layers N` (4), `--vocab N` (151936), `--prompt N` prompt tokens
//! (32), `--tokens N` completion tokens (64), `--prompts N` (8), `--group N`
//! (8), `--micro N` (8), `--f32`, `--gradient-checkpointing`, `--legacy`,
//! `--rollout` (also measure a rollout of the prompts), `--rollout-chunk N`
//! (prompts per generation chunk).

use std::cell::RefCell;
use std::error::Error;
use std::time::Instant;

use mlx_grpo::config::GrpoConfig;
use mlx_grpo::loss::{GrpoLoss, LossInputs, LossOutput, OutputLayout};
use mlx_grpo::rewards::FinishReason;
use mlx_grpo::trainer::rollout::generate_in_chunks;
use mlx_grpo::trainer::{
    build_optimizer, optimize_step, MicroBatch, RolloutSample, TrainerOptimizer,
};
use mlx_lm::generate::BatchOptions;
use mlx_lm::loader::random_model;
use mlx_lm::models::{Model, ModelConfig, Qwen3Config};
use mlx_lm::sample::SamplerConfig;
use mlx_lm::score::{score_tokens, ScoreOptions};
use mlx_lm::LanguageModel;
use mlx_nn::optim::clip_grad_norm;
use mlx_nn::{value_and_grad, ModuleExt, ParamMap};
use mlx_tensor::{memory, Array, Dtype};
use serde_json::json;

type Res<T> = Result<T, Box<dyn Error>>;

struct Args {
    layers: i32,
    vocab: i32,
    prompt: usize,
    tokens: usize,
    prompts: usize,
    group: usize,
    micro: usize,
    f32: bool,
    gradient_checkpointing: bool,
    legacy: bool,
    rollout: bool,
    rollout_chunk: Option<usize>,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        layers: 4,
        vocab: 151_936,
        prompt: 32,
        tokens: 64,
        prompts: 8,
        group: 8,
        micro: 8,
        f32: false,
        gradient_checkpointing: false,
        legacy: false,
        rollout: false,
        rollout_chunk: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--layers" => a.layers = value()?.parse()?,
            "--vocab" => a.vocab = value()?.parse()?,
            "--prompt" => a.prompt = value()?.parse()?,
            "--tokens" => a.tokens = value()?.parse()?,
            "--prompts" => a.prompts = value()?.parse()?,
            "--group" => a.group = value()?.parse()?,
            "--micro" => a.micro = value()?.parse()?,
            "--f32" => a.f32 = true,
            "--gradient-checkpointing" => a.gradient_checkpointing = true,
            "--legacy" => a.legacy = true,
            "--rollout" => a.rollout = true,
            "--rollout-chunk" => a.rollout_chunk = Some(value()?.parse()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

fn qwen3_06b(layers: i32, vocab: i32) -> Res<ModelConfig> {
    let config = json!({
        "model_type": "qwen3",
        "vocab_size": vocab,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": layers,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "max_position_embeddings": 40960,
        "tie_word_embeddings": true,
    });
    let base: Qwen3Config = serde_json::from_value(config)?;
    Ok(ModelConfig::Qwen3(base))
}

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

fn fresh_peak() {
    memory::clear_cache();
    memory::reset_peak_memory();
}

/// Micro-batches of random completions with group-normalised random
/// advantages.
fn micro_batches(
    model: &Model,
    config: &GrpoConfig,
    args: &Args,
    seed: u64,
) -> Res<Vec<MicroBatch>> {
    let n = args.prompts * args.group;
    let samples: Vec<RolloutSample> = (0..n)
        .map(|i| RolloutSample {
            row_index: i / args.group,
            prompt_ids: random_tokens(args.prompt, args.vocab, 1000 + (i / args.group) as u64),
            completion_ids: random_tokens(args.tokens, args.vocab, seed * 7919 + i as u64),
            sampling_logps: vec![0.0; args.tokens],
            finish_reason: FinishReason::Length,
        })
        .collect();
    let rewards: Vec<f32> = random_tokens(n, 1000, seed)
        .into_iter()
        .map(|x| x as f32 / 1000.0)
        .collect();
    let mut advantages = vec![0.0f32; n];
    for (g, chunk) in rewards.chunks(args.group).enumerate() {
        let mean = chunk.iter().sum::<f32>() / chunk.len() as f32;
        let var =
            chunk.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / (chunk.len() - 1).max(1) as f32;
        for (i, r) in chunk.iter().enumerate() {
            advantages[g * args.group + i] = (r - mean) / (var.sqrt() + 1e-4);
        }
    }
    let num_items = (n * args.tokens) as f64;
    let slots: Vec<usize> = (0..n).collect();
    Ok(slots
        .chunks(args.micro)
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
        .collect::<Result<_, _>>()?)
}

/// The step before the memory work: plain scoring graph (all logits kept
/// for the backward pass), gradients added while the new set stays alive,
/// old gradients alive through the update.
fn legacy_step(
    model: &mut Model,
    optimizer: &mut TrainerOptimizer,
    loss_fn: &GrpoLoss,
    config: &GrpoConfig,
    micro: &[MicroBatch],
) -> Res<f64> {
    let options = ScoreOptions {
        temperature: config.temperature as f32,
        entropies: true,
        ..ScoreOptions::default()
    };
    let accumulation = micro.len();
    let mut total: Option<ParamMap> = None;
    let mut loss_sum = 0.0;
    for mb in micro {
        let layout_slot = RefCell::new(None::<OutputLayout>);
        let out = value_and_grad(&*model, |m| {
            let (logps, entropies) = score_tokens(
                m,
                &mb.layout.tokens,
                &mb.layout.left_padding,
                mb.layout.completion_width,
                &options,
            )?;
            let mut inputs = LossInputs::new(&logps, &mb.advantages, &mb.mask)
                .with_num_items_in_batch(mb.num_items_in_batch)
                .with_gradient_accumulation_steps(accumulation);
            if let Some(h) = &entropies {
                inputs = inputs.with_entropies(h);
            }
            let loss = loss_fn
                .compute(&inputs)
                .map_err(|e| mlx_nn::Error::Closure(e.to_string()))?;
            *layout_slot.borrow_mut() = Some(loss.layout());
            Ok(loss.into_outputs())
        })?;
        let layout = layout_slot
            .into_inner()
            .ok_or("the loss closure did not run")?;
        let mut outputs = vec![out.loss];
        outputs.extend(out.aux);
        let loss = LossOutput::from_outputs(&layout, outputs)?;
        total = Some(match total {
            None => out.grads,
            Some(acc) => acc
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.add(&out.grads[k])?)))
                .collect::<Result<ParamMap, mlx_tensor::Error>>()?,
        });
        let mut to_eval: Vec<&Array> = total.iter().flat_map(|g| g.values()).collect();
        to_eval.push(&loss.loss);
        mlx_tensor::eval(&to_eval)?;
        loss_sum += f64::from(loss.loss.item::<f32>()?);
    }
    let grads = total.ok_or("no micro-batches")?;
    let (clipped, norm) = clip_grad_norm(&grads, config.max_grad_norm)?;
    optimizer.update(model, &clipped)?;
    optimizer.eval_with(&*model, &[&norm])?;
    Ok(loss_sum)
}

fn rollout(model: &Model, config: &GrpoConfig, args: &Args, seed: u64) -> Res<usize> {
    let prompts: Vec<Vec<u32>> = (0..args.prompts)
        .map(|i| random_tokens(args.prompt, args.vocab, 1000 + i as u64))
        .collect();
    let options = BatchOptions {
        num_generations: config.num_generations,
        max_tokens: config.max_completion_length,
        sampler: SamplerConfig::with_temperature(config.temperature),
        eos_token_ids: Vec::new(),
        logprob_temperature: Some(config.temperature),
        ..BatchOptions::default()
    };
    let completions = generate_in_chunks(model, &prompts, &options, args.rollout_chunk, seed)?;
    let n = completions.len();
    Ok(n)
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let dtype = if args.f32 { Dtype::F32 } else { Dtype::BF16 };
    let mut model = random_model(&qwen3_06b(args.layers, args.vocab)?, 0, dtype)?;
    model.eval_params()?;
    model.set_gradient_checkpointing(args.gradient_checkpointing);
    let params: usize = model.parameters().values().map(Array::size).sum();
    let config = GrpoConfig {
        num_generations: args.group,
        max_completion_length: args.tokens,
        per_device_train_batch_size: args.micro,
        gradient_accumulation_steps: args.prompts * args.group / args.micro,
        temperature: 1.0,
        beta: 0.0,
        num_iterations: 1,
        learning_rate: 1e-6,
        max_steps: 2,
        gradient_checkpointing: args.gradient_checkpointing,
        ..GrpoConfig::default()
    };
    let loss_fn = GrpoLoss::from_config(&config);
    let mut optimizer = build_optimizer(&config, 2)?;
    let bytes = params * dtype.size_of();
    eprintln!(
        "{params} parameters ({:.3} GiB each of weights, gradients, AdamW m and v: floor {:.3} GiB)",
        gib(bytes),
        gib(4 * bytes)
    );
    let mut results = serde_json::Map::new();
    for step in 1..=2u64 {
        let micro = micro_batches(&model, &config, &args, step)?;
        fresh_peak();
        let start = Instant::now();
        let loss = if args.legacy {
            legacy_step(&mut model, &mut optimizer, &loss_fn, &config, &micro)?
        } else {
            optimize_step(&mut model, &mut optimizer, &loss_fn, &config, &micro)?["loss"]
        };
        let seconds = start.elapsed().as_secs_f64();
        let peak = gib(memory::peak_memory());
        eprintln!("step {step}: loss {loss:.6}, {seconds:.2}s, peak {peak:.3} GiB");
        results.insert(format!("step{step}_seconds"), json!(seconds));
        results.insert(format!("step{step}_peak_gib"), json!(peak));
        results.insert(format!("step{step}_loss"), json!(loss));
    }
    if args.rollout {
        fresh_peak();
        let start = Instant::now();
        let n = rollout(&model, &config, &args, 3)?;
        let seconds = start.elapsed().as_secs_f64();
        let peak = gib(memory::peak_memory());
        eprintln!("rollout of {n} completions: {seconds:.2}s, peak {peak:.3} GiB");
        results.insert("rollout_seconds".into(), json!(seconds));
        results.insert("rollout_peak_gib".into(), json!(peak));
    }
    println!("{}", serde_json::Value::Object(results));
    Ok(())
}
