//! Settings of single-sequence generation.

use crate::sample::{LogitsProcessorConfig, SamplerConfig};

/// Prompt tokens processed per forward pass before generation starts.
pub const DEFAULT_PREFILL_STEP_SIZE: usize = 2048;

/// Tokens generated unless told otherwise.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// Why generation of a sequence ended (serialized as `"stop"` / `"length"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop sequence was generated.
    Stop,
    /// The token limit was reached.
    Length,
}

impl FinishReason {
    /// `"stop"` or `"length"`, as mlx-lm and OpenAI-style APIs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

impl std::fmt::Display for FinishReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of single-sequence generation ([`super::generate_step`],
/// [`super::stream_generate`], [`super::generate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens to generate; `None` for no limit (stop tokens only).
    pub max_tokens: Option<usize>,
    /// How to pick each token.
    pub sampler: SamplerConfig,
    /// What to do to the logits before sampling.
    pub processors: LogitsProcessorConfig,
    /// Prompt tokens per forward pass while prefilling.
    pub prefill_step_size: usize,
    /// Extra stop sequences of token ids (any length); generation stops once
    /// one has been generated and its tokens' text is not emitted.
    pub stop_sequences: Vec<Vec<u32>>,
    /// Ids that end generation; `None` uses the tokenizer's end-of-sequence
    /// ids (text generation) or none (token generation).
    pub eos_token_ids: Option<Vec<u32>>,
    /// Ignore end-of-sequence ids: only `max_tokens` and stop sequences end
    /// generation.
    pub ignore_eos: bool,
    /// Hand out each step's full log-probability vector too.
    pub return_logprobs: bool,
    /// Leave special tokens out of the streamed text.
    pub skip_special_tokens: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: Some(DEFAULT_MAX_TOKENS),
            sampler: SamplerConfig::default(),
            processors: LogitsProcessorConfig::default(),
            prefill_step_size: DEFAULT_PREFILL_STEP_SIZE,
            stop_sequences: Vec::new(),
            eos_token_ids: None,
            ignore_eos: false,
            return_logprobs: false,
            skip_special_tokens: false,
        }
    }
}

impl GenerateOptions {
    /// Default settings with at most `max_tokens` tokens.
    pub fn with_max_tokens(max_tokens: usize) -> Self {
        GenerateOptions {
            max_tokens: Some(max_tokens),
            ..GenerateOptions::default()
        }
    }

    /// The same settings with `sampler`.
    pub fn sampler(mut self, sampler: SamplerConfig) -> Self {
        self.sampler = sampler;
        self
    }

    /// The same settings with `processors`.
    pub fn processors(mut self, processors: LogitsProcessorConfig) -> Self {
        self.processors = processors;
        self
    }

    /// The ids that end generation, given the tokenizer's (or model's) own.
    pub(crate) fn stop_ids(&self, default: &[u32]) -> Vec<u32> {
        if self.ignore_eos {
            return Vec::new();
        }
        match &self.eos_token_ids {
            Some(ids) => ids.clone(),
            None => default.to_vec(),
        }
    }
}
