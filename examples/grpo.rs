//! GRPO on any Hugging Face Qwen3 / Qwen3-MoE checkpoint and a JSONL
//! dataset, configured by a TOML (or JSON) file with TRL's field names.
//!
//! ```sh
//! cargo run --release --example grpo -- --model DIR --dataset data.jsonl \
//!     [--config grpo.toml] [--set key=value ...] [--reward accuracy,format] [--dtype bf16]
//! ```
//!
//! Dataset rows: `{"prompt": "..." | [{"role": "user", "content": "..."}], "answer": "...", ...}`.
//! Rewards: `accuracy` (the answer, numerically normalised), `format`
//! (`<think>…</think>` then the answer), `tool_calls` (valid tool calls),
//! `overlong` (soft penalty near `max_completion_length`).

use std::path::PathBuf;

use mlx_grpo::config::GrpoConfig;
use mlx_grpo::dataset::Dataset;
use mlx_grpo::rewards::{
    AccuracyReward, FormatReward, RewardSet, SoftOverlongPunishment, ToolCallReward,
};
use mlx_grpo::trainer::Trainer;
use mlx_lm::loader::load_model;
use mlx_lm::Tokenizer;
use mlx_tensor::Dtype;

struct Args {
    model: PathBuf,
    dataset: PathBuf,
    config: Option<PathBuf>,
    overrides: Vec<String>,
    rewards: Vec<String>,
    dtype: Option<Dtype>,
}

fn parse_args() -> Result<Args, String> {
    let mut model = None;
    let mut dataset = None;
    let mut args = Args {
        model: PathBuf::new(),
        dataset: PathBuf::new(),
        config: None,
        overrides: Vec::new(),
        rewards: vec!["accuracy".into()],
        dtype: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--dataset" => dataset = Some(PathBuf::from(value()?)),
            "--config" => args.config = Some(PathBuf::from(value()?)),
            "--set" => args.overrides.push(value()?),
            "--reward" => args.rewards = value()?.split(',').map(str::to_string).collect(),
            "--dtype" => {
                args.dtype = Some(match value()?.as_str() {
                    "f32" | "float32" => Dtype::F32,
                    "bf16" | "bfloat16" => Dtype::BF16,
                    "f16" | "float16" => Dtype::F16,
                    other => return Err(format!("--dtype {other}: use f32, bf16 or f16")),
                })
            }
            "-h" | "--help" => {
                return Err("usage: grpo --model DIR --dataset FILE.jsonl [--config FILE.toml] [--set key=value]... \
                            [--reward accuracy,format,tool_calls,overlong] [--dtype f32|bf16|f16]"
                    .into())
            }
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    args.model = model.ok_or("--model DIR is required")?;
    args.dataset = dataset.ok_or("--dataset FILE.jsonl is required")?;
    Ok(args)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = match &args.config {
        Some(path) => GrpoConfig::from_file(path)?,
        None => GrpoConfig::default(),
    };
    config.apply_overrides(args.overrides.iter().map(String::as_str))?;
    // Fail on a bad config before loading anything heavy.
    config.validate()?;
    let dataset = Dataset::from_jsonl_path(&args.dataset)?;
    let tokenizer = Tokenizer::from_dir(&args.model)?;
    let model = load_model(&args.model, args.dtype)?;
    let mut rewards = RewardSet::new();
    for name in &args.rewards {
        match name.as_str() {
            "accuracy" => rewards.add(AccuracyReward::default())?,
            "format" => rewards.add(FormatReward::think_answer())?,
            "tool_calls" => rewards.add(ToolCallReward::default())?,
            "overlong" => rewards.add(SoftOverlongPunishment::new(
                config.max_completion_length,
                config.max_completion_length / 4,
            )?)?,
            other => {
                return Err(format!(
                    "unknown reward {other}: use accuracy, format, tool_calls, overlong"
                )
                .into())
            }
        };
    }
    println!(
        "GRPO: {} prompts from {}, {} completions per prompt, loss {}, output {}",
        dataset.len(),
        args.dataset.display(),
        config.num_generations,
        config.loss_type.as_str(),
        config.output_dir.display()
    );
    let mut trainer =
        Trainer::new(config, model, tokenizer, dataset, rewards)?.with_source_dir(&args.model);
    let out = trainer.train()?;
    println!(
        "done: {} steps; last checkpoint {}",
        out.global_step,
        out.last_checkpoint
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
