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

use mlx_grpo_workspace::args::Args;
use mlx_lm::chat::{chat, ChatOptions, ChatResult};
use mlx_lm::generate::GenerateOptions;
use mlx_lm::sample::SamplerConfig;
use mlx_lm::vocab::VocabTokenizerBuilder;
use mlx_lm::{ChatTemplateOptions, Tokenizer};
use mlx_tensor::Dtype;
use serde_json::{json, Value};

const OPTIONS: &[&str] = &[
    "model",
    "prompt",
    "system-prompt",
    "tools",
    "max-tokens",
    "temp",
    "top-p",
    "top-k",
    "min-p",
    "seed",
    "dtype",
];
const FLAGS: &[&str] = &["no-thinking", "json"];

type BoxError = Box<dyn std::error::Error>;

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

fn load(args: &Args) -> Result<(mlx_lm::Model, Tokenizer), BoxError> {
    let dtype = match args.raw("dtype") {
        None => None,
        Some("f32" | "float32") => Some(Dtype::F32),
        Some("bf16" | "bfloat16") => Some(Dtype::BF16),
        Some("f16" | "float16") => Some(Dtype::F16),
        Some(other) => return Err(format!("--dtype {other}: use f32, bf16 or f16").into()),
    };
    match args.raw("model") {
        Some(dir) => Ok((mlx_lm::load_model(dir, dtype)?, Tokenizer::from_dir(dir)?)),
        None => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("crates/mlx-lm/tests/fixtures/sample/tiny-qwen3");
            Ok((mlx_lm::load_model(dir, dtype)?, toy_tokenizer()?))
        }
    }
}

fn options(args: &Args) -> Result<ChatOptions, BoxError> {
    let mut template = ChatTemplateOptions::default();
    if let Some(path) = args.raw("tools") {
        let text =
            std::fs::read_to_string(PathBuf::from(path)).map_err(|e| format!("{path}: {e}"))?;
        let tools: Vec<Value> = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        template = template.tools(tools);
    }
    if args.flag("no-thinking") {
        template = template.enable_thinking(false);
    }
    let generate = GenerateOptions {
        max_tokens: Some(args.get_or("max-tokens", 512usize)?),
        sampler: SamplerConfig {
            temperature: args.get_or("temp", 0.6)?,
            top_p: args.get_or("top-p", 0.95)?,
            top_k: args.get_or("top-k", 20)?,
            min_p: args.get_or("min-p", 0.0)?,
            ..SamplerConfig::default()
        },
        ..GenerateOptions::default()
    };
    Ok(ChatOptions {
        generate,
        template,
        seed: args.get("seed")?,
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

fn run() -> Result<(), BoxError> {
    let args = Args::from_env(OPTIONS, FLAGS)?;
    let (model, tokenizer) = load(&args)?;
    let mut options = options(&args)?;
    let json_out = args.flag("json");
    let mut messages = Vec::new();
    if let Some(system) = args.raw("system-prompt") {
        messages.push(json!({"role": "system", "content": system}));
    }
    if let Some(prompt) = args.raw("prompt") {
        messages.push(json!({"role": "user", "content": prompt}));
        let reply = chat(&model, &tokenizer, &messages, &options)?;
        show(&reply, json_out);
        return Ok(());
    }
    if args.raw("model").is_none() {
        // Toy model: a single turn with a vocabulary prompt.
        messages.push(json!({"role": "user", "content": "w10 w11 w12"}));
        let reply = chat(&model, &tokenizer, &messages, &options)?;
        show(&reply, json_out);
        return Ok(());
    }
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
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
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
