//! Settings and results of batch generation.

use super::options::{DEFAULT_MAX_TOKENS, DEFAULT_PREFILL_STEP_SIZE, FinishReason};
use super::stats::GenerationStats;
use crate::sample::{LogitsProcessorConfig, SamplerConfig};

/// Settings of [`super::generate_batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOptions {
    /// Completions per prompt (GRPO's group size `G`).
    pub num_generations: usize,
    /// Most tokens per completion (the stop tokens included).
    pub max_tokens: usize,
    /// How to pick tokens (every row).
    pub sampler: SamplerConfig,
    /// Per-prompt sampler settings overriding [`Self::sampler`] (one entry
    /// per prompt, shared by its completions).
    pub prompt_samplers: Option<Vec<SamplerConfig>>,
    /// What to do to each row's logits before sampling (each row uses its
    /// own prompt and completion as context).
    pub processors: LogitsProcessorConfig,
    /// Ids that end a completion (usually the tokenizer's
    /// [`crate::Tokenizer::eos_token_ids`]); empty to ignore them.
    pub eos_token_ids: Vec<u32>,
    /// Further stop sequences of token ids (any length).
    pub stop_sequences: Vec<Vec<u32>>,
    /// Prompt positions per forward pass while prefilling.
    pub prefill_step_size: usize,
    /// Temperature of the recorded TRL-style log-probabilities; `None` uses
    /// the sampler's temperature, or 1 when sampling greedily.
    pub logprob_temperature: Option<f64>,
    /// Token id written into the padding positions (never attended to).
    pub pad_token_id: u32,
    /// Working memory, in MiB, that decoding may hold beyond the weights,
    /// what the caller already holds and the KV cache grown to its final
    /// size: while decoding, MLX's memory limit is lowered to that total
    /// (never raised; restored afterwards). MLX allocates a step's buffers
    /// when it queues the step, and a cache write whose buffer the previous
    /// step is still reading copies the whole buffer, so without a bound
    /// the steps queued ahead of the device keep a second copy of the cache
    /// alive; with it, evaluation waits for the device instead. `None`
    /// (default) leaves the limit alone: on an H100 a bound traded speed for
    /// little memory (see docs/GPU_BENCH.md); a suggested bound is
    /// [`SUGGESTED_DECODE_MEMORY_HEADROOM_MB`].
    pub memory_headroom_mb: Option<usize>,
    /// Queue each decoding step in two halves so that every layer's cache
    /// write lands in place. A step's cache write can reuse its buffer only
    /// once nothing else holds it, and the previous step's attention holds
    /// it until that step has run on the device; queued all at once, a step
    /// runs ahead of the device and the layers it reaches first copy their
    /// whole buffer (a second copy of part of the cache alive at once). In
    /// halves, the first half of the layers is queued once the previous
    /// step's first half has run, the second half once its tokens are read,
    /// so the device always has the other half to run meanwhile. `true` by
    /// default; `false` queues whole steps.
    pub in_place_cache_writes: bool,
}

/// A working-memory bound for [`BatchOptions::memory_headroom_mb`] that
/// measured no slower than no bound at 64 rows on an H100 (smaller bounds
/// made decoding wait for the device at every step).
pub const SUGGESTED_DECODE_MEMORY_HEADROOM_MB: usize = 2048;

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            num_generations: 1,
            max_tokens: DEFAULT_MAX_TOKENS,
            sampler: SamplerConfig::default(),
            prompt_samplers: None,
            processors: LogitsProcessorConfig::default(),
            eos_token_ids: Vec::new(),
            stop_sequences: Vec::new(),
            prefill_step_size: DEFAULT_PREFILL_STEP_SIZE,
            logprob_temperature: None,
            pad_token_id: 0,
            memory_headroom_mb: None,
            in_place_cache_writes: true,
        }
    }
}

impl BatchOptions {
    /// The temperature of the TRL-style log-probabilities.
    pub fn scoring_temperature(&self) -> f64 {
        match self.logprob_temperature {
            Some(t) => t,
            None if self.sampler.temperature > 0.0 => self.sampler.temperature,
            None => 1.0,
        }
    }
}

/// One generated completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Which prompt it continues (index into the prompts given).
    pub prompt_index: usize,
    /// Which of that prompt's completions it is (`0..num_generations`).
    pub generation_index: usize,
    /// Every generated token, the stop tokens included: an end-of-sequence
    /// id or the whole stop sequence that ended it is the tail
    /// ([`Self::stop_tokens`] long).
    pub tokens: Vec<u32>,
    /// For each token, its log-probability under the distribution it was
    /// sampled from: `log_softmax` of the processed logits (before top-k,
    /// top-p, min-p, XTC and temperature), as mlx-lm reports it.
    pub sampler_logprobs: Vec<f32>,
    /// For each token, `log_softmax(logits / T)[token]` of the model's raw
    /// logits in float32, with `T` = [`BatchOptions::scoring_temperature`]
    /// (no processors, no filters): what TRL records as
    /// `old_per_token_logps`.
    pub logprobs: Vec<f32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// How many trailing tokens of [`Self::tokens`] are the stop sequence
    /// (an end-of-sequence id counts 1); 0 when it ran out of tokens.
    pub stop_tokens: usize,
}

impl Completion {
    /// Number of generated tokens (stop tokens included).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether nothing was generated (never the case for a finished
    /// completion: at least one token is always generated).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens without the trailing stop sequence.
    pub fn content_tokens(&self) -> &[u32] {
        &self.tokens[..self.tokens.len() - self.stop_tokens.min(self.tokens.len())]
    }
}

/// What [`super::generate_batch`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutput {
    /// `prompts.len() * num_generations` completions, prompt-major: the
    /// completion `g` of prompt `p` is at `p * num_generations + g`
    /// ([`super::generate_batch_groups`]: the completions asked for, sorted
    /// by prompt and generation index).
    pub completions: Vec<Completion>,
    /// Prompt tokens (each prompt counted once), generated tokens (all
    /// completions), times and peak memory.
    pub stats: GenerationStats,
}
