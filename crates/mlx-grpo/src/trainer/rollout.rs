//! Rollouts: prompts rendered to token ids, `num_generations` completions
//! sampled for each, decoded and parsed for the reward functions.

use mlx_lm::text::tools::parse_completion;
use mlx_lm::{ChatTemplateOptions, Tokenizer};

use crate::dataset::{Prompt, Row, SplitMix64};
use crate::rewards::{Completion, FinishReason, RewardInput};
use crate::tools::ToolRollout;
use crate::{Error, Result};

/// One sampled completion with what training needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSample {
    /// Index of the prompt's row in the dataset.
    pub row_index: usize,
    /// Prompt token ids.
    pub prompt_ids: Vec<u32>,
    /// Completion token ids (the EOS token included when generated).
    pub completion_ids: Vec<u32>,
    /// `log_softmax(logits / temperature)[token]` at sampling time, per
    /// completion token (TRL's sampling log-probabilities).
    pub sampling_logps: Vec<f32>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// For a multi-turn rollout with tools: which completion tokens the
    /// model sampled (the others are tool results and template tokens,
    /// left out of the loss), its turns and its tool-call counts. `None`
    /// for a single-turn completion (every token sampled).
    pub tools: Option<ToolRollout>,
}

impl RolloutSample {
    /// Per completion token, whether the model sampled it (`None`: all).
    pub fn sampled_mask(&self) -> Option<&[bool]> {
        self.tools.as_ref().map(|t| t.sampled.as_slice())
    }

    /// Completion tokens the model sampled (TRL's completion length with a
    /// tool mask).
    pub fn model_tokens(&self) -> usize {
        match self.sampled_mask() {
            Some(mask) => mask.iter().filter(|&&m| m).count(),
            None => self.completion_ids.len(),
        }
    }
}

/// Renders a dataset prompt to token ids: conversations through the chat
/// template with the generation prompt, text as is.
pub fn render_prompt(tokenizer: &Tokenizer, prompt: &Prompt) -> Result<Vec<u32>> {
    render_prompt_with_tools(tokenizer, prompt, None)
}

/// [`render_prompt`] with the chat template's `tools` (the schemas of the
/// tools the model may call); text prompts are encoded as they are.
pub fn render_prompt_with_tools(
    tokenizer: &Tokenizer,
    prompt: &Prompt,
    tools: Option<Vec<serde_json::Value>>,
) -> Result<Vec<u32>> {
    match prompt {
        Prompt::Text(text) => Ok(tokenizer.encode(text, false)?),
        Prompt::Messages(messages) => {
            let values = messages
                .iter()
                .map(serde_json::to_value)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::InvalidConfig {
                    message: format!("prompt messages: {e}"),
                })?;
            let options = ChatTemplateOptions {
                add_generation_prompt: true,
                tools,
                ..Default::default()
            };
            let text = tokenizer.apply_chat_template(&values, &options)?;
            Ok(tokenizer.encode(&text, false)?)
        }
    }
}

/// Cuts rendered prompts to `max_prompt_length` tokens, keeping the last
/// ones (the left truncation of TRL's tokenizer, `truncation_side =
/// "left"`, which its `max_prompt_length` applied): the end of a prompt,
/// where a chat template puts the generation prompt, survives. The first
/// cut of a run is reported once on standard error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTruncation {
    max_prompt_length: Option<usize>,
    warned: bool,
}

impl PromptTruncation {
    /// Truncation to `max_prompt_length` tokens (`None` keeps prompts whole).
    pub fn new(max_prompt_length: Option<usize>) -> Self {
        Self {
            max_prompt_length,
            warned: false,
        }
    }

    /// `ids` cut to their last `max_prompt_length` tokens; a shorter prompt
    /// comes back unchanged. Warns the first time a prompt is cut.
    pub fn apply(&mut self, mut ids: Vec<u32>) -> Vec<u32> {
        let Some(limit) = self.max_prompt_length else {
            return ids;
        };
        let Some(excess) = ids.len().checked_sub(limit).filter(|&n| n > 0) else {
            return ids;
        };
        if !self.warned {
            self.warned = true;
            eprintln!(
                "warning: a prompt of {} tokens exceeds max_prompt_length = {limit}: its first {excess} tokens \
                 are dropped and its last {limit} kept (further cut prompts are not reported)",
                ids.len()
            );
        }
        ids.drain(..excess);
        ids
    }

    /// Whether a prompt has been cut (and reported) yet.
    pub fn has_warned(&self) -> bool {
        self.warned
    }
}

/// Decodes and parses a completion for the reward functions.
pub fn to_completion(tokenizer: &Tokenizer, sample: &RolloutSample) -> Result<Completion> {
    if let Some(tools) = &sample.tools {
        return Ok(crate::tools::multi_turn_completion(sample, tools));
    }
    let raw_text = tokenizer.decode(&sample.completion_ids, true)?;
    let parsed = parse_completion(&raw_text);
    Ok(Completion {
        text: parsed.text,
        raw_text,
        thinking: parsed.thinking,
        tool_calls: parsed.tool_calls,
        num_tokens: sample.completion_ids.len(),
        finish_reason: sample.finish_reason,
        turns: Vec::new(),
        environment_reward: None,
    })
}

/// The reward inputs of a set of samples.
pub fn reward_inputs(
    tokenizer: &Tokenizer,
    rows: &[Row],
    samples: &[RolloutSample],
) -> Result<Vec<RewardInput>> {
    samples
        .iter()
        .map(|s| {
            let row = rows.get(s.row_index).ok_or_else(|| Error::InvalidConfig {
                message: format!(
                    "rollout refers to dataset row {} of {}",
                    s.row_index,
                    rows.len()
                ),
            })?;
            Ok(RewardInput {
                prompt: row.prompt.clone(),
                completion: to_completion(tokenizer, s)?,
                answer: row.answer.clone(),
                extra: row.extra.clone(),
            })
        })
        .collect()
}

/// Samples `config.num_generations` completions for each prompt
/// (`prompts.len() × G` rows, sharing each prompt's prefill, at most
/// `generation_chunk_prompts` prompts at a time), with the sampler
/// settings of the config and one key per row derived from `seed`
/// ([`row_seed`]). Samples come grouped by prompt (`[a, a, b, b]` for G =
/// 2), as the advantages expect.
pub fn generate<M: mlx_lm::LanguageModel>(
    model: &M,
    tokenizer: &Tokenizer,
    row_indices: &[usize],
    prompts: &[Vec<u32>],
    config: &crate::config::GrpoConfig,
    seed: u64,
) -> Result<Vec<RolloutSample>> {
    let total = num_rows(prompts.len(), config.num_generations)?;
    generate_rows(
        model,
        tokenizer,
        row_indices,
        prompts,
        config,
        seed,
        0..total,
    )
}

/// [`generate`] restricted to the completion rows `rows` of the rollout
/// (row `r` is completion `r % G` of prompt `r / G`): each row is sampled
/// with its own key ([`row_seed`]`(seed, r)`), so it gets the completion it
/// gets in a whole-batch rollout, whatever `generation_chunk_prompts` and
/// whichever other rows are sampled with it. Only the prompts of `rows`
/// are read (the others may be left empty); a prompt whose group `rows`
/// cuts samples only its completions inside `rows`. Samples come in row
/// order.
pub fn generate_rows<M: mlx_lm::LanguageModel>(
    model: &M,
    tokenizer: &Tokenizer,
    row_indices: &[usize],
    prompts: &[Vec<u32>],
    config: &crate::config::GrpoConfig,
    seed: u64,
    rows: std::ops::Range<usize>,
) -> Result<Vec<RolloutSample>> {
    let options = batch_options(tokenizer, config);
    generate_row_range(
        model,
        prompts,
        &options,
        config.generation_chunk_prompts,
        seed,
        rows,
    )?
    .into_iter()
    .map(|c| {
        let prompt_ids = prompts.get(c.prompt_index).cloned().unwrap_or_default();
        let row_index = row_indices.get(c.prompt_index).copied().ok_or_else(|| {
            Error::internal(format!(
                "generation returned prompt index {}",
                c.prompt_index
            ))
        })?;
        Ok(RolloutSample {
            row_index,
            prompt_ids,
            completion_ids: c.tokens,
            sampling_logps: c.logprobs,
            finish_reason: c.finish_reason,
            tools: None,
        })
    })
    .collect()
}

/// The batch generation settings of a rollout: the config's sampler,
/// repetition penalty, lengths and memory bound, the tokenizer's
/// end-of-sequence and padding ids.
pub fn batch_options(
    tokenizer: &Tokenizer,
    config: &crate::config::GrpoConfig,
) -> mlx_lm::generate::BatchOptions {
    use mlx_lm::generate::BatchOptions;
    use mlx_lm::sample::{LogitsProcessorConfig, SamplerConfig};

    let sampler = SamplerConfig {
        temperature: config.temperature,
        top_p: if config.top_p < 1.0 {
            config.top_p
        } else {
            0.0
        },
        top_k: config.top_k,
        min_p: config.min_p.unwrap_or(0.0),
        ..Default::default()
    };
    let processors = LogitsProcessorConfig {
        repetition_penalty: (config.repetition_penalty != 1.0).then_some(config.repetition_penalty),
        ..Default::default()
    };
    BatchOptions {
        num_generations: config.num_generations,
        max_tokens: config.max_completion_length,
        sampler,
        processors,
        eos_token_ids: tokenizer.eos_token_ids().to_vec(),
        logprob_temperature: Some(config.temperature),
        pad_token_id: tokenizer
            .pad_token_id()
            .or(tokenizer.eos_token_id())
            .unwrap_or(0),
        memory_headroom_mb: config.generation_memory_headroom_mb,
        ..Default::default()
    }
}

/// The seed of the sampling keys of completion row `row` (counted over the
/// whole generation batch, prompt-major: row `p·G + g` is completion `g`
/// of prompt `p`) in a rollout seeded `seed`: the first output of
/// [`SplitMix64::for_stream`]`(seed, row)`. The row samples with the key
/// sequence that starts at MLX's `key(row_seed(seed, row))`
/// ([`mlx_lm::sample::RandomState::PerRow`]), so its completion depends on
/// `seed` and `row` only: not on `generation_chunk_prompts`, on which rows
/// share its batch, nor on the number of data-parallel ranks.
pub fn row_seed(seed: u64, row: usize) -> u64 {
    SplitMix64::for_stream(seed, row as u64).next_u64()
}

/// `prompts.len() × num_generations` rows, or an error when it overflows.
fn num_rows(prompts: usize, num_generations: usize) -> Result<usize> {
    prompts
        .checked_mul(num_generations.max(1))
        .ok_or_else(|| Error::InvalidConfig {
            message: format!("{prompts} prompts × {num_generations} generations overflow"),
        })
}

/// One batch of a rollout: its prompts (a range of the rollout's) and,
/// for each, the generation indices it samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChunk {
    /// The prompts of the batch (indices into the rollout's prompts).
    pub prompts: std::ops::Range<usize>,
    /// For each of those prompts, its completions that the batch samples.
    pub generations: Vec<std::ops::Range<usize>>,
}

impl RowChunk {
    /// The seeds of the batch's rows ([`row_seed`] of their rollout rows),
    /// in the batch's row order (prompt-major).
    pub fn row_seeds(&self, seed: u64, num_generations: usize) -> Vec<u64> {
        let g = num_generations.max(1);
        self.prompts
            .clone()
            .zip(&self.generations)
            .flat_map(|(p, gens)| {
                gens.clone()
                    .map(move |i| row_seed(seed, p.saturating_mul(g).saturating_add(i)))
            })
            .collect()
    }
}

/// The batches that sample completion rows `rows` of a rollout of `G =
/// num_generations` completions per prompt: the prompts that `rows` touch,
/// `chunk_prompts` at a time (all at once when `None`), each with its
/// completions inside `rows` (a group cut by `rows` samples only part).
pub fn row_chunks(
    rows: &std::ops::Range<usize>,
    num_generations: usize,
    chunk_prompts: Option<usize>,
) -> Vec<RowChunk> {
    let g = num_generations.max(1);
    if rows.is_empty() {
        return Vec::new();
    }
    let prompts = rows.start / g..rows.end.div_ceil(g);
    let chunk = chunk_prompts.unwrap_or(prompts.len()).max(1);
    let mut out = Vec::with_capacity(prompts.len().div_ceil(chunk));
    let mut start = prompts.start;
    while start < prompts.end {
        let end = start.saturating_add(chunk).min(prompts.end);
        let generations = (start..end)
            .map(|p| {
                let start = p.saturating_mul(g);
                let end = start.saturating_add(g);
                rows.start.max(start) - start..rows.end.min(end) - start
            })
            .collect();
        out.push(RowChunk {
            prompts: start..end,
            generations,
        });
        start = end;
    }
    out
}

/// `generate_batch` over every completion of `prompts`, `chunk_prompts`
/// prompts at a time (all at once when `None`), with per-row keys from
/// `seed` ([`row_seed`]): [`generate_row_range`] of all rows.
pub fn generate_in_chunks<M: mlx_lm::LanguageModel>(
    model: &M,
    prompts: &[Vec<u32>],
    options: &mlx_lm::generate::BatchOptions,
    chunk_prompts: Option<usize>,
    seed: u64,
) -> Result<Vec<mlx_lm::generate::Completion>> {
    let total = num_rows(prompts.len(), options.num_generations)?;
    generate_row_range(model, prompts, options, chunk_prompts, seed, 0..total)
}

/// Samples completion rows `rows` of `prompts` × `options.num_generations`
/// ([`row_chunks`]: at most `chunk_prompts` prompts per batch, so that only
/// one batch's KV cache is alive), each row with its own keys
/// ([`row_seed`]`(seed, row)`); each completion's `prompt_index` refers to
/// `prompts`. Each batch's cache buffers are given back to the system as
/// it ends (and every batch's decoder, with any stacked weights it made,
/// with it), so the training pass that follows starts with only the
/// weights and optimizer state allocated.
pub fn generate_row_range<M: mlx_lm::LanguageModel>(
    model: &M,
    prompts: &[Vec<u32>],
    options: &mlx_lm::generate::BatchOptions,
    chunk_prompts: Option<usize>,
    seed: u64,
    rows: std::ops::Range<usize>,
) -> Result<Vec<mlx_lm::generate::Completion>> {
    use mlx_lm::sample::RandomState;

    let total = num_rows(prompts.len(), options.num_generations)?;
    if rows.end > total {
        return Err(Error::internal(format!(
            "rows {rows:?} of a rollout of {total} completions"
        )));
    }
    let mut completions = Vec::with_capacity(rows.len());
    for chunk in row_chunks(&rows, options.num_generations, chunk_prompts) {
        let part = &prompts[chunk.prompts.clone()];
        let mut rng =
            RandomState::per_row_from_seeds(&chunk.row_seeds(seed, options.num_generations))?;
        let output = mlx_lm::generate::generate_batch_groups(
            model,
            part,
            &chunk.generations,
            options,
            &mut rng,
        )?;
        completions.extend(output.completions.into_iter().map(|mut c| {
            c.prompt_index += chunk.prompts.start;
            c
        }));
        // Give the batch's cache back before anything else allocates.
        mlx_tensor::memory::clear_cache();
    }
    Ok(completions)
}

/// The sampling key of a run's generation number `generation` (counted
/// from 0 over the whole run, also when one optimizer step samples several
/// generations): what [`crate::trainer::Trainer`] passes as `seed` to
/// [`generate`] / [`generate_rows`], so that a hand-built loop samples
/// the completions the trainer samples.
pub fn generation_seed(run_seed: u64, generation: u64) -> u64 {
    run_seed.wrapping_mul(0x9e37_79b9).wrapping_add(generation)
}
