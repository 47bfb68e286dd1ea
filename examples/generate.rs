//! Text generation from the command line, with mlx-lm's flags.
//!
//! ```sh
//! cargo run --release --example generate -- --model DIR --prompt "Hello" \
//!     [--max-tokens 100] [--temp 0.0] [--top-p 1.0] [--top-k 0] [--min-p 0.0] \
//!     [--min-tokens-to-keep 1] [--xtc-probability 0.0] [--xtc-threshold 0.1] \
//!     [--xtc-special-tokens 1,2] [--repetition-penalty P] [--repetition-context-size 20] \
//!     [--presence-penalty P] [--presence-context-size 20] \
//!     [--frequency-penalty P] [--frequency-context-size 20] \
//!     [--logit-bias '{"100": 17.0}'] [--seed S] [--prompt-tokens 1,2,3] \
//!     [--system-prompt TEXT] [--ignore-chat-template] [--prefill-step-size 2048] \
//!     [--dtype f32|bf16|f16] [--ignore-eos] [--json]
//! ```
//!
//! The prompt goes through the tokenizer's chat template (as mlx-lm does)
//! unless `--ignore-chat-template`; `--prompt-tokens` gives the ids
//! directly. `--seed S` draws the same tokens as `mlx_lm.generate --seed S`
//! on the same model and prompt. With `--json`, the last line is one JSON
//! object: `tokens`, `logprobs`, `finish_reason`, `text` and `stats`.
//!
//! Without `--model` it runs the tiny random test checkpoint (which has no
//! tokenizer: tokens are printed as ids).

use std::path::{Path, PathBuf};

use mlx_grpo_workspace::args::Args;
use mlx_lm::generate::{
    generate_step, stream_generate, FinishReason, GenerateOptions, GenerationStats,
};
use mlx_lm::sample::{LogitsProcessorConfig, RandomState, SamplerConfig};
use mlx_lm::{ChatTemplateOptions, Tokenizer};
use mlx_tensor::Dtype;
use serde_json::{json, Value};

const OPTIONS: &[&str] = &[
    "model",
    "prompt",
    "prompt-tokens",
    "system-prompt",
    "max-tokens",
    "temp",
    "top-p",
    "top-k",
    "min-p",
    "min-tokens-to-keep",
    "xtc-probability",
    "xtc-threshold",
    "xtc-special-tokens",
    "repetition-penalty",
    "repetition-context-size",
    "presence-penalty",
    "presence-context-size",
    "frequency-penalty",
    "frequency-context-size",
    "logit-bias",
    "seed",
    "prefill-step-size",
    "dtype",
];
const FLAGS: &[&str] = &["ignore-eos", "json", "ignore-chat-template"];

type BoxError = Box<dyn std::error::Error>;

fn default_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/mlx-lm/tests/fixtures/sample/tiny-qwen3")
}

fn dtype(name: &str) -> Result<Dtype, BoxError> {
    Ok(match name {
        "f32" | "float32" => Dtype::F32,
        "bf16" | "bfloat16" => Dtype::BF16,
        "f16" | "float16" => Dtype::F16,
        other => return Err(format!("--dtype {other}: use f32, bf16 or f16").into()),
    })
}

/// The sampler settings of the flags (mlx-lm's defaults).
fn sampler(args: &Args, special_default: Vec<u32>) -> Result<SamplerConfig, BoxError> {
    Ok(SamplerConfig {
        temperature: args.get_or("temp", 0.0)?,
        top_p: args.get_or("top-p", 1.0)?,
        min_p: args.get_or("min-p", 0.0)?,
        min_tokens_to_keep: args.get_or("min-tokens-to-keep", 1)?,
        top_k: args.get_or("top-k", 0)?,
        xtc_probability: args.get_or("xtc-probability", 0.0)?,
        xtc_threshold: args.get_or("xtc-threshold", 0.1)?,
        xtc_special_tokens: args.list("xtc-special-tokens")?.unwrap_or(special_default),
    })
}

/// The logits-processor settings of the flags.
fn processors(args: &Args) -> Result<LogitsProcessorConfig, BoxError> {
    let mut logit_bias = Vec::new();
    if let Some(text) = args.raw("logit-bias") {
        let map: serde_json::Map<String, Value> = serde_json::from_str(text)?;
        for (k, v) in map {
            let id: u32 = k
                .parse()
                .map_err(|e| format!("--logit-bias key {k:?}: {e}"))?;
            let bias = v
                .as_f64()
                .ok_or_else(|| format!("--logit-bias value of {k} is not a number"))?;
            logit_bias.push((id, bias));
        }
    }
    let defaults = LogitsProcessorConfig::default();
    Ok(LogitsProcessorConfig {
        logit_bias,
        repetition_penalty: args.get("repetition-penalty")?,
        repetition_context_size: args
            .get_or("repetition-context-size", defaults.repetition_context_size)?,
        presence_penalty: args.get("presence-penalty")?,
        presence_context_size: args
            .get_or("presence-context-size", defaults.presence_context_size)?,
        frequency_penalty: args.get("frequency-penalty")?,
        frequency_context_size: args
            .get_or("frequency-context-size", defaults.frequency_context_size)?,
    })
}

/// End-of-sequence ids of `config.json` (for a model without a tokenizer).
fn config_eos(dir: &Path) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
        return Vec::new();
    };
    let Ok(config) = serde_json::from_str::<Value>(&text) else {
        return Vec::new();
    };
    match &config["eos_token_id"] {
        Value::Number(n) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|v| v as u32)
            .collect(),
        _ => Vec::new(),
    }
}

fn prompt_ids(args: &Args, tokenizer: Option<&Tokenizer>) -> Result<Vec<u32>, BoxError> {
    if let Some(ids) = args.list::<u32>("prompt-tokens")? {
        return Ok(ids);
    }
    let Some(tok) = tokenizer else {
        if args.raw("prompt").is_some() {
            return Err("this model has no tokenizer: give --prompt-tokens".into());
        }
        return Ok(vec![1, 45, 67, 89, 12, 200]);
    };
    let prompt = args
        .raw("prompt")
        .unwrap_or("hello")
        .replace("\\n", "\n")
        .replace("\\t", "\t");
    let use_template = !args.flag("ignore-chat-template") && !tok.chat_templates().is_empty();
    if !use_template {
        return Ok(tok.encode(&prompt, true)?);
    }
    let mut messages = Vec::new();
    if let Some(system) = args.raw("system-prompt") {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": prompt}));
    let options = ChatTemplateOptions::default().add_generation_prompt(true);
    Ok(tok.apply_chat_template_ids(&messages, &options)?)
}

struct Outcome {
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    text: Option<String>,
    finish_reason: FinishReason,
    stats: GenerationStats,
}

fn run() -> Result<(), BoxError> {
    let args = Args::from_env(OPTIONS, FLAGS)?;
    let dir = args
        .raw("model")
        .map(PathBuf::from)
        .unwrap_or_else(default_model);
    let dtype = args.raw("dtype").map(dtype).transpose()?;
    let model = mlx_lm::load_model(&dir, dtype)?;
    let tokenizer = if dir.join("tokenizer.json").is_file() {
        Some(Tokenizer::from_dir(&dir)?)
    } else {
        None
    };
    let json_out = args.flag("json");

    let prompt = prompt_ids(&args, tokenizer.as_ref())?;
    let eos = match &tokenizer {
        Some(t) => t.eos_token_ids().to_vec(),
        None => config_eos(&dir),
    };
    // XTC's protected tokens (as mlx-lm): the newline and the end-of-sequence
    // ids. A vocabulary with no newline (and no unknown token) has none.
    let mut special = match &tokenizer {
        Some(t) => t.encode("\n", false).unwrap_or_default(),
        None => Vec::new(),
    };
    special.extend(&eos);
    let options = GenerateOptions {
        max_tokens: Some(args.get_or("max-tokens", 100usize)?),
        sampler: sampler(&args, special)?,
        processors: processors(&args)?,
        prefill_step_size: args.get_or(
            "prefill-step-size",
            mlx_lm::generate::DEFAULT_PREFILL_STEP_SIZE,
        )?,
        eos_token_ids: Some(eos.clone()),
        ignore_eos: args.flag("ignore-eos"),
        ..GenerateOptions::default()
    };
    let rng = match args.get::<u64>("seed")? {
        Some(seed) => RandomState::from_seed(seed)?,
        None => RandomState::global(),
    };

    if !json_out {
        println!("==========");
    }
    let outcome = match &tokenizer {
        Some(tok) => {
            let mut out = Outcome {
                tokens: Vec::new(),
                logprobs: Vec::new(),
                text: Some(String::new()),
                finish_reason: FinishReason::Length,
                stats: GenerationStats::default(),
            };
            for r in stream_generate(&model, tok, &prompt, &options, rng)? {
                let r = r?;
                if !json_out {
                    print!("{}", r.text);
                    use std::io::Write;
                    std::io::stdout().flush()?;
                }
                out.tokens.push(r.token);
                out.logprobs.push(r.logprob);
                if let Some(text) = &mut out.text {
                    text.push_str(&r.text);
                }
                out.stats = r.stats;
                if let Some(f) = r.finish_reason {
                    out.finish_reason = f;
                }
            }
            out
        }
        None => {
            let stop_ids = if options.ignore_eos { Vec::new() } else { eos };
            let mut steps = generate_step(&model, &prompt, &options, rng)?;
            let (mut tokens, mut logprobs) = (Vec::new(), Vec::new());
            let mut finish_reason = FinishReason::Length;
            for t in steps.by_ref() {
                let t = t?;
                tokens.push(t.token);
                logprobs.push(t.logprob);
                if !json_out {
                    print!("{} ", t.token);
                }
                if stop_ids.contains(&t.token) {
                    finish_reason = FinishReason::Stop;
                    break;
                }
            }
            Outcome {
                tokens,
                logprobs,
                text: None,
                finish_reason,
                stats: steps.stats(),
            }
        }
    };
    let s = outcome.stats;
    if json_out {
        let line = json!({
            "tokens": outcome.tokens,
            "logprobs": outcome.logprobs,
            "finish_reason": outcome.finish_reason.as_str(),
            "text": outcome.text,
            "stats": {
                "prompt_tokens": s.prompt_tokens,
                "prompt_tps": s.prompt_tps(),
                "generation_tokens": s.generation_tokens,
                "generation_tps": s.generation_tps(),
                "peak_memory_gb": s.peak_memory_gb(),
            },
        });
        println!("{line}");
    } else {
        println!("\n==========");
        println!(
            "Prompt: {} tokens, {:.3} tokens-per-sec",
            s.prompt_tokens,
            s.prompt_tps()
        );
        println!(
            "Generation: {} tokens, {:.3} tokens-per-sec",
            s.generation_tokens,
            s.generation_tps()
        );
        println!("Peak memory: {:.3} GB", s.peak_memory_gb());
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
