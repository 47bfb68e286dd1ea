//! Generating many completions in one batch over a left-padded cache.

use std::ops::Range;
use std::time::Instant;

use mlx_tensor::{Array, Dtype, async_eval, concatenate, eval, memory};

use super::batch_types::{BatchOptions, BatchOutput, Completion};
use super::decoder::Decoder;
use super::options::FinishReason;
use super::stats::GenerationStats;
use super::stop::{StopMatcher, StopSequences, StopState};
use crate::cache::{BatchKVCache, CACHE_STEP, LayerCache};
use crate::error::{Error, Result};
use crate::model::LanguageModel;
use crate::sample::{RandomState, SamplerConfig, TokenHistory, logprobs, sample_rows};
use crate::sizes::{dim, total_positions};
use crate::token_ids::{CheckedTokens, check_ids};

/// The queued step of every live row.
pub(super) struct Pending {
    pub(super) tokens: Array,
    pub(super) sampler_logprobs: Array,
    pub(super) logprobs: Array,
}

impl Pending {
    pub(super) fn arrays(&self) -> [&Array; 3] {
        [&self.tokens, &self.sampler_logprobs, &self.logprobs]
    }

    fn take_rows(&self, rows: &Array) -> Result<Pending> {
        Ok(Pending {
            tokens: self.tokens.take(rows, Some(0))?,
            sampler_logprobs: self.sampler_logprobs.take(rows, Some(0))?,
            logprobs: self.logprobs.take(rows, Some(0))?,
        })
    }
}

/// A live row: the completion it writes and its per-row state.
pub(super) struct Row {
    pub(super) completion: Completion,
    pub(super) sampler: SamplerConfig,
    pub(super) history: Option<TokenHistory>,
    pub(super) stops: StopMatcher,
}

/// Generates `num_generations` completions for each prompt, all in one
/// batch.
///
/// The prompts are left-padded to a common length and prefilled once each
/// (in chunks of `prefill_step_size` positions, all but their last token);
/// the cache is then repeated `num_generations` times per prompt, so a group
/// shares its prompt's prefill. Decoding runs one step ahead (the next step
/// is queued with `async_eval` before the current tokens are read back), in
/// two halves when [`BatchOptions::in_place_cache_writes`] is on, so that
/// the cache is written in place.
/// A completion ends at an end-of-sequence id, at a stop sequence or after
/// `max_tokens` tokens; finished rows are removed from the batch (and from
/// the cache) at once, so they stop costing compute. The cache grows as
/// rows decode (at least doubling, in whole [`CACHE_STEP`]s, never beyond
/// the longest prompt plus `max_tokens`), so a generous `max_tokens` costs
/// nothing until it is used.
///
/// Every prompt id and `pad_token_id` must be below the model's vocabulary
/// size ([`Error::TokenOutOfRange`] otherwise), and the longest prompt
/// plus `max_tokens` must fit a 32-bit position ([`Error::TooLarge`]).
///
/// Random draws take keys from `rng`: one categorical draw for the whole
/// batch per step when every row shares the sampler settings (plus one
/// uniform draw when XTC is on), otherwise one per row, in row order.
/// With [`RandomState::PerRow`] (one key per row, prompt-major: row `p·G +
/// g` is completion `g` of prompt `p`), each row draws with its own key
/// sequence, one split per draw, so a completion does not depend on which
/// other rows share the batch (nor on when they finish).
/// Greedy completions equal single-sequence greedy generation.
pub fn generate_batch<M: LanguageModel>(
    model: &M,
    prompts: &[Vec<u32>],
    options: &BatchOptions,
    rng: &mut RandomState,
) -> Result<BatchOutput> {
    let all = vec![0..options.num_generations; prompts.len()];
    generate_batch_groups(model, prompts, &all, options, rng)
}

/// [`generate_batch`] for some completions of each prompt only:
/// `groups[p]` are the generation indices of prompt `p` to sample
/// (non-empty, inside `0..num_generations`). The rows are those
/// completions in prompt-major order (the keys of a
/// [`RandomState::PerRow`] follow that order), sharing each prompt's
/// prefill; each completion keeps its `generation_index`. With per-row
/// keys, completion `g` of prompt `p` is the same whether it is sampled
/// here or by [`generate_batch`] with the same key for its row: a
/// data-parallel rank can sample just its rows of a group.
pub fn generate_batch_groups<M: LanguageModel>(
    model: &M,
    prompts: &[Vec<u32>],
    groups: &[Range<usize>],
    options: &BatchOptions,
    rng: &mut RandomState,
) -> Result<BatchOutput> {
    let start = Instant::now();
    let final_positions = validate(model, prompts, options)?;
    let plan = row_plan(prompts, groups, options, rng)?;
    let expanded = plan.len() != prompts.len();
    let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let padding = prompts
        .iter()
        .map(|p| dim(max_len - p.len(), "prompt"))
        .collect::<Result<Vec<i32>>>()?;
    let mut cache = model.new_batch_cache(&padding)?;
    // The buffers grow in steps as rows decode (never to the final length
    // up front: `max_tokens` may be far more than a completion uses). The
    // first decoding buffer is made by the prefill when no group expansion
    // follows, otherwise by the expansion (the prefill then holds the
    // prompts' positions only).
    let first_capacity = grown_capacity(dim(max_len, "prompt")? + 1, 0, final_positions);
    let prefill_capacity = if expanded {
        dim(max_len - 1, "prompt")?
    } else {
        first_capacity
    };
    for layer in &mut cache {
        if let LayerCache::Batch(c) = layer {
            c.reserve(prefill_capacity);
        }
    }
    let decoder = Decoder::new(model)?;
    prefill(&decoder, prompts, options, max_len, &mut cache)?;
    let expand: Vec<usize> = plan.iter().map(|&(p, _)| p).collect();
    if expanded {
        expand_cache(&mut cache, &expand, first_capacity)?;
    }

    let mut rows = new_rows(prompts, &plan, options)?;

    let _limit = options
        .memory_headroom_mb
        .map(|mb| decode_memory_limit(&cache, final_positions as usize, mb));
    let mut engine = Engine {
        decoder,
        cache,
        options,
        inv_temperature: 1.0 / options.scoring_temperature(),
    };
    let last: Vec<u32> = expand
        .iter()
        .map(|&p| prompts[p][prompts[p].len() - 1])
        .collect();
    let mut queue = StepQueue::new(options.in_place_cache_writes, engine.cache.len());
    let mut pending = engine.step(
        &Array::from_slice(&last, &[dim(last.len(), "rows")?])?,
        &mut rows,
        rng,
    )?;
    queue.first_half(&engine.cache)?;
    async_eval(&pending.arrays())?;

    let mut finished = Vec::with_capacity(rows.len());
    let mut first_tokens: Option<Instant> = None;
    let mut steps = 0usize;
    while !rows.is_empty() {
        let current = pending;
        let all_at_limit = rows
            .iter()
            .all(|r| r.completion.tokens.len() + 1 >= options.max_tokens);
        let next = if all_at_limit {
            None
        } else {
            grow_cache(&mut engine.cache, final_positions)?;
            let next = engine.step(&current.tokens, &mut rows, rng)?;
            queue.first_half(&engine.cache)?;
            if !queue.split {
                async_eval(&next.arrays())?;
            }
            Some(next)
        };
        eval(&current.arrays())?;
        if let Some(next) = next.as_ref().filter(|_| queue.split) {
            async_eval(&next.arrays())?;
        }
        let tokens = current.tokens.to_vec::<u32>()?;
        let sampler_lp = current.sampler_logprobs.to_vec::<f32>()?;
        let trl_lp = current.logprobs.to_vec::<f32>()?;
        first_tokens.get_or_insert_with(Instant::now);

        let mut keep = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter_mut().enumerate() {
            let c = &mut row.completion;
            c.tokens.push(tokens[i]);
            c.sampler_logprobs.push(sampler_lp[i]);
            c.logprobs.push(trl_lp[i]);
            let mut done = c.tokens.len() >= options.max_tokens;
            if let StopState::Matched(len) = row.stops.advance(tokens[i]) {
                c.finish_reason = FinishReason::Stop;
                c.stop_tokens = len;
                done = true;
            }
            if !done {
                keep.push(i);
            }
        }
        if keep.len() < rows.len() {
            let mut kept = Vec::with_capacity(keep.len());
            for (i, row) in rows.into_iter().enumerate() {
                if keep.binary_search(&i).is_ok() {
                    kept.push(row);
                } else {
                    finished.push(row.completion);
                }
            }
            rows = kept;
            if !rows.is_empty() {
                filter_cache(&mut engine.cache, &keep)?;
                rng.keep_rows(&keep)?;
            }
        }
        if rows.is_empty() {
            break;
        }
        let Some(next) = next else {
            return Err(Error::InvalidGeneration {
                message: "rows left after the last step".into(),
            });
        };
        pending = if keep.len() < tokens.len() {
            let index = keep
                .iter()
                .map(|&i| dim(i, "rows"))
                .collect::<Result<Vec<i32>>>()?;
            next.take_rows(&Array::from_slice(&index, &[dim(index.len(), "rows")?])?)?
        } else {
            next
        };
        steps += 1;
        if steps.is_multiple_of(512) {
            memory::clear_cache();
        }
    }
    // A step queued for rows that then stopped may still be running: no
    // queued work outlives the call (at process exit it would race MLX's
    // static destructors).
    mlx_tensor::synchronize()?;
    let end = Instant::now();
    let first = first_tokens.unwrap_or(end);
    finished.sort_by_key(|c| (c.prompt_index, c.generation_index));
    let generation_tokens = finished.iter().map(Completion::len).sum();
    Ok(BatchOutput {
        completions: finished,
        stats: GenerationStats {
            prompt_tokens: prompts.iter().map(Vec::len).sum(),
            prompt_time: first.saturating_duration_since(start),
            generation_tokens,
            generation_time: end.saturating_duration_since(first),
            peak_memory: memory::peak_memory(),
        },
    })
}

/// Checks the request and returns the most positions a row can reach
/// (longest prompt plus `max_tokens`).
pub(super) fn validate<M: LanguageModel>(
    model: &M,
    prompts: &[Vec<u32>],
    options: &BatchOptions,
) -> Result<i32> {
    let bad = |message: String| Err(Error::InvalidGeneration { message });
    if prompts.is_empty() {
        return bad("no prompts".into());
    }
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return bad(format!("prompt {i} is empty"));
    }
    if options.num_generations == 0 {
        return bad("num_generations must be positive".into());
    }
    if options.max_tokens == 0 {
        return bad("max_tokens must be positive".into());
    }
    if options.prefill_step_size == 0 {
        return bad("prefill_step_size must be positive".into());
    }
    let t = options.scoring_temperature();
    if !(t.is_finite() && t > 0.0) {
        return bad(format!("logprob_temperature must be positive, got {t}"));
    }
    let vocab = model.vocab_size();
    if let Some(s) = &options.prompt_samplers {
        if s.len() != prompts.len() {
            return bad(format!(
                "{} prompt samplers for {} prompts",
                s.len(),
                prompts.len()
            ));
        }
        for cfg in s {
            cfg.validate(vocab)?;
        }
    }
    options.sampler.validate(vocab)?;
    options.processors.validate(vocab)?;
    for (i, p) in prompts.iter().enumerate() {
        check_ids(p, vocab, &format!("prompt {i}"))?;
    }
    check_ids(&[options.pad_token_id], vocab, "pad_token_id")?;
    let rows = prompts
        .len()
        .checked_mul(options.num_generations)
        .ok_or_else(|| Error::TooLarge {
            setting: "num_generations".into(),
            value: options.num_generations.to_string(),
            message: format!("times {} prompts overflows", prompts.len()),
        })?;
    dim(rows, "num_generations")?;
    let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    // The prefill's padded prompts are one host buffer.
    prompts
        .len()
        .checked_mul(max_len)
        .and_then(|n| n.checked_mul(std::mem::size_of::<u32>()))
        .filter(|&bytes| isize::try_from(bytes).is_ok())
        .ok_or_else(|| Error::TooLarge {
            setting: "prompts".into(),
            value: format!("{} prompts of up to {max_len} tokens", prompts.len()),
            message: "the padded batch's byte size overflows".into(),
        })?;
    total_positions(&[max_len, options.max_tokens], "max_tokens")
}

/// Runs every prompt but its last token through the model, left-padded.
pub(super) fn prefill<M: LanguageModel>(
    decoder: &Decoder<'_, M>,
    prompts: &[Vec<u32>],
    options: &BatchOptions,
    max_len: usize,
    cache: &mut [LayerCache],
) -> Result<()> {
    let width = max_len - 1;
    if width == 0 {
        return Ok(());
    }
    let mut padded = Vec::with_capacity(prompts.len().saturating_mul(width));
    for p in prompts {
        padded.extend(std::iter::repeat_n(options.pad_token_id, max_len - p.len()));
        padded.extend_from_slice(&p[..p.len() - 1]);
    }
    let all = Array::from_slice(
        &padded,
        &[dim(prompts.len(), "prompts")?, dim(width, "prompt")?],
    )?;
    let mut at = 0;
    while at < width {
        let n = options.prefill_step_size.min(width - at);
        let chunk = all.slice_axis(1, dim(at, "prompt")?, Some(dim(at + n, "prompt")?), 1)?;
        // The prompts' ids and the padding id were checked by `validate`.
        decoder.prefill(&CheckedTokens::known(chunk), cache)?;
        let state: Vec<&Array> = cache.iter().flat_map(LayerCache::arrays).collect();
        eval(&state)?;
        memory::clear_cache();
        at += n;
    }
    Ok(())
}

/// The memory limit for decoding until `final_positions` positions: the
/// memory in use now, plus the cache's growth from its current buffers to
/// `final_positions` (rounded up to the cache's growth step), plus
/// `headroom_mb`.
fn decode_memory_limit(
    cache: &[LayerCache],
    final_positions: usize,
    headroom_mb: usize,
) -> memory::MemoryLimitGuard {
    let mut now = 0usize;
    let mut capacity = 0usize;
    for layer in cache {
        now += layer.nbytes();
        if let Some(keys) = layer.arrays().first() {
            capacity = capacity.max(keys.dim(2).unwrap_or(0).max(0) as usize);
        }
    }
    let step = CACHE_STEP as usize;
    let final_capacity = if capacity >= final_positions {
        capacity
    } else {
        final_positions.div_ceil(step).saturating_mul(step)
    };
    let grown = now.checked_div(capacity).map_or(0, |per_position| {
        per_position.saturating_mul(final_capacity.max(capacity))
    });
    let active = memory::active_memory();
    let limit = (active - now.min(active))
        .saturating_add(grown)
        .saturating_add(headroom_mb.saturating_mul(1 << 20));
    memory::MemoryLimitGuard::new(limit)
}

/// Repeats every layer's cache rows as `rows` says (in that order, repeats
/// allowed) into buffers of `capacity` positions, one layer at a time: each
/// layer's new buffers are evaluated before the next layer's are queued,
/// so the prompt-sized buffers and the copies' temporaries are freed layer
/// by layer instead of all staying alive until the first decoding step
/// has run.
pub(super) fn expand_cache(cache: &mut [LayerCache], rows: &[usize], capacity: i32) -> Result<()> {
    for layer in cache.iter_mut() {
        let c = batch_layer(layer)?;
        c.filter(rows)?;
        c.grow_to(capacity)?;
        eval(&layer.arrays())?;
    }
    Ok(())
}

/// The buffer length to grow to so that `needed` positions fit, given the
/// current `capacity`: at least double it (so that growing costs amortised
/// constant time per token), in whole [`CACHE_STEP`]s, but never beyond the
/// `limit` that the longest row can reach.
fn grown_capacity(needed: i32, capacity: i32, limit: i32) -> i32 {
    let doubled = needed.max(capacity.saturating_mul(2));
    let stepped = doubled
        .checked_add(CACHE_STEP - 1)
        .map_or(i32::MAX, |n| n / CACHE_STEP * CACHE_STEP);
    stepped.min(limit).max(needed)
}

/// Before a decoding step: when the next position does not fit the
/// buffers, grows every layer's buffers ([`grown_capacity`]) one layer at a
/// time, each evaluated before the next is queued, so that only one
/// layer's old and new buffers are alive together.
fn grow_cache(cache: &mut [LayerCache], limit: i32) -> Result<()> {
    for layer in cache.iter_mut() {
        let c = batch_layer(layer)?;
        let Some(keys) = &c.keys else {
            continue;
        };
        let capacity = keys.axis_size(2)?;
        let needed = c.offset().saturating_add(1);
        if needed <= capacity {
            continue;
        }
        c.grow_to(grown_capacity(needed, capacity, limit))?;
        eval(&layer.arrays())?;
    }
    Ok(())
}

/// Keeps `rows` (in that order) of every layer's cache.
pub(super) fn filter_cache(cache: &mut [LayerCache], rows: &[usize]) -> Result<()> {
    for layer in cache.iter_mut() {
        batch_layer(layer)?.filter(rows)?;
    }
    Ok(())
}

pub(super) fn batch_layer(layer: &mut LayerCache) -> Result<&mut BatchKVCache> {
    match layer {
        LayerCache::Batch(c) => Ok(c),
        _ => Err(Error::InvalidGeneration {
            message: "batch generation needs the model's batch caches".into(),
        }),
    }
}

/// How decoding steps are queued ([`BatchOptions::in_place_cache_writes`]).
struct StepQueue {
    /// Whether steps are queued in two halves.
    split: bool,
    /// Layers in the first half.
    half: usize,
    /// An array of the last queued first half: waiting for it waits for
    /// that half to have run. Held only until the next first half is
    /// queued, so it never keeps a cache buffer from being reused.
    marker: Option<Array>,
}

impl StepQueue {
    fn new(in_place_cache_writes: bool, layers: usize) -> Self {
        StepQueue {
            split: in_place_cache_writes && layers >= 2,
            half: layers / 2,
            marker: None,
        }
    }

    /// With split queueing, waits for the previous step's first half to
    /// have run, then queues the first half of the step just built (its
    /// cache writes of the first `half` layers and what they depend on);
    /// the caller queues the rest. Does nothing otherwise.
    fn first_half(&mut self, cache: &[LayerCache]) -> Result<()> {
        if !self.split {
            return Ok(());
        }
        if let Some(marker) = self.marker.take() {
            eval(&[&marker])?;
        }
        let first: Vec<&Array> = cache[..self.half]
            .iter()
            .flat_map(LayerCache::arrays)
            .collect();
        async_eval(&first)?;
        self.marker = first.last().map(|a| (*a).clone());
        Ok(())
    }
}

/// The decoder, its cache and what every step needs.
pub(super) struct Engine<'a, M: LanguageModel> {
    pub(super) decoder: Decoder<'a, M>,
    pub(super) cache: Vec<LayerCache>,
    pub(super) options: &'a BatchOptions,
    pub(super) inv_temperature: f64,
}

impl<M: LanguageModel> Engine<'_, M> {
    /// Builds one decoding step for the live rows' last tokens (`[R]`:
    /// checked prompt tokens, then tokens sampled from the model's logits).
    pub(super) fn step(
        &mut self,
        input: &Array,
        rows: &mut [Row],
        rng: &mut RandomState,
    ) -> Result<Pending> {
        let r = dim(rows.len(), "rows")?;
        let logits = self.decoder.step(
            &CheckedTokens::known(input.reshape(&[r, 1])?),
            &mut self.cache,
        )?;
        let vocab = logits.axis_size(-1)?;
        let logits = logits.reshape(&[r, vocab])?;
        let processed = if self.options.processors.is_active() {
            let mut out = Vec::with_capacity(rows.len());
            for (i, row) in rows.iter_mut().enumerate() {
                let i = i as i32;
                let mut x = logits.slice_axis(0, i, Some(i + 1), 1)?;
                if let Some(history) = &mut row.history {
                    history.push(&input.slice_axis(0, i, Some(i + 1), 1)?)?;
                    x = self.options.processors.apply(&history.tokens()?, &x)?;
                }
                out.push(x);
            }
            let refs: Vec<&Array> = out.iter().collect();
            concatenate(&refs, 0)?
        } else {
            logits.clone()
        };
        let lp = logprobs(&processed)?;
        let configs: Vec<&SamplerConfig> = rows.iter().map(|row| &row.sampler).collect();
        let tokens = sample_rows(&configs, &lp, rng)?;
        let index = tokens.reshape(&[r, 1])?;
        let sampler_logprobs = lp
            .take_along_axis(&index, -1)?
            .as_type(Dtype::F32)?
            .reshape(&[r])?;
        let scaled = logits
            .as_type(Dtype::F32)?
            .mul_scalar(self.inv_temperature)?;
        let logprobs = scaled
            .log_softmax(-1, true)?
            .take_along_axis(&index, -1)?
            .reshape(&[r])?;
        Ok(Pending {
            tokens,
            sampler_logprobs,
            logprobs,
        })
    }
}

/// The rows of a batch, `(prompt, generation)` in prompt-major order, from
/// the generation indices `groups[p]` of each prompt: every range
/// non-empty and inside `0..num_generations`, one range per prompt, and as
/// many rows as a [`RandomState::PerRow`] `rng` has keys.
pub(super) fn row_plan(
    prompts: &[Vec<u32>],
    groups: &[Range<usize>],
    options: &BatchOptions,
    rng: &RandomState,
) -> Result<Vec<(usize, usize)>> {
    let bad = |message: String| Err(Error::InvalidGeneration { message });
    if groups.len() != prompts.len() {
        return bad(format!(
            "{} generation ranges for {} prompts",
            groups.len(),
            prompts.len()
        ));
    }
    let g = options.num_generations;
    let mut plan = Vec::new();
    for (p, range) in groups.iter().enumerate() {
        if range.is_empty() || range.end > g {
            return bad(format!(
                "prompt {p}: generations {range:?} are empty or outside 0..{g}"
            ));
        }
        plan.extend(range.clone().map(|i| (p, i)));
    }
    if let Some(n) = rng.rows()?.filter(|&n| n != plan.len()) {
        return bad(format!("{n} per-row keys for {} rows", plan.len()));
    }
    Ok(plan)
}

/// The decoding state of each batch row: row `r` samples completion
/// `plan[r].1` of prompt `plan[r].0` (its own sampler, repetition history
/// and stop matcher).
pub(super) fn new_rows(
    prompts: &[Vec<u32>],
    plan: &[(usize, usize)],
    options: &BatchOptions,
) -> Result<Vec<Row>> {
    let stops = stop_sequences(options);
    let mut rows = Vec::with_capacity(plan.len());
    for &(p, generation_index) in plan {
        let prompt = &prompts[p];
        let history = if options.processors.is_active() {
            Some(TokenHistory::from_tokens(
                &prompt[..prompt.len() - 1],
                options.processors.context_window(),
            )?)
        } else {
            None
        };
        let sampler = match &options.prompt_samplers {
            Some(s) => s[p].clone(),
            None => options.sampler.clone(),
        };
        rows.push(Row {
            completion: Completion {
                prompt_index: p,
                generation_index,
                tokens: Vec::new(),
                sampler_logprobs: Vec::new(),
                logprobs: Vec::new(),
                finish_reason: FinishReason::Length,
                stop_tokens: 0,
            },
            sampler,
            history,
            stops: stops.matcher(),
        });
    }
    Ok(rows)
}

/// What ends a completion: each end-of-sequence id and each stop sequence.
pub(super) fn stop_sequences(options: &BatchOptions) -> StopSequences {
    StopSequences::new(
        &options
            .eos_token_ids
            .iter()
            .map(|&t| vec![t])
            .chain(options.stop_sequences.iter().cloned())
            .collect::<Vec<_>>(),
    )
}
