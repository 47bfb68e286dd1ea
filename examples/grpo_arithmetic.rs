//! GRPO end to end on a task small enough for a laptop CPU: a tiny Qwen3
//! learns two-digit addition.
//!
//! 1. A character-level tokenizer of its own (digits, `+`, `=`, end of text).
//! 2. A tiny random Qwen3 (two layers, hidden 96).
//! 3. A short supervised warm-up on `a+b=c` that leaves the model
//!    half-trained.
//! 4. GRPO with a correctness reward (TRL's algorithm and metrics).
//! 5. Accuracy on held-out problems (greedy decoding) before and after GRPO,
//!    `metrics.jsonl`, `curves.png` and checkpoints under
//!    `runs/grpo_arithmetic/`; the final model loads in `examples/generate.rs`.
//!
//! ```sh
//! cargo run --release --example grpo_arithmetic [-- --sft-steps 400 --max-steps 250 \
//!     --learning-rate 2e-4 --seed 0 --output-dir runs/grpo_arithmetic --set key=value ...]
//! ```
//!
//! The flags keep their older names as aliases (`--steps`, `--lr`,
//! `--output`); `--set` changes any other `GRPOConfig` field (TRL's names).
//! `--tui` shows the training UI (keys: p pause, s save, q save and quit);
//! `cargo run -p mlx-grpo-tui -- watch runs/grpo_arithmetic` shows the run
//! from another terminal.

use std::path::PathBuf;

use clap::Parser;

use mlx_grpo::config::{GrpoConfig, LossType};
use mlx_grpo::dataset::{Dataset, Prompt, Row};
use mlx_grpo::rewards::{AccuracyReward, RewardSet};
use mlx_grpo::trainer::Trainer;
use mlx_grpo_tui::Hooks;
use mlx_grpo_workspace::cli::{self, BoxError};
use mlx_grpo_workspace::training::{run_training, settle_config};
use mlx_grpo_workspace::warm_up::masked_lm_step;
use mlx_lm::Tokenizer;
use mlx_lm::generate::{BatchOptions, generate_batch};
use mlx_lm::loader::{SaveOptions, random_model, save_model};
use mlx_lm::models::Model;
use mlx_lm::models::{ModelConfig, Qwen3Config};
use mlx_lm::sample::{RandomState, SamplerConfig};
use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_nn::optim::{AdamW, Optimizer};
use mlx_tensor::Dtype;

/// Largest operand.
const MAX_OPERAND: u32 = 29;
/// Problems held out for evaluation.
const HELD_OUT: usize = 150;

/// GRPO end to end on two-digit addition with a tiny Qwen3.
#[derive(Parser, Debug)]
#[command(name = "grpo_arithmetic", allow_negative_numbers = true)]
struct Args {
    /// Supervised warm-up steps before GRPO
    #[arg(long, default_value_t = 400)]
    sft_steps: usize,
    /// GRPO steps (GRPOConfig.max_steps)
    #[arg(long, visible_alias = "steps", default_value_t = 250)]
    max_steps: usize,
    /// Seed of the problems, the model and the trainer
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where checkpoints, metrics.jsonl and curves.png go
    #[arg(long, visible_alias = "output", default_value = "runs/grpo_arithmetic")]
    output_dir: PathBuf,
    /// GRPO learning rate
    #[arg(long, visible_alias = "lr", value_parser = cli::positive, default_value_t = 2e-4)]
    learning_rate: f64,
    /// Sampling temperature of the rollouts
    #[arg(long, value_parser = cli::positive, default_value_t = 0.8)]
    temperature: f64,
    /// Sets any other GRPOConfig field, e.g. --set num_generations=4 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", allow_hyphen_values = true)]
    overrides: Vec<String>,
    /// Shows the training UI (the plain progress bar when stdout is not a terminal)
    #[arg(long)]
    tui: bool,
}

/// All problems `a+b=` with their answers, shuffled with `seed`.
fn problems(seed: u64) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for a in 0..=MAX_OPERAND {
        for b in 0..=MAX_OPERAND {
            all.push((format!("{a}+{b}="), (a + b).to_string()));
        }
    }
    let mut rng = mlx_grpo::dataset::SplitMix64::new(seed);
    rng.shuffle(&mut all);
    all
}

fn tokenizer() -> mlx_lm::Result<Tokenizer> {
    VocabTokenizerBuilder::char_level("0123456789+=".chars())
        .pad("<pad>")
        .eos("<|endoftext|>")
        .build()
}

fn model_config(vocab_size: usize) -> Result<ModelConfig, Box<dyn std::error::Error>> {
    let config: Qwen3Config = serde_json::from_value(serde_json::json!({
        "model_type": "qwen3",
        "vocab_size": vocab_size,
        "hidden_size": 96,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 24,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 64,
        "tie_word_embeddings": true
    }))?;
    Ok(ModelConfig::Qwen3(config))
}

/// Greedy accuracy on `set`.
fn accuracy(
    model: &Model,
    tok: &Tokenizer,
    set: &[(String, String)],
) -> Result<f64, Box<dyn std::error::Error>> {
    let prompts: Vec<Vec<u32>> = set
        .iter()
        .map(|(p, _)| tok.encode(p, false))
        .collect::<Result<_, _>>()?;
    let options = BatchOptions {
        max_tokens: 4,
        sampler: SamplerConfig::greedy(),
        eos_token_ids: tok.eos_token_ids().to_vec(),
        pad_token_id: tok.pad_token_id().unwrap_or(0),
        ..Default::default()
    };
    let outputs =
        generate_batch(model, &prompts, &options, &mut RandomState::global())?.completions;
    let mut correct = 0;
    for (out, (_, answer)) in outputs.iter().zip(set) {
        if tok.decode(&out.tokens, true)?.trim() == answer {
            correct += 1;
        }
    }
    Ok(100.0 * correct as f64 / set.len() as f64)
}

/// Supervised warm-up: cross-entropy on the answer tokens of `a+b=c<eos>`.
fn warm_up(
    model: &mut Model,
    tok: &Tokenizer,
    train: &[(String, String)],
    steps: usize,
    seed: u64,
) -> Result<f32, Box<dyn std::error::Error>> {
    let eos = tok.eos_token_id().ok_or("tokenizer has no EOS")?;
    let pad = tok.pad_token_id().ok_or("tokenizer has no pad token")?;
    let mut optimizer = Optimizer::new(AdamW::new(0.0), 3e-3);
    let mut rng = mlx_grpo::dataset::SplitMix64::new(seed ^ 0x5f7);
    let batch = 64;
    let mut last = f32::NAN;
    for _ in 0..steps {
        let mut rows = Vec::with_capacity(batch);
        for _ in 0..batch {
            let (p, a) = &train[rng.below(train.len() as u64) as usize];
            let mut ids = tok.encode(p, false)?;
            let prompt_len = ids.len();
            ids.extend(tok.encode(a, false)?);
            ids.push(eos);
            let learn = (0..ids.len()).map(|j| j >= prompt_len).collect();
            rows.push((ids, learn));
        }
        last = masked_lm_step(model, &mut optimizer, &rows, pad)?;
    }
    Ok(last)
}

/// The GRPO settings of the run: the example's choices, the flags, then `--set`.
fn grpo_config(args: &Args) -> Result<GrpoConfig, BoxError> {
    let cfg = GrpoConfig {
        output_dir: args.output_dir.clone(),
        seed: args.seed,
        num_generations: 8,
        per_device_train_batch_size: 64,
        gradient_accumulation_steps: 1,
        max_completion_length: 4,
        temperature: args.temperature,
        learning_rate: args.learning_rate,
        loss_type: LossType::Dapo,
        beta: 0.0,
        max_steps: i64::try_from(args.max_steps).map_err(|_| "--max-steps is too large")?,
        logging_steps: 5,
        save_steps: 50,
        save_total_limit: Some(2),
        // A model this small has little activation memory to save.
        gradient_checkpointing: false,
        ..GrpoConfig::default()
    };
    settle_config(cfg, &args.overrides)
}

fn run(args: Args) -> Result<(), BoxError> {
    // Fail on a bad config before the warm-up.
    let cfg = grpo_config(&args)?;
    let tui = args.tui;
    run_training(cfg, tui, move |cfg, hooks| train(&args, cfg, hooks))
}

/// Warm-up, GRPO and evaluation; returns the summary lines.
fn train(args: &Args, cfg: GrpoConfig, hooks: &Hooks) -> Result<Vec<String>, BoxError> {
    let tok = tokenizer()?;
    let all = problems(args.seed);
    let (held_out, train) = all.split_at(HELD_OUT);
    let config = model_config(tok.vocab_size())?;
    let mut model = random_model(&config, args.seed, Dtype::F32)?;
    hooks.say(format!(
        "model: tiny Qwen3, {} parameters; task: a+b with a, b in 0..={MAX_OPERAND}",
        mlx_nn::ModuleExt::num_parameters(&model)
    ));

    let sft_loss = warm_up(&mut model, &tok, train, args.sft_steps, args.seed)?;
    let before = accuracy(&model, &tok, held_out)?;
    hooks.say(format!(
        "after {} warm-up steps: loss {sft_loss:.3}, held-out accuracy {before:.1}%",
        args.sft_steps
    ));

    let tokenizer_dir = cfg.output_dir.join("tokenizer");
    tok.save_dir(&tokenizer_dir)?;
    let rows: Vec<Row> = train
        .iter()
        .map(|(p, a)| Row {
            prompt: Prompt::Text(p.clone()),
            answer: Some(a.clone()),
            extra: Default::default(),
        })
        .collect();
    let dataset = Dataset::from_rows(rows, "arithmetic")?;
    let mut rewards = RewardSet::new();
    rewards.add(AccuracyReward::default())?;

    let trainer =
        Trainer::new(cfg, model, tok.clone(), dataset, rewards)?.with_source_dir(&tokenizer_dir);
    let mut trainer = hooks.attach(trainer);
    let output = trainer.train()?;
    let after = accuracy(trainer.model(), &tok, held_out)?;

    let output_dir = trainer.config().output_dir.clone();
    let final_dir = output_dir.join("final");
    save_model(
        trainer.model(),
        &final_dir,
        &SaveOptions {
            source_dir: Some(tokenizer_dir),
            ..Default::default()
        },
    )?;
    let last = output
        .log_history
        .last()
        .map(|r| r.metrics.get("reward").copied().unwrap_or(f64::NAN));
    Ok(vec![
        format!(
            "GRPO: {} steps, last logged reward {:.3}",
            output.global_step,
            last.unwrap_or(f64::NAN)
        ),
        format!(
            "held-out accuracy: before GRPO {before:.1}%, after GRPO {after:.1}% ({:+.1} points)",
            after - before
        ),
        format!(
            "wrote {}/metrics.jsonl, {}/curves.png and {}",
            output_dir.display(),
            output_dir.display(),
            final_dir.display()
        ),
    ])
}

fn main() {
    let args: Args = cli::parse();
    cli::exit_on_error(|| run(args));
}
