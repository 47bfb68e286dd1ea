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
//! model directory's `tokenizer.json`. Without `--model`, a tiny random
//! Qwen3 is written to a temporary directory and scored.

use std::path::PathBuf;

use mlx_lm::loader::{load_model, tiny_qwen3_config, write_random_checkpoint};
use mlx_lm::score::{score, ScoreBatch, ScoreOptions};
use mlx_lm::{LanguageModel, Tokenizer};
use mlx_tensor::{io, Array, Dtype};

struct Args {
    model: Option<PathBuf>,
    tokens: Option<Vec<u32>>,
    text: Option<String>,
    prompt_len: usize,
    temperature: f32,
    entropies: bool,
    dtype: Option<Dtype>,
    logits: Option<PathBuf>,
    json: bool,
}

const USAGE: &str = "usage: score [--model DIR] [--tokens 1,2,3 | --text TEXT] [--prompt-len N] \
[--temperature T] [--entropies] [--dtype f32|bf16|f16] [--logits PATH.npy] [--json]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: None,
        tokens: None,
        text: None,
        prompt_len: 1,
        temperature: 1.0,
        entropies: false,
        dtype: None,
        logits: None,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => args.model = Some(PathBuf::from(value()?)),
            "--tokens" => {
                let ids = value()?
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        s.trim()
                            .parse::<u32>()
                            .map_err(|e| format!("--tokens: `{s}`: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                args.tokens = Some(ids);
            }
            "--text" => args.text = Some(value()?),
            "--prompt-len" => {
                args.prompt_len = value()?.parse().map_err(|e| format!("--prompt-len: {e}"))?
            }
            "--temperature" => {
                args.temperature = value()?
                    .parse()
                    .map_err(|e| format!("--temperature: {e}"))?
            }
            "--entropies" => args.entropies = true,
            "--dtype" => {
                args.dtype = Some(match value()?.as_str() {
                    "f32" => Dtype::F32,
                    "bf16" => Dtype::BF16,
                    "f16" => Dtype::F16,
                    other => return Err(format!("--dtype: unknown dtype {other}")),
                })
            }
            "--logits" => args.logits = Some(PathBuf::from(value()?)),
            "--json" => args.json = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if args.tokens.is_some() && args.text.is_some() {
        return Err("give --tokens or --text, not both".into());
    }
    Ok(args)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
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
    let model = load_model(&dir, args.dtype)?;
    let tokenizer = if args.text.is_some() || dir.join("tokenizer.json").exists() {
        Some(Tokenizer::from_dir(&dir)?)
    } else {
        None
    };
    let tokens = match (&args.tokens, &args.text, &tokenizer) {
        (Some(ids), _, _) => ids.clone(),
        (None, Some(text), Some(tok)) => tok.encode(text, false)?,
        (None, Some(_), None) => {
            return Err("--text needs tokenizer.json in the model directory".into())
        }
        (None, None, _) => vec![1, 2, 3, 4, 5],
    };
    if tokens.len() < 2 || args.prompt_len == 0 || args.prompt_len >= tokens.len() {
        return Err(format!(
            "need at least one prompt token and one scored token ({} tokens, --prompt-len {})",
            tokens.len(),
            args.prompt_len
        )
        .into());
    }
    if let Some(bad) = tokens.iter().find(|&&t| t as i32 >= model.vocab_size()) {
        return Err(format!(
            "token {bad} is outside the vocabulary of {}",
            model.vocab_size()
        )
        .into());
    }

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
        let ids = Array::from_slice(&tokens, &[1, tokens.len() as i32])?;
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
    let args = match parse_args() {
        Ok(a) => a,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
