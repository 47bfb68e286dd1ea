//! GRPO on any Hugging Face Qwen3 / Qwen3-MoE checkpoint and a JSONL
//! dataset, configured by a TOML (or JSON) file with TRL's field names.
//!
//! ```sh
//! cargo run --release --example grpo -- --model DIR --dataset data.jsonl \
//!     [--config grpo.toml] [--set key=value ...] [--reward accuracy,format] [--dtype bf16] \
//!     [--adapter DIR] [--merged-output DIR [--merged-format requantized|dequantized]]
//! ```
//!
//! Dataset rows: `{"prompt": "..." | [{"role": "user", "content": "..."}], "answer": "...", ...}`.
//! Rewards: `accuracy` (the answer, numerically normalised), `format`
//! (`<think>…</think>` then the answer), `tool_calls` (valid tool calls),
//! `overlong` (soft penalty near `max_completion_length`).
//!
//! LoRA (TRL's `ModelConfig` names): `--set use_peft=true --set lora_r=16
//! --set lora_alpha=32 --set 'lora_target_modules=["all-linear"]'` trains
//! fresh adapters; `--adapter DIR` continues from saved ones (PEFT's or
//! mlx-lm's layout, e.g. a checkpoint of an earlier adapter run), with
//! their own rank and targets. Over an mlx-lm quantized checkpoint this is
//! QLoRA. Checkpoints then hold the adapters (PEFT's layout), and
//! `--merged-output DIR` also writes the model with them merged in, in
//! Hugging Face's layout; over a quantized base (QLoRA), as mlx-lm's `fuse`
//! does, the adapted layers quantized again in mlx-lm's quantized layout
//! (`--merged-format requantized`, the default) or the whole model
//! dequantized (`--merged-format dequantized`, as `fuse --dequantize`).
//! `--tui` shows the training UI (keys: p pause, s save, q save and quit);
//! `cargo run -p mlx-grpo-tui -- watch OUTPUT_DIR` shows a run from another
//! terminal.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use mlx_grpo::config::{GrpoConfig, attach_peft_adapters};
use mlx_grpo::dataset::Dataset;
use mlx_grpo::rewards::{
    AccuracyReward, FormatReward, RewardSet, SoftOverlongPunishment, ToolCallReward,
};
use mlx_grpo::trainer::Trainer;
use mlx_grpo::trainer::adapters::MergedFormat;
use mlx_grpo_tui::Hooks;
use mlx_grpo_workspace::cli::{self, BoxError, DtypeArg};
use mlx_lm::loader::{has_adapters, load_and_attach_adapters, load_model, quantization_config};
use mlx_lm::{LanguageModel, Tokenizer};

/// A reward function by name.
/// `--merged-format`: how a merged model over a quantized base is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MergedFormatArg {
    /// The adapted layers quantized again with their group size and bits.
    Requantized,
    /// Every weight dequantized: a dense Hugging Face checkpoint.
    Dequantized,
}

impl From<MergedFormatArg> for MergedFormat {
    fn from(arg: MergedFormatArg) -> Self {
        match arg {
            MergedFormatArg::Requantized => MergedFormat::Requantized,
            MergedFormatArg::Dequantized => MergedFormat::Dequantized,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RewardName {
    /// The answer, numerically normalised.
    Accuracy,
    /// `<think>…</think>` then the answer.
    Format,
    /// Valid tool calls.
    #[value(name = "tool_calls", alias = "tool-calls")]
    ToolCalls,
    /// Soft penalty near `max_completion_length`.
    Overlong,
}

/// GRPO on a Qwen3 / Qwen3-MoE checkpoint and a JSONL dataset; the
/// training settings are TRL's `GRPOConfig` fields.
#[derive(Parser, Debug)]
#[command(name = "grpo", allow_negative_numbers = true)]
struct Args {
    /// Model directory (Hugging Face layout, with tokenizer.json)
    #[arg(long)]
    model: PathBuf,
    /// JSONL dataset: one {"prompt": ..., "answer": ...} object per line
    #[arg(long)]
    dataset: PathBuf,
    /// GRPOConfig file (.toml or .json, TRL's field names)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Sets one GRPOConfig field, e.g. --set learning_rate=1e-6 (repeatable; after --config)
    #[arg(long = "set", value_name = "KEY=VALUE", allow_hyphen_values = true)]
    overrides: Vec<String>,
    /// Reward functions, comma-separated
    #[arg(
        long = "reward",
        value_enum,
        value_delimiter = ',',
        num_args = 1,
        default_value = "accuracy"
    )]
    rewards: Vec<RewardName>,
    /// Data type of the weights [default: the checkpoint's]
    #[arg(long, value_enum)]
    dtype: Option<DtypeArg>,
    /// Adapter directory (PEFT's or mlx-lm's layout) to continue training from
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    /// After training, write the model with its adapters merged in (Hugging Face layout) here
    #[arg(long, value_name = "DIR")]
    merged_output: Option<PathBuf>,
    /// Over a quantized base: quantize the merged layers again (mlx-lm's layout) or write a dense model
    #[arg(
        long,
        value_enum,
        default_value = "requantized",
        requires = "merged_output"
    )]
    merged_format: MergedFormatArg,
    /// Shows the training UI (the plain progress bar when stdout is not a terminal)
    #[arg(long)]
    tui: bool,
}

fn run(args: Args) -> Result<(), BoxError> {
    let mut config = match &args.config {
        Some(path) => GrpoConfig::from_file(path)?,
        None => GrpoConfig::default(),
    };
    config.apply_overrides(args.overrides.iter().map(String::as_str))?;
    // Fail on a bad config before loading anything heavy.
    for warning in config.validate()? {
        eprintln!("warning: {warning}");
    }
    if let Some(dir) = &args.merged_output {
        cli::check_output_parent(dir).map_err(|e| format!("--merged-output: {e}"))?;
    }
    if args.adapter.is_some() && config.use_peft {
        eprintln!(
            "warning: --adapter given: its own rank, alpha and targets are used, not the lora_* fields"
        );
    }
    let dataset = Dataset::from_jsonl_path(&args.dataset)?;
    let summary = if args.tui {
        // The model lives on the training thread; the UI runs on this one.
        mlx_grpo_tui::run_in_terminal(move |hooks| {
            train(&args, config, dataset, &hooks).map_err(|e| cli::one_line(e.as_ref()))
        })??
    } else {
        train(&args, config, dataset, &Hooks::plain())?
    };
    println!("{summary}");
    Ok(())
}

/// Loads the model and trains it; returns the closing line.
fn train(
    args: &Args,
    config: GrpoConfig,
    dataset: Dataset,
    hooks: &Hooks,
) -> Result<String, BoxError> {
    let tokenizer = Tokenizer::from_dir(&args.model)?;
    let mut model = load_model(&args.model, args.dtype.map(Into::into))?;
    cli::check_tokenizer_fits(tokenizer.vocab_size(), model.vocab_size(), &args.model)?;
    match &args.adapter {
        Some(dir) => {
            load_and_attach_adapters(&mut model, dir)?;
        }
        None => {
            attach_peft_adapters(&mut model, &config)?;
        }
    }
    if !has_adapters(&model) && quantization_config(&args.model)?.is_some() {
        return Err(format!(
            "{} is quantized: train it through adapters (--set use_peft=true or --adapter DIR)",
            args.model.display()
        )
        .into());
    }
    let mut rewards = RewardSet::new();
    for name in &args.rewards {
        match name {
            RewardName::Accuracy => rewards.add(AccuracyReward::default())?,
            RewardName::Format => rewards.add(FormatReward::think_answer())?,
            RewardName::ToolCalls => rewards.add(ToolCallReward::default())?,
            RewardName::Overlong => rewards.add(SoftOverlongPunishment::new(
                config.max_completion_length,
                config.max_completion_length / 4,
            )?)?,
        };
    }
    hooks.say(format!(
        "GRPO: {} prompts from {}, {} completions per prompt, loss {}, output {}",
        dataset.len(),
        args.dataset.display(),
        config.num_generations,
        config.loss_type.as_str(),
        config.output_dir.display()
    ));
    // Started by `launch` (docs/DISTRIBUTED.md): train as one rank of the job.
    let trainer = if std::env::var_os("MLX_RANK").is_some() {
        let group = mlx_tensor::distributed::Group::init(mlx_tensor::distributed::Backend::Any)?;
        Trainer::new_in_group(config, model, tokenizer, dataset, rewards, group)?
    } else {
        Trainer::new(config, model, tokenizer, dataset, rewards)?
    }
    .with_source_dir(&args.model);
    let mut trainer = hooks.attach(trainer);
    let out = trainer.train()?;
    let mut summary = format!(
        "done: {} steps; last checkpoint {}",
        out.global_step,
        out.last_checkpoint
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    if let Some(dir) = &args.merged_output {
        trainer.save_merged_model_as(dir, args.merged_format.into())?;
        summary.push_str(&format!("; merged model {}", dir.display()));
    }
    Ok(summary)
}

fn main() {
    let args: Args = cli::parse();
    cli::exit_on_error(|| run(args));
}
