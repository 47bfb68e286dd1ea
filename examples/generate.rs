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
//!     [--dtype f32|bf16|f16] [--adapter DIR] [--ignore-eos] [--json]
//! ```
//!
//! `--adapter DIR` applies LoRA adapters (PEFT's or mlx-lm's layout, e.g. a
//! GRPO checkpoint of an adapter run) to the model, as
//! `mlx_lm.generate --adapter-path` does.
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

use clap::Parser;
use mlx_grpo_workspace::cli::{self, BoxError, DtypeArg};
use mlx_lm::generate::{
    DEFAULT_PREFILL_STEP_SIZE, FinishReason, GenerateOptions, GenerationStats, generate_step,
    stream_generate,
};
use mlx_lm::loader::{load_and_attach_adapters, set_adapters_training};
use mlx_lm::sample::{LogitsProcessorConfig, RandomState, SamplerConfig};
use mlx_lm::{ChatTemplateOptions, LanguageModel, Tokenizer};
use serde_json::{Value, json};

/// Generates text from a prompt (the flags of `mlx_lm.generate`).
#[derive(Parser, Debug)]
#[command(name = "generate", allow_negative_numbers = true)]
struct Cli {
    /// Model directory (Hugging Face layout) [default: the tiny random test checkpoint]
    #[arg(long)]
    model: Option<PathBuf>,
    /// Message to be processed by the model (`\n` and `\t` are unescaped)
    #[arg(long, short = 'p')]
    prompt: Option<String>,
    /// Prompt token ids, comma-separated (instead of --prompt)
    #[arg(long, value_delimiter = ',', num_args = 1, conflicts_with = "prompt")]
    prompt_tokens: Option<Vec<u32>>,
    /// System prompt for the chat template
    #[arg(long)]
    system_prompt: Option<String>,
    /// Maximum number of tokens to generate
    #[arg(long, short = 'm', default_value_t = 100)]
    max_tokens: usize,
    /// Sampling temperature (0: greedy)
    #[arg(long, value_parser = cli::non_negative, default_value_t = 0.0)]
    temp: f64,
    /// Sampling top-p (1: off)
    #[arg(long, value_parser = cli::probability, default_value_t = 1.0)]
    top_p: f64,
    /// Sampling top-k (0: off)
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Sampling min-p (0: off)
    #[arg(long, value_parser = cli::probability, default_value_t = 0.0)]
    min_p: f64,
    /// Minimum tokens kept by min-p
    #[arg(long, value_parser = cli::positive_count, default_value_t = 1)]
    min_tokens_to_keep: usize,
    /// XTC sampling probability
    #[arg(long, value_parser = cli::probability, default_value_t = 0.0)]
    xtc_probability: f64,
    /// XTC sampling threshold
    #[arg(long, value_parser = cli::probability, default_value_t = 0.1)]
    xtc_threshold: f64,
    /// Token ids XTC never removes, comma-separated [default: newline and EOS]
    #[arg(long, value_delimiter = ',', num_args = 1)]
    xtc_special_tokens: Option<Vec<u32>>,
    /// Penalty on repeated tokens (1: off)
    #[arg(long, value_parser = cli::non_negative)]
    repetition_penalty: Option<f64>,
    /// Tokens the repetition penalty looks back at
    #[arg(long, default_value_t = LogitsProcessorConfig::default().repetition_context_size)]
    repetition_context_size: usize,
    /// Additive penalty on tokens present in the context
    #[arg(long, value_parser = cli::finite)]
    presence_penalty: Option<f64>,
    /// Tokens the presence penalty looks back at
    #[arg(long, default_value_t = LogitsProcessorConfig::default().presence_context_size)]
    presence_context_size: usize,
    /// Penalty proportional to each token's count in the context
    #[arg(long, value_parser = cli::finite)]
    frequency_penalty: Option<f64>,
    /// Tokens the frequency penalty looks back at
    #[arg(long, default_value_t = LogitsProcessorConfig::default().frequency_context_size)]
    frequency_context_size: usize,
    /// Additive logit biases as JSON, e.g. '{"100": 17.0}'
    #[arg(long)]
    logit_bias: Option<String>,
    /// Seed of the sampler
    #[arg(long)]
    seed: Option<u64>,
    /// Don't apply the tokenizer's chat template
    #[arg(long)]
    ignore_chat_template: bool,
    /// Prompt tokens per prefill step
    #[arg(long, value_parser = cli::positive_count, default_value_t = DEFAULT_PREFILL_STEP_SIZE)]
    prefill_step_size: usize,
    /// Data type of the weights [default: the checkpoint's]
    #[arg(long, value_enum)]
    dtype: Option<DtypeArg>,
    /// LoRA adapter directory (PEFT's or mlx-lm's layout) applied to the model
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    /// Keep generating past end-of-sequence tokens
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object (tokens, logprobs, finish_reason, text, stats)
    #[arg(long)]
    json: bool,
}

fn default_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/mlx-lm/tests/fixtures/sample/tiny-qwen3")
}

/// The sampler settings of the flags (mlx-lm's defaults).
fn sampler(args: &Cli, special_default: Vec<u32>) -> SamplerConfig {
    SamplerConfig {
        temperature: args.temp,
        top_p: args.top_p,
        min_p: args.min_p,
        min_tokens_to_keep: args.min_tokens_to_keep,
        top_k: args.top_k,
        xtc_probability: args.xtc_probability,
        xtc_threshold: args.xtc_threshold,
        xtc_special_tokens: args.xtc_special_tokens.clone().unwrap_or(special_default),
    }
}

/// The logits-processor settings of the flags.
fn processors(args: &Cli) -> Result<LogitsProcessorConfig, BoxError> {
    let mut logit_bias = Vec::new();
    if let Some(text) = &args.logit_bias {
        let map: serde_json::Map<String, Value> =
            serde_json::from_str(text).map_err(|e| format!("--logit-bias {text:?}: {e}"))?;
        for (k, v) in map {
            let id: u32 = k
                .parse()
                .map_err(|e| format!("--logit-bias key {k:?}: {e}"))?;
            let bias = v
                .as_f64()
                .filter(|b| b.is_finite())
                .ok_or_else(|| format!("--logit-bias value of {k} is not a finite number"))?;
            logit_bias.push((id, bias));
        }
    }
    Ok(LogitsProcessorConfig {
        logit_bias,
        repetition_penalty: args.repetition_penalty,
        repetition_context_size: args.repetition_context_size,
        presence_penalty: args.presence_penalty,
        presence_context_size: args.presence_context_size,
        frequency_penalty: args.frequency_penalty,
        frequency_context_size: args.frequency_context_size,
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
        Value::Number(n) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .into_iter()
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_u64)
            .filter_map(|v| u32::try_from(v).ok())
            .collect(),
        _ => Vec::new(),
    }
}

fn prompt_ids(args: &Cli, tokenizer: Option<&Tokenizer>) -> Result<Vec<u32>, BoxError> {
    if let Some(ids) = &args.prompt_tokens {
        return Ok(ids.clone());
    }
    let Some(tok) = tokenizer else {
        if args.prompt.is_some() {
            return Err("this model has no tokenizer: give --prompt-tokens".into());
        }
        return Ok(vec![1, 45, 67, 89, 12, 200]);
    };
    let prompt = args
        .prompt
        .as_deref()
        .unwrap_or("hello")
        .replace("\\n", "\n")
        .replace("\\t", "\t");
    let use_template = !args.ignore_chat_template && !tok.chat_templates().is_empty();
    if !use_template {
        return Ok(tok.encode(&prompt, true)?);
    }
    let mut messages = Vec::new();
    if let Some(system) = &args.system_prompt {
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

fn run(args: Cli) -> Result<(), BoxError> {
    let dir = args.model.clone().unwrap_or_else(default_model);
    let mut model = mlx_lm::load_model(&dir, args.dtype.map(Into::into))?;
    if let Some(adapter) = &args.adapter {
        load_and_attach_adapters(&mut model, adapter)?;
        set_adapters_training(&mut model, false);
    }
    let vocab = model.vocab_size();
    let tokenizer = if dir.join("tokenizer.json").is_file() {
        let tok = Tokenizer::from_dir(&dir)?;
        cli::check_tokenizer_fits(tok.vocab_size(), vocab, &dir)?;
        Some(tok)
    } else {
        None
    };
    let json_out = args.json;

    let prompt = prompt_ids(&args, tokenizer.as_ref())?;
    cli::check_token_ids(&prompt, vocab, "prompt")?;
    if let Some(ids) = &args.xtc_special_tokens {
        cli::check_token_ids(ids, vocab, "--xtc-special-tokens")?;
    }
    let processors = processors(&args)?;
    let biased: Vec<u32> = processors.logit_bias.iter().map(|&(id, _)| id).collect();
    cli::check_token_ids(&biased, vocab, "--logit-bias")?;
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
        max_tokens: Some(args.max_tokens),
        sampler: sampler(&args, special),
        processors,
        prefill_step_size: args.prefill_step_size,
        eos_token_ids: Some(eos.clone()),
        ignore_eos: args.ignore_eos,
        ..GenerateOptions::default()
    };
    let rng = match args.seed {
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
                    std::io::stdout()
                        .flush()
                        .map_err(|e| format!("writing to standard output: {e}"))?;
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
    let args: Cli = cli::parse();
    cli::exit_on_error(|| run(args));
}
