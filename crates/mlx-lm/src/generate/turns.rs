//! Multi-turn batch generation: rows that end a turn can be continued with
//! tokens from outside the model (tool results, a new generation prompt)
//! from their own key/value cache, while the other rows keep decoding.

use std::ops::Range;
use std::time::Instant;

use mlx_tensor::{Array, eval, memory};

use super::batch::{
    Engine, Row, batch_layer, expand_cache, filter_cache, new_rows, prefill, row_plan,
    stop_sequences, validate,
};
use super::batch_types::{BatchOptions, Completion};
use super::decoder::Decoder;
use super::options::FinishReason;
use super::stats::GenerationStats;
use super::stop::StopState;
use crate::cache::{BatchKVCache, KVCache, LayerCache};
use crate::error::{Error, Result};
use crate::model::LanguageModel;
use crate::sample::{RandomState, TokenHistory};
use crate::sizes::dim;
use crate::token_ids::{CheckedTokens, check_ids};

/// A row that has just ended a turn at an end-of-sequence id or a stop
/// sequence, as [`TurnHandler::turn_ended`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct TurnEnd<'a> {
    /// The row: its position among the batch's completions in prompt-major
    /// order (`prompt_index * num_generations + generation_index` when
    /// every prompt samples all its completions, as [`generate_turns`]
    /// does).
    pub row: usize,
    /// Which prompt the row continues.
    pub prompt_index: usize,
    /// Which of that prompt's completions it is.
    pub generation_index: usize,
    /// Which turn ended (0 for the first).
    pub turn: usize,
    /// The tokens the model sampled in this turn, the stop tokens included.
    pub tokens: &'a [u32],
    /// Completion tokens so far (every turn and every inserted token).
    pub completion_len: usize,
    /// How many more completion tokens the row may hold
    /// ([`BatchOptions::max_tokens`] minus `completion_len`).
    pub room: usize,
}

/// Decides how a row goes on after a turn.
pub trait TurnHandler {
    /// The error the handler can fail with.
    type Error: From<Error>;

    /// Called when `end.row` ended a turn at a stop: `None` (or an empty
    /// vector) finishes the row; `Some(tokens)` appends `tokens` to its
    /// completion (they are prefilled from the row's cache, never sampled)
    /// and lets the model continue after them. At most `end.room` tokens;
    /// exactly `end.room` finishes the row with them (no room to generate).
    fn turn_ended(
        &mut self,
        end: &TurnEnd<'_>,
    ) -> std::result::Result<Option<Vec<u32>>, Self::Error>;

    /// Called with every row that ended a turn at the same step (in row
    /// order of the batch): one answer per row, as
    /// [`TurnHandler::turn_ended`] gives it. The default asks
    /// `turn_ended` for each in turn; a handler can override it to work on
    /// the rows at once (run their tools on several threads).
    fn turns_ended(
        &mut self,
        ends: &[TurnEnd<'_>],
    ) -> std::result::Result<Vec<Option<Vec<u32>>>, Self::Error> {
        ends.iter().map(|end| self.turn_ended(end)).collect()
    }
}

/// One multi-turn completion.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnsCompletion {
    /// The tokens of every turn and the inserted tokens between them, with
    /// their log-probabilities (0 for inserted tokens) and the finish
    /// reason of the last turn.
    pub completion: Completion,
    /// Per token of [`Completion::tokens`]: `true` when the model sampled
    /// it, `false` when it was inserted by the [`TurnHandler`].
    pub sampled: Vec<bool>,
    /// The sampled spans of [`Completion::tokens`], one per turn.
    pub turns: Vec<Range<usize>>,
}

/// What [`generate_turns`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnsOutput {
    /// `prompts.len() * num_generations` completions, prompt-major.
    pub completions: Vec<TurnsCompletion>,
    /// Token positions run through the model in prefill passes: each
    /// prompt but its last token once (shared by its group), then for every
    /// continued turn the tokens inserted after it (with the turn's last
    /// sampled token, minus the last inserted token, which the next
    /// decoding step reads).
    pub prefilled_tokens: usize,
    /// Token positions run through the model by decoding steps (one per
    /// sampled token).
    pub decoded_tokens: usize,
    /// Prompt tokens, generated tokens, times and peak memory.
    pub stats: GenerationStats,
}

/// What a live row has beside its [`Row`]: the token its next step reads
/// and which of its tokens were sampled.
struct Turns {
    /// The token the next decoding step reads.
    input: u32,
    /// The row's key state while it is out of the batch (per-row keys).
    key: Option<Array>,
    sampled: Vec<bool>,
    spans: Vec<Range<usize>>,
}

/// Generates `num_generations` completions for each prompt over several
/// turns, in one batch.
///
/// Prompts are prefilled as [`super::generate_batch`] prefills them (left
/// padded, once per group). Every step decodes one token for each live
/// row. When a row ends a turn at an end-of-sequence id or a stop
/// sequence, it leaves the batch and `handler` is asked what follows;
/// tokens it returns are appended to the row's completion and run through
/// the model from the row's own cache (its earlier tokens are never run
/// again), and the row rejoins the batch for the next step. Other rows are
/// not held back: the handler runs between two steps. A completion ends
/// when the handler says so, when it reaches `max_tokens` tokens (sampled
/// and inserted together; finish reason `Length`), or at a stop the
/// handler does not continue (`Stop`).
///
/// Decoding waits for each step's tokens before queueing the next (rows
/// come and go between steps). Greedy completions do not depend on which
/// other rows share the batch; with [`RandomState::PerRow`] keys (one per
/// row, prompt-major) sampled ones do not either: a row's key state leaves
/// and rejoins the batch with it, so its `t`-th sampled token always draws
/// with its own `t`-th key. Returned ids must be below the model's
/// vocabulary size ([`Error::TokenOutOfRange`]) and fit the row's room
/// ([`Error::InvalidGeneration`]).
pub fn generate_turns<M: LanguageModel, H: TurnHandler>(
    model: &M,
    prompts: &[Vec<u32>],
    options: &BatchOptions,
    handler: &mut H,
    rng: &mut RandomState,
) -> std::result::Result<TurnsOutput, H::Error> {
    let all = vec![0..options.num_generations; prompts.len()];
    generate_turns_groups(model, prompts, &all, options, handler, rng)
}

/// [`generate_turns`] for the generation indices `groups[p]` of each prompt
/// only, as [`super::generate_batch_groups`] samples them; a
/// [`TurnEnd::row`] is the row's position among those completions.
pub fn generate_turns_groups<M: LanguageModel, H: TurnHandler>(
    model: &M,
    prompts: &[Vec<u32>],
    groups: &[Range<usize>],
    options: &BatchOptions,
    handler: &mut H,
    rng: &mut RandomState,
) -> std::result::Result<TurnsOutput, H::Error> {
    let start = Instant::now();
    validate(model, prompts, options)?;
    let plan = row_plan(prompts, groups, options, rng)?;
    // Row of completion `gi` of prompt `p`: the rows of the prompts before
    // it, plus its place in its own range.
    let mut first_row = Vec::with_capacity(groups.len());
    let mut rows_before = 0usize;
    for range in groups {
        first_row.push(rows_before);
        rows_before += range.len();
    }
    let position = |p: usize, gi: usize| first_row[p] + (gi - groups[p].start);
    let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let padding = prompts
        .iter()
        .map(|p| dim(max_len - p.len(), "prompt"))
        .collect::<Result<Vec<i32>>>()?;
    let mut cache = model.new_batch_cache(&padding)?;
    let decoder = Decoder::new(model)?;
    prefill(&decoder, prompts, options, max_len, &mut cache)?;
    let mut prefilled_tokens: usize = prompts.iter().map(|p| p.len() - 1).sum();
    let expand: Vec<usize> = plan.iter().map(|&(p, _)| p).collect();
    if plan.len() != prompts.len() {
        expand_cache(&mut cache, &expand, dim(max_len, "prompt")?)?;
    }
    let stops = stop_sequences(options);
    let mut rows = new_rows(prompts, &plan, options)?;
    let mut turns: Vec<Turns> = expand
        .iter()
        .map(|&p| Turns {
            input: prompts[p][prompts[p].len() - 1],
            key: None,
            sampled: Vec::new(),
            spans: std::iter::once(0..0).collect(),
        })
        .collect();
    let mut engine = Engine {
        decoder,
        cache,
        options,
        inv_temperature: 1.0 / options.scoring_temperature(),
    };
    let mut finished: Vec<TurnsCompletion> = Vec::with_capacity(rows.len());
    let mut decoded_tokens = 0usize;
    let mut first_token: Option<Instant> = None;
    let mut steps = 0usize;
    while !rows.is_empty() {
        let inputs: Vec<u32> = turns.iter().map(|t| t.input).collect();
        let (tokens, sampler_lp, trl_lp) = decode_step(&mut engine, &inputs, &mut rows, rng)?;
        decoded_tokens += rows.len();
        first_token.get_or_insert_with(Instant::now);

        let mut keep = Vec::with_capacity(rows.len());
        let mut stopped = Vec::new();
        for (i, (row, t)) in rows.iter_mut().zip(&mut turns).enumerate() {
            let c = &mut row.completion;
            c.tokens.push(tokens[i]);
            c.sampler_logprobs.push(sampler_lp[i]);
            c.logprobs.push(trl_lp[i]);
            t.sampled.push(true);
            if let Some(span) = t.spans.last_mut() {
                span.end = c.tokens.len();
            }
            t.input = tokens[i];
            if let StopState::Matched(len) = row.stops.advance(tokens[i]) {
                c.finish_reason = FinishReason::Stop;
                c.stop_tokens = len;
                stopped.push(i);
            } else if c.tokens.len() >= options.max_tokens {
                c.finish_reason = FinishReason::Length;
                c.stop_tokens = 0;
            } else {
                keep.push(i);
            }
        }
        steps += 1;
        if steps.is_multiple_of(512) {
            memory::clear_cache();
        }
        if keep.len() == rows.len() {
            continue;
        }
        // The caches (and key states) of the rows that stopped, taken
        // before they leave.
        let mut stopped_caches = Vec::with_capacity(stopped.len());
        for &i in &stopped {
            stopped_caches.push(extract_row(&mut engine.cache, i)?);
            turns[i].key = rng.row(i)?;
        }
        let mut kept = (
            Vec::with_capacity(keep.len()),
            Vec::with_capacity(keep.len()),
        );
        let mut leaving = Vec::with_capacity(rows.len() - keep.len());
        for (i, (row, t)) in rows.drain(..).zip(turns.drain(..)).enumerate() {
            if keep.binary_search(&i).is_ok() {
                kept.0.push(row);
                kept.1.push(t);
            } else {
                leaving.push((row, t));
            }
        }
        (rows, turns) = kept;
        if !rows.is_empty() {
            filter_cache(&mut engine.cache, &keep)?;
        }
        rng.keep_rows(&keep)?;
        let ends: Vec<TurnEnd<'_>> = leaving
            .iter()
            .filter(|(row, _)| row.completion.finish_reason == FinishReason::Stop)
            .map(|(row, t)| {
                let c = &row.completion;
                let span = t.spans.last().cloned().unwrap_or(0..0);
                TurnEnd {
                    row: position(c.prompt_index, c.generation_index),
                    prompt_index: c.prompt_index,
                    generation_index: c.generation_index,
                    turn: t.spans.len() - 1,
                    tokens: &c.tokens[span],
                    completion_len: c.tokens.len(),
                    room: options.max_tokens.saturating_sub(c.tokens.len()),
                }
            })
            .collect();
        let answers = if ends.is_empty() {
            Vec::new()
        } else {
            handler.turns_ended(&ends)?
        };
        if answers.len() != ends.len() {
            return Err(Error::InvalidGeneration {
                message: format!(
                    "the handler answered {} of the {} rows that ended a turn",
                    answers.len(),
                    ends.len()
                ),
            }
            .into());
        }
        drop(ends);
        let mut stopped_caches = stopped_caches.into_iter();
        let mut answers = answers.into_iter();
        for (mut row, mut t) in leaving {
            if row.completion.finish_reason != FinishReason::Stop {
                finished.push(finish(row, t));
                continue;
            }
            let (Some(row_cache), Some(suffix)) = (stopped_caches.next(), answers.next()) else {
                return Err(Error::InvalidGeneration {
                    message: "a stopped row without its cache or its answer".into(),
                }
                .into());
            };
            let room = options.max_tokens.saturating_sub(row.completion.len());
            let Some(suffix) = suffix.filter(|s| !s.is_empty()) else {
                finished.push(finish(row, t));
                continue;
            };
            if suffix.len() > room {
                return Err(Error::InvalidGeneration {
                    message: format!(
                        "the handler continued a row with {} tokens, {room} fit max_tokens",
                        suffix.len()
                    ),
                }
                .into());
            }
            check_ids(&suffix, model.vocab_size(), "inserted tokens")?;
            let c = &mut row.completion;
            c.tokens.extend_from_slice(&suffix);
            c.logprobs.extend(std::iter::repeat_n(0.0, suffix.len()));
            c.sampler_logprobs
                .extend(std::iter::repeat_n(0.0, suffix.len()));
            c.stop_tokens = 0;
            t.sampled.extend(std::iter::repeat_n(false, suffix.len()));
            if suffix.len() == room {
                c.finish_reason = FinishReason::Length;
                finished.push(finish(row, t));
                continue;
            }
            // The turn's last sampled token and all but the last inserted
            // token go into the row's cache; the next step reads the last.
            let mut feed = Vec::with_capacity(suffix.len());
            feed.push(t.input);
            feed.extend_from_slice(&suffix[..suffix.len() - 1]);
            let row_cache = prefill_row(&engine.decoder, row_cache, &feed, options)?;
            if let Some(history) = &mut row.history {
                push_history(history, &feed)?;
            }
            prefilled_tokens += feed.len();
            join(&mut engine.cache, rows.is_empty(), row_cache)?;
            if let Some(key) = t.key.take() {
                rng.push_row(&key)?;
            }
            t.input = suffix[suffix.len() - 1];
            row.stops = stops.matcher();
            let at = row.completion.len();
            t.spans.push(at..at);
            rows.push(row);
            turns.push(t);
        }
    }
    // No queued step outlives the call (see `generate_batch`).
    mlx_tensor::synchronize().map_err(Error::from)?;
    let end = Instant::now();
    let first = first_token.unwrap_or(end);
    finished.sort_by_key(|c| (c.completion.prompt_index, c.completion.generation_index));
    let generation_tokens = finished.iter().map(|c| c.completion.len()).sum();
    Ok(TurnsOutput {
        completions: finished,
        prefilled_tokens,
        decoded_tokens,
        stats: GenerationStats {
            prompt_tokens: prompts.iter().map(Vec::len).sum(),
            prompt_time: first.saturating_duration_since(start),
            generation_tokens,
            generation_time: end.saturating_duration_since(first),
            peak_memory: memory::peak_memory(),
        },
    })
}

/// Runs one decoding step for the live rows' `inputs` and reads back the
/// sampled tokens with their sampler and TRL-style log-probabilities.
fn decode_step<M: LanguageModel>(
    engine: &mut Engine<'_, M>,
    inputs: &[u32],
    rows: &mut [Row],
    rng: &mut RandomState,
) -> Result<(Vec<u32>, Vec<f32>, Vec<f32>)> {
    let input = Array::from_slice(inputs, &[dim(inputs.len(), "rows")?])?;
    let pending = engine.step(&input, rows, rng)?;
    eval(&pending.arrays())?;
    Ok((
        pending.tokens.to_vec::<u32>()?,
        pending.sampler_logprobs.to_vec::<f32>()?,
        pending.logprobs.to_vec::<f32>()?,
    ))
}

/// Adds tokens that went into a row's cache to its processors' history.
fn push_history(history: &mut TokenHistory, tokens: &[u32]) -> Result<()> {
    let n = dim(tokens.len(), "inserted tokens")?;
    history.push(&Array::from_slice(tokens, &[1, n])?)
}

fn finish(row: Row, turns: Turns) -> TurnsCompletion {
    TurnsCompletion {
        completion: row.completion,
        sampled: turns.sampled,
        turns: turns.spans,
    }
}

/// Row `row` of every layer's batch cache as a single-sequence cache.
fn extract_row(cache: &mut [LayerCache], row: usize) -> Result<Vec<KVCache>> {
    cache
        .iter_mut()
        .map(|layer| batch_layer(layer)?.extract(row))
        .collect()
}

/// Appends `feed` to a row's single-sequence caches (in chunks of
/// `prefill_step_size`) and returns them as one-row batch caches.
fn prefill_row<M: LanguageModel>(
    decoder: &Decoder<'_, M>,
    row_cache: Vec<KVCache>,
    feed: &[u32],
    options: &BatchOptions,
) -> Result<Vec<LayerCache>> {
    let mut caches: Vec<LayerCache> = row_cache.into_iter().map(LayerCache::Kv).collect();
    for chunk in feed.chunks(options.prefill_step_size) {
        let tokens = Array::from_slice(chunk, &[1, dim(chunk.len(), "inserted tokens")?])?;
        // The ids were checked against the vocabulary by the caller.
        decoder.prefill(&CheckedTokens::known(tokens), &mut caches)?;
        let state: Vec<&Array> = caches.iter().flat_map(LayerCache::arrays).collect();
        eval(&state)?;
    }
    caches
        .into_iter()
        .map(|layer| match layer {
            LayerCache::Kv(kv) => Ok(LayerCache::Batch(BatchKVCache::merge(&[kv])?)),
            _ => Err(Error::InvalidGeneration {
                message: "a row's cache changed kind while prefilling".into(),
            }),
        })
        .collect()
}

/// Adds a one-row cache to the batch (as its last row), or makes it the
/// batch when no row is left.
fn join(cache: &mut Vec<LayerCache>, empty: bool, row: Vec<LayerCache>) -> Result<()> {
    if empty {
        *cache = row;
        return Ok(());
    }
    for (layer, mut new) in cache.iter_mut().zip(row) {
        let other = batch_layer(&mut new)?;
        batch_layer(layer)?.extend(other)?;
    }
    Ok(())
}
