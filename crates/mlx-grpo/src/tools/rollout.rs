//! Multi-turn rollouts with tools: generation with the tool loop, and what
//! training and the rewards get from it.

use std::collections::BTreeMap;
use std::ops::Range;

use mlx_lm::generate::{TurnsCompletion, generate_turns_groups};
use mlx_lm::sample::RandomState;
use mlx_lm::{ChatTemplateOptions, LanguageModel, Tokenizer};

use super::environment::Tools;
use super::turn_loop::ToolLoop;
use crate::config::GrpoConfig;
use crate::dataset::Row;
use crate::rewards::{Completion, Turn};
use crate::trainer::rollout::{RolloutSample, batch_options, row_chunks};
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

/// Samples the multi-turn completion rows `rows` of a rollout of
/// `config.num_generations` completions per prompt (as
/// [`crate::trainer::rollout::generate_rows`] does: same batches, same
/// per-row keys, so a row's completion does not depend on
/// `generation_chunk_prompts` nor on the other rows sampled with it),
/// running `tools` between the turns: at most
/// `config.max_tool_calling_iterations` rounds of tool results per
/// completion, `config.max_completion_length` tokens in all (model and
/// tool tokens). Each completion gets its own tool instance, reset with
/// its dataset row (`rows[row_indices[prompt]]`); rows outside `rows` get
/// none. Samples come in row order.
#[allow(clippy::too_many_arguments)]
pub fn generate_rows_with_tools<M: LanguageModel>(
    model: &M,
    tokenizer: &Tokenizer,
    tools: &Tools,
    rows: &[Row],
    row_indices: &[usize],
    prompts: &[Vec<u32>],
    config: &GrpoConfig,
    seed: u64,
    completion_rows: Range<usize>,
) -> Result<Vec<RolloutSample>> {
    let options = batch_options(tokenizer, config);
    let g = options.num_generations.max(1);
    let total = prompts.len().saturating_mul(g);
    if completion_rows.end > total {
        return Err(Error::internal(format!(
            "rows {completion_rows:?} of a rollout of {total} completions"
        )));
    }
    let mut samples = Vec::with_capacity(completion_rows.len());
    for chunk in row_chunks(&completion_rows, g, config.generation_chunk_prompts) {
        let part = &prompts[chunk.prompts.clone()];
        let mut instances = Vec::with_capacity(completion_rows.len());
        let mut row_of = Vec::with_capacity(part.len());
        for (p, gens) in chunk.prompts.clone().zip(&chunk.generations) {
            let row_index = *row_indices
                .get(p)
                .ok_or_else(|| Error::internal(format!("no dataset row for prompt {p}")))?;
            let row = rows
                .get(row_index)
                .ok_or_else(|| Error::internal(format!("dataset row {row_index} missing")))?;
            row_of.push(row_index);
            for _ in gens.clone() {
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
        let mut rng = RandomState::per_row_from_seeds(&chunk.row_seeds(seed, g))?;
        let out = generate_turns_groups(
            model,
            part,
            &chunk.generations,
            &options,
            &mut tool_loop,
            &mut rng,
        )?;
        let mut rollouts = std::mem::take(&mut tool_loop.rollouts);
        // The completions come sorted by prompt and generation: the batch's
        // row order, in which the loop's instances are.
        for (slot, c) in out.completions.into_iter().enumerate() {
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
