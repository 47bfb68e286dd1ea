//! Per-token log-probabilities of a token sequence under a model.
//!
//! Each token after the first `--prompt-len` ones gets
//! `log_softmax(logits / temperature)[token]` from the logits of the
//! position before it (what GRPO scores rollouts with).
//!
//! ```sh
//! cargo run --release --example score -- --model DIR --tokens 1,2,3,4
//! cargo run --release --example score -- --model DIR --text "Hello there" --json
//! cargo run --release --example score -- --model DIR --tokens 1,2,3 --logits logits.npy
//! ```
//!
//! Options: `--prompt-len N` (tokens not scored, default 1), `--temperature
//! T` (default 1), `--entropies`, `--dtype f32|bf16|f16` (default: the
//! checkpoint's), `--logits PATH` (writes the float32 logits of every
//! position, `[tokens, vocab]`, as `.npy`), `--json`. `--text` needs the
//! model directory's `tokenizer.json`. `--adapter DIR` applies LoRA
//! adapters (PEFT's or mlx-lm's layout, e.g. a GRPO checkpoint of an
//! adapter run) to the model. Without `--model`, a tiny random
//! Qwen3 is written to a temporary directory and scored.

use std::path::PathBuf;

use clap::Parser;
use mlx_grpo_workspace::cli::{self, BoxError, DtypeArg};
use mlx_lm::loader::{
    load_and_attach_adapters, load_model, set_adapters_training, tiny_qwen3_config,
    write_random_checkpoint,
};
use mlx_lm::score::{ScoreBatch, ScoreOptions, score};
use mlx_lm::{LanguageModel, Tokenizer};
use mlx_tensor::{Array, Dtype, io};

/// Per-token log-probabilities of a token sequence under a model.
#[derive(Parser, Debug)]
#[command(name = "score", allow_negative_numbers = true)]
struct Args {
    /// Model directory (Hugging Face layout) [default: a tiny random Qwen3 in a temporary directory]
    #[arg(long)]
    model: Option<PathBuf>,
    /// Token ids, comma-separated
    #[arg(long, value_delimiter = ',', num_args = 1, conflicts_with = "text")]
    tokens: Option<Vec<u32>>,
    /// Text to tokenize with the model's tokenizer.json
    #[arg(long)]
    text: Option<String>,
    /// Leading tokens that are not scored
    #[arg(long, value_parser = cli::positive_count, default_value_t = 1)]
    prompt_len: usize,
    /// Temperature the logits are divided by
    #[arg(long, visible_alias = "temp", value_parser = cli::positive_f32, default_value_t = 1.0)]
    temperature: f32,
    /// Also print each position's entropy
    #[arg(long)]
    entropies: bool,
    /// Data type of the weights [default: the checkpoint's]
    #[arg(long, value_enum)]
    dtype: Option<DtypeArg>,
    /// LoRA adapter directory (PEFT's or mlx-lm's layout) applied to the model
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    /// Write the float32 logits of every position ([tokens, vocab]) to this .npy file
    #[arg(long)]
    logits: Option<PathBuf>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

fn run(args: Args) -> Result<(), BoxError> {
    if let Some(path) = &args.logits {
        cli::check_output_parent(path).map_err(|e| format!("--logits: {e}"))?;
    }
    let dir = match &args.model {
        Some(dir) => dir.clone(),
        None => {
            let dir = std::env::temp_dir().join("mlx-lm-score-example");
            write_random_checkpoint(&dir, &tiny_qwen3_config(), 0, Dtype::F32)?;
            eprintln!(
                "no --model: scoring a tiny random Qwen3 written to {}",
                dir.display()
            );
            dir
        }
    };
    let mut model = load_model(&dir, args.dtype.map(Dtype::from))?;
    if let Some(adapter) = &args.adapter {
        load_and_attach_adapters(&mut model, adapter)?;
        set_adapters_training(&mut model, false);
    }
    let tokenizer = if args.text.is_some() || dir.join("tokenizer.json").exists() {
        let tok = Tokenizer::from_dir(&dir)?;
        cli::check_tokenizer_fits(tok.vocab_size(), model.vocab_size(), &dir)?;
        Some(tok)
    } else {
        None
    };
    let tokens = match (&args.tokens, &args.text, &tokenizer) {
        (Some(ids), _, _) => ids.clone(),
        (None, Some(text), Some(tok)) => tok.encode(text, false)?,
        (None, Some(_), None) => {
            return Err("--text needs tokenizer.json in the model directory".into());
        }
        (None, None, _) => vec![1, 2, 3, 4, 5],
    };
    if tokens.len() < 2 || args.prompt_len >= tokens.len() {
        return Err(format!(
            "need at least one prompt token and one scored token ({} tokens, --prompt-len {})",
            tokens.len(),
            args.prompt_len
        )
        .into());
    }
    let what = if args.tokens.is_some() {
        "--tokens"
    } else {
        "--text"
    };
    cli::check_token_ids(&tokens, model.vocab_size(), what)?;

    let (prompt, completion) = tokens.split_at(args.prompt_len);
    let batch = ScoreBatch::new(&[(prompt, completion)], 0)?;
    let options = ScoreOptions {
        temperature: args.temperature,
        entropies: args.entropies,
        ..ScoreOptions::default()
    };
    let scores = score(&model, &batch, &options)?;
    let logprobs = scores.logprobs.to_vec::<f32>()?;
    let entropies = scores.entropies.map(|e| e.to_vec::<f32>()).transpose()?;

    if let Some(path) = &args.logits {
        let len = i32::try_from(tokens.len()).map_err(|_| "too many tokens")?;
        let ids = Array::from_slice(&tokens, &[1, len])?;
        let logits = model
            .forward(&ids, None)?
            .as_type(Dtype::F32)?
            .squeeze(&[0])?;
        io::save_npy(path, &logits)?;
        eprintln!(
            "wrote {} logits {} to {}",
            logits.dtype(),
            logits.shape(),
            path.display()
        );
    }

    let piece = |id: u32| tokenizer.as_ref().and_then(|t| t.decode(&[id], false).ok());
    if args.json {
        let rows: Vec<serde_json::Value> = completion
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let mut row = serde_json::json!({
                    "position": args.prompt_len + i,
                    "token": id,
                    "logprob": logprobs[i],
                });
                if let Some(e) = &entropies {
                    row["entropy"] = e[i].into();
                }
                if let Some(text) = piece(id) {
                    row["text"] = text.into();
                }
                row
            })
            .collect();
        let total: f64 = logprobs.iter().map(|&l| f64::from(l)).sum();
        let out = serde_json::json!({
            "model": dir.display().to_string(),
            "dtype": model.dtype().to_string(),
            "temperature": args.temperature,
            "prompt": prompt,
            "scores": rows,
            "sum_logprob": total,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{} ({}), prompt of {} token(s), temperature {}",
        dir.display(),
        model.dtype(),
        prompt.len(),
        args.temperature
    );
    println!(
        "{:>5} {:>8} {:>12}{}  text",
        "pos",
        "token",
        "logprob",
        if entropies.is_some() {
            "      entropy"
        } else {
            ""
        }
    );
    for (i, &id) in completion.iter().enumerate() {
        let entropy = entropies
            .as_ref()
            .map(|e| format!(" {:>12.6}", e[i]))
            .unwrap_or_default();
        let text = piece(id).map(|t| format!("{t:?}")).unwrap_or_default();
        println!(
            "{:>5} {:>8} {:>12.6}{entropy}  {text}",
            args.prompt_len + i,
            id,
            logprobs[i]
        );
    }
    let total: f64 = logprobs.iter().map(|&l| f64::from(l)).sum();
    println!("sum {total:.6}, mean {:.6}", total / logprobs.len() as f64);
    Ok(())
}

fn main() {
    let args: Args = cli::parse();
    cli::exit_on_error(|| run(args));
}
