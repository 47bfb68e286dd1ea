//! Chat with a model: one-shot (`--prompt`) or interactive (one message per
//! line on standard input; an empty line or end of input quits).
//!
//! ```sh
//! cargo run --release --example chat -- --model DIR [--prompt TEXT] \
//!     [--system-prompt TEXT] [--tools tools.json] [--no-thinking] \
//!     [--max-tokens 512] [--temp 0.6] [--top-p 0.95] [--top-k 20] [--min-p 0.0] \
//!     [--seed S] [--dtype f32|bf16|f16] [--json]
//! ```
//!
//! `--tools` names a JSON file holding an array of tool definitions in the
//! OpenAI / Hugging Face format (`{"type": "function", "function": {...}}`);
//! they are passed to the chat template, and the tool calls the model makes
//! are printed (not executed). `--json` prints each reply as one JSON line
//! (`text`, `thinking`, `tool_calls`, `finish_reason`, `num_tokens`).
//!
//! Without `--model` it runs the tiny random test checkpoint with a toy
//! word-level tokenizer (`w3` … `w255`), so the replies are noise.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use clap::Parser;
use mlx_grpo_workspace::cli::{self, BoxError, DtypeArg};
use mlx_lm::chat::{ChatOptions, ChatResult, chat};
use mlx_lm::generate::GenerateOptions;
use mlx_lm::sample::SamplerConfig;
use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_lm::{ChatTemplateOptions, LanguageModel, Tokenizer};
use serde_json::{Value, json};

/// Chats with a model: one-shot (--prompt) or one message per line on stdin.
#[derive(Parser, Debug)]
#[command(name = "chat", allow_negative_numbers = true)]
struct Cli {
    /// Model directory (Hugging Face layout) [default: the tiny random test checkpoint]
    #[arg(long)]
    model: Option<PathBuf>,
    /// One message; without it, messages are read from stdin
    #[arg(long, short = 'p')]
    prompt: Option<String>,
    /// System prompt for the chat template
    #[arg(long)]
    system_prompt: Option<String>,
    /// JSON file with an array of tool definitions
    #[arg(long)]
    tools: Option<PathBuf>,
    /// Turn the chat template's thinking off
    #[arg(long)]
    no_thinking: bool,
    /// Maximum number of tokens per reply
    #[arg(long, short = 'm', default_value_t = 512)]
    max_tokens: usize,
    /// Sampling temperature (0: greedy)
    #[arg(long, value_parser = cli::non_negative, default_value_t = 0.6)]
    temp: f64,
    /// Sampling top-p (1: off)
    #[arg(long, value_parser = cli::probability, default_value_t = 0.95)]
    top_p: f64,
    /// Sampling top-k (0: off)
    #[arg(long, default_value_t = 20)]
    top_k: usize,
    /// Sampling min-p (0: off)
    #[arg(long, value_parser = cli::probability, default_value_t = 0.0)]
    min_p: f64,
    /// Seed of the sampler
    #[arg(long)]
    seed: Option<u64>,
    /// Data type of the weights [default: the checkpoint's]
    #[arg(long, value_enum)]
    dtype: Option<DtypeArg>,
    /// Print each reply as one JSON line
    #[arg(long)]
    json: bool,
}

fn toy_tokenizer() -> Result<Tokenizer, BoxError> {
    let words: Vec<String> = ["<pad>", "<s>", "</s>"]
        .iter()
        .map(|s| s.to_string())
        .chain((3..256).map(|i| format!("w{i}")))
        .collect();
    Ok(VocabTokenizerBuilder::word_level(words)
        .pad("<pad>")
        .bos("<s>")
        .eos("</s>")
        .chat_template("{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}w3{% endif %}")
        .build()?)
}

fn load(args: &Cli) -> Result<(mlx_lm::Model, Tokenizer), BoxError> {
    let dtype = args.dtype.map(Into::into);
    let (model, tokenizer, dir) = match &args.model {
        Some(dir) => (
            mlx_lm::load_model(dir, dtype)?,
            Tokenizer::from_dir(dir)?,
            dir.clone(),
        ),
        None => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("crates/mlx-lm/tests/fixtures/sample/tiny-qwen3");
            (mlx_lm::load_model(&dir, dtype)?, toy_tokenizer()?, dir)
        }
    };
    cli::check_tokenizer_fits(tokenizer.vocab_size(), model.vocab_size(), &dir)?;
    Ok((model, tokenizer))
}

fn options(args: &Cli) -> Result<ChatOptions, BoxError> {
    let mut template = ChatTemplateOptions::default();
    if let Some(path) = &args.tools {
        let text = std::fs::read_to_string(path).map_err(cli::at_path("reading --tools", path))?;
        let tools: Vec<Value> =
            serde_json::from_str(&text).map_err(|e| format!("--tools {}: {e}", path.display()))?;
        template = template.tools(tools);
    }
    if args.no_thinking {
        template = template.enable_thinking(false);
    }
    let generate = GenerateOptions {
        max_tokens: Some(args.max_tokens),
        sampler: SamplerConfig {
            temperature: args.temp,
            top_p: args.top_p,
            top_k: args.top_k,
            min_p: args.min_p,
            ..SamplerConfig::default()
        },
        ..GenerateOptions::default()
    };
    Ok(ChatOptions {
        generate,
        template,
        seed: args.seed,
    })
}

fn show(reply: &ChatResult, json_out: bool) {
    if json_out {
        let calls: Vec<Value> = reply
            .tool_calls
            .iter()
            .map(|c| json!({"name": c.name, "arguments": c.arguments, "ok": c.is_ok()}))
            .collect();
        let line = json!({
            "text": reply.text,
            "thinking": reply.thinking,
            "tool_calls": calls,
            "finish_reason": reply.finish_reason.as_str(),
            "num_tokens": reply.num_tokens,
        });
        println!("{line}");
        return;
    }
    if let Some(thinking) = &reply.thinking {
        println!("[thinking] {thinking}");
    }
    for call in &reply.tool_calls {
        let name = call.name.as_deref().unwrap_or("?");
        println!("[tool call] {name}({}) {:?}", call.arguments, call.status);
    }
    println!("{}", reply.text);
    eprintln!(
        "[{} tokens, {:.1} tokens/s, finish: {}]",
        reply.num_tokens,
        reply.stats.generation_tps(),
        reply.finish_reason
    );
}

fn run(args: Cli) -> Result<(), BoxError> {
    let (model, tokenizer) = load(&args)?;
    let mut options = options(&args)?;
    let json_out = args.json;
    let mut messages = Vec::new();
    if let Some(system) = &args.system_prompt {
        messages.push(json!({"role": "system", "content": system}));
    }
    if let Some(prompt) = &args.prompt {
        messages.push(json!({"role": "user", "content": prompt}));
        let reply = chat(&model, &tokenizer, &messages, &options)?;
        show(&reply, json_out);
        return Ok(());
    }
    if args.model.is_none() {
        // Toy model: a single turn with a vocabulary prompt.
        messages.push(json!({"role": "user", "content": "w10 w11 w12"}));
        let reply = chat(&model, &tokenizer, &messages, &options)?;
        show(&reply, json_out);
        return Ok(());
    }
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| format!("reading standard input: {e}"))?;
        if line.trim().is_empty() {
            break;
        }
        messages.push(json!({"role": "user", "content": line}));
        let reply = chat(&model, &tokenizer, &messages, &options)?;
        show(&reply, json_out);
        messages.push(reply.to_message());
        // A seeded session stays reproducible with fresh draws each turn.
        options.seed = options.seed.map(|s| s.wrapping_add(1));
    }
    Ok(())
}

fn main() {
    let args: Cli = cli::parse();
    cli::exit_on_error(|| run(args));
}
