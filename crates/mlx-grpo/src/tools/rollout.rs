//! Multi-turn rollouts with tools: generation with the tool loop, and what
//! training and the rewards get from it.

use std::collections::BTreeMap;
use std::ops::Range;

use mlx_lm::generate::{TurnsCompletion, generate_turns};
use mlx_lm::sample::RandomState;
use mlx_lm::{ChatTemplateOptions, LanguageModel, Tokenizer};

use super::environment::Tools;
use super::turn_loop::ToolLoop;
use crate::config::GrpoConfig;
use crate::dataset::Row;
use crate::rewards::{Completion, Turn};
use crate::trainer::rollout::{RolloutSample, batch_options, chunk_key};
use crate::{Error, Result};

/// What a multi-turn rollout adds to a [`RolloutSample`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolRollout {
    /// Per completion token: `true` when the model sampled it, `false` for
    /// tool results and template tokens (TRL's `tool_mask`).
    pub sampled: Vec<bool>,
    /// Every assistant turn, parsed, with its tool results.
    pub turns: Vec<Turn>,
    /// Tool calls the model made.
    pub calls: usize,
    /// Calls that failed.
    pub failures: usize,
    /// The environment's reward, if it gives one.
    pub environment_reward: Option<f64>,
}

/// Samples `config.num_generations` multi-turn completions for each
/// prompt of the generation chunks `chunks` (as
/// [`crate::trainer::rollout::generate_chunks`] does, with the same keys),
/// running `tools` between the turns: at most
/// `config.max_tool_calling_iterations` rounds of tool results per
/// completion, `config.max_completion_length` tokens in all (model and
/// tool tokens). Each completion gets its own tool instance, reset with
/// its dataset row (`rows[row_indices[prompt]]`).
#[allow(clippy::too_many_arguments)]
pub fn generate_chunks_with_tools<M: LanguageModel>(
    model: &M,
    tokenizer: &Tokenizer,
    tools: &Tools,
    rows: &[Row],
    row_indices: &[usize],
    prompts: &[Vec<u32>],
    config: &GrpoConfig,
    seed: u64,
    chunks: Range<usize>,
) -> Result<Vec<RolloutSample>> {
    let options = batch_options(tokenizer, config);
    let g = options.num_generations.max(1);
    let chunk = config
        .generation_chunk_prompts
        .unwrap_or(prompts.len())
        .max(1);
    let mut samples = Vec::with_capacity(prompts.len().saturating_mul(g));
    for (i, part) in prompts.chunks(chunk).enumerate() {
        if !chunks.contains(&i) {
            continue;
        }
        let first = i * chunk;
        let mut instances = Vec::with_capacity(part.len() * g);
        let mut row_of = Vec::with_capacity(part.len());
        for p in first..first + part.len() {
            let row_index = *row_indices
                .get(p)
                .ok_or_else(|| Error::internal(format!("no dataset row for prompt {p}")))?;
            let row = rows
                .get(row_index)
                .ok_or_else(|| Error::internal(format!("dataset row {row_index} missing")))?;
            row_of.push(row_index);
            for _ in 0..g {
                let mut instance = tools.instance();
                instance
                    .reset(row)
                    .map_err(|message| Error::EnvironmentReset {
                        row: row_index,
                        message,
                    })?;
                instances.push(instance);
            }
        }
        let mut tool_loop = ToolLoop::new(
            tokenizer,
            ChatTemplateOptions::default(),
            config.max_tool_calling_iterations,
            instances,
        );
        let mut rng = RandomState::from_seed(chunk_key(seed, i))?;
        let out = generate_turns(model, part, &options, &mut tool_loop, &mut rng)?;
        let mut rollouts = std::mem::take(&mut tool_loop.rollouts);
        for c in out.completions {
            let slot = c.completion.prompt_index * g + c.completion.generation_index;
            let state = rollouts
                .get_mut(slot)
                .ok_or_else(|| Error::internal(format!("generation returned row {slot}")))?;
            let turns = all_turns(&tool_loop, &c, std::mem::take(&mut state.turns))?;
            let row_index = row_of[c.completion.prompt_index];
            samples.push(RolloutSample {
                row_index,
                prompt_ids: part[c.completion.prompt_index].clone(),
                completion_ids: c.completion.tokens,
                sampling_logps: c.completion.logprobs,
                finish_reason: c.completion.finish_reason,
                tools: Some(ToolRollout {
                    sampled: c.sampled,
                    turns,
                    calls: state.calls,
                    failures: state.failures,
                    environment_reward: state.instance.reward(),
                }),
            });
        }
        mlx_tensor::memory::clear_cache();
    }
    Ok(samples)
}

/// The turns the loop parsed (those that ended at a stop), plus the last
/// turn when it ended otherwise (at the length limit).
fn all_turns(
    tool_loop: &ToolLoop<'_>,
    c: &TurnsCompletion,
    mut turns: Vec<Turn>,
) -> Result<Vec<Turn>> {
    for span in c.turns.iter().skip(turns.len()) {
        let tokens = c
            .completion
            .tokens
            .get(span.clone())
            .ok_or_else(|| Error::internal("a turn outside its completion"))?;
        turns.push(tool_loop.parse_turn(tokens)?);
    }
    Ok(turns)
}

/// The reward functions' view of a multi-turn sample: the last turn as the
/// answer, every turn in [`Completion::turns`], the model's tokens as
/// `num_tokens`.
pub fn multi_turn_completion(sample: &RolloutSample, tools: &ToolRollout) -> Completion {
    let last = tools.turns.last();
    Completion {
        text: last.map(|t| t.text.clone()).unwrap_or_default(),
        raw_text: last.map(|t| t.raw_text.clone()).unwrap_or_default(),
        thinking: last.and_then(|t| t.thinking.clone()),
        tool_calls: last.map(|t| t.tool_calls.clone()).unwrap_or_default(),
        num_tokens: sample.model_tokens(),
        finish_reason: sample.finish_reason,
        turns: tools.turns.clone(),
        environment_reward: tools.environment_reward,
    }
}

/// TRL's tool metrics of a generation batch: `tools/call_frequency` (tool
/// calls per completion), `tools/failure_frequency` (failed calls per call,
/// 0 without calls), plus `tools/mean_turns` (assistant turns per
/// completion). Empty when no sample is a tool rollout.
pub fn tool_metrics(samples: &[RolloutSample]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let rollouts: Vec<&ToolRollout> = samples.iter().filter_map(|s| s.tools.as_ref()).collect();
    if rollouts.is_empty() {
        return out;
    }
    let n = samples.len() as f64;
    let calls: usize = rollouts.iter().map(|t| t.calls).sum();
    let failures: usize = rollouts.iter().map(|t| t.failures).sum();
    let turns: usize = rollouts.iter().map(|t| t.turns.len()).sum();
    out.insert("tools/call_frequency".into(), calls as f64 / n);
    out.insert(
        "tools/failure_frequency".into(),
        if calls > 0 {
            failures as f64 / calls as f64
        } else {
            0.0
        },
    );
    out.insert("tools/mean_turns".into(), turns as f64 / n);
    out
}
