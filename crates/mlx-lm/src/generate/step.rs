//! Token-by-token generation for one sequence, one step ahead.

use std::time::Instant;

use mlx_tensor::{Array, Dtype, async_eval, eval, memory};

use super::decoder::Decoder;
use super::options::GenerateOptions;
use super::stats::GenerationStats;
use crate::cache::LayerCache;
use crate::error::{Error, Result};
use crate::model::LanguageModel;
use crate::sample::{LogitsProcessorConfig, RandomState, SamplerConfig, TokenHistory, logprobs};
use crate::sizes::{dim, total_positions};
use crate::token_ids::{CheckedTokens, check_ids};

/// One generated token.
#[derive(Debug, Clone)]
pub struct GeneratedToken {
    /// The token id.
    pub token: u32,
    /// Its log-probability under the distribution it was sampled from
    /// (after the logits processors, before the sampler's filters and
    /// temperature), as mlx-lm reports it.
    pub logprob: f32,
    /// That whole log-probability vector (`[V]`), when asked for.
    pub logprobs: Option<Array>,
}

/// A step that has been queued but not handed out yet.
struct Pending {
    token: Array,
    logprobs: Array,
    token_logprob: Array,
}

/// Generates the tokens that follow a prompt, one per [`Iterator::next`].
///
/// The prompt is processed in chunks of `prefill_step_size` tokens when the
/// generator is made; the last prompt token goes through the first sampling
/// step. Each call to `next` queues the following step with `async_eval`
/// before reading back the current token, so the device computes step
/// `n + 1` while the caller handles token `n`; handing out `N` tokens thus
/// runs `N + 1` sampling steps (as mlx-lm's `generate_step` does, which
/// keeps the random draws aligned with it).
///
/// The iterator ends after `max_tokens` tokens; it does not look at
/// end-of-sequence ids (see [`super::stream_generate`] for that).
pub struct TokenGenerator<'m, M: LanguageModel> {
    decoder: Decoder<'m, M>,
    cache: Vec<LayerCache>,
    sampler: SamplerConfig,
    processors: Option<(LogitsProcessorConfig, TokenHistory)>,
    rng: RandomState,
    max_tokens: Option<usize>,
    return_logprobs: bool,
    pending: Option<Pending>,
    generated: usize,
    prompt_tokens: usize,
    start: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    failed: bool,
}

/// A step queued ahead and never handed out (the iterator was dropped or
/// reached `max_tokens`) is waited for, so no queued work outlives the
/// generator: at process exit it would race MLX's static destructors (its
/// allocator freeing buffers a stream thread still uses).
impl<M: LanguageModel> Drop for TokenGenerator<'_, M> {
    fn drop(&mut self) {
        if self.pending.take().is_some() {
            // An error here has nowhere to go; the wait is what matters.
            let _ = mlx_tensor::synchronize();
        }
    }
}

impl<'m, M: LanguageModel> TokenGenerator<'m, M> {
    /// Prefills `prompt` into a fresh cache and queues the first step.
    pub fn new(
        model: &'m M,
        prompt: &[u32],
        options: &GenerateOptions,
        rng: RandomState,
    ) -> Result<Self> {
        Self::with_cache(model, prompt, model.new_cache(), options, rng)
    }

    /// Like [`Self::new`], continuing `cache` (which already holds earlier
    /// tokens of the sequence; `prompt` is what follows them).
    pub fn with_cache(
        model: &'m M,
        prompt: &[u32],
        cache: Vec<LayerCache>,
        options: &GenerateOptions,
        rng: RandomState,
    ) -> Result<Self> {
        if prompt.is_empty() {
            return Err(Error::InvalidGeneration {
                message: "the prompt is empty".into(),
            });
        }
        if options.prefill_step_size == 0 {
            return Err(Error::InvalidGeneration {
                message: "prefill_step_size must be positive".into(),
            });
        }
        if options.max_tokens == Some(0) {
            return Err(Error::InvalidGeneration {
                message: "max_tokens must be positive (None for no limit)".into(),
            });
        }
        let vocab = model.vocab_size();
        options.sampler.validate(vocab)?;
        options.processors.validate(vocab)?;
        check_ids(prompt, vocab, "prompt")?;
        if cache.len() != model.num_layers() {
            return Err(Error::InvalidCache {
                message: format!(
                    "{} layer caches given for a model of {} layers",
                    cache.len(),
                    model.num_layers()
                ),
            });
        }
        for (i, layer) in cache.iter().enumerate() {
            layer.check_consistent(i)?;
        }
        // Every position must fit the caches' 32-bit counters: what the
        // cache holds, the prompt, and the most tokens asked for.
        let cached = cache.first().map_or(0, |c| c.offset().max(0) as usize);
        total_positions(&[cached, prompt.len()], "prompt")?;
        if let Some(max) = options.max_tokens {
            total_positions(&[cached, prompt.len(), max], "max_tokens")?;
        }
        let processors = options.processors.is_active().then(|| {
            (
                options.processors.clone(),
                TokenHistory::new(options.processors.context_window()),
            )
        });
        let mut generator = TokenGenerator {
            decoder: Decoder::new(model)?,
            cache,
            sampler: options.sampler.clone(),
            processors,
            rng,
            max_tokens: options.max_tokens,
            return_logprobs: options.return_logprobs,
            pending: None,
            generated: 0,
            prompt_tokens: prompt.len(),
            start: Instant::now(),
            first_token: None,
            last_token: None,
            failed: false,
        };
        let last = generator.prefill(prompt, options.prefill_step_size)?;
        let first = generator.step(&Array::from_slice(last, &[dim(last.len(), "prompt")?])?)?;
        generator.queue(&first)?;
        generator.pending = Some(first);
        Ok(generator)
    }

    /// Runs all but the last prompt token through the model in chunks and
    /// returns the rest.
    fn prefill<'p>(&mut self, prompt: &'p [u32], step: usize) -> Result<&'p [u32]> {
        let mut rest = prompt;
        while rest.len() > 1 {
            let n = step.min(rest.len() - 1);
            let chunk = Array::from_slice(&rest[..n], &[1, dim(n, "prefill_step_size")?])?;
            // The prompt's ids were checked when the generator was made.
            self.decoder
                .prefill(&CheckedTokens::known(chunk.clone()), &mut self.cache)?;
            let state: Vec<&Array> = self.cache.iter().flat_map(LayerCache::arrays).collect();
            eval(&state)?;
            if let Some((_, history)) = &mut self.processors {
                history.push(&chunk)?;
            }
            rest = &rest[n..];
            memory::clear_cache();
        }
        Ok(rest)
    }

    /// Builds one sampling step for `input` (`[n]` token ids: the last
    /// prompt token, checked, or a token sampled from the model's logits).
    fn step(&mut self, input: &Array) -> Result<Pending> {
        let n = dim(input.size(), "prompt")?;
        let logits = self.decoder.step(
            &CheckedTokens::known(input.reshape(&[1, n])?),
            &mut self.cache,
        )?;
        let vocab = logits.axis_size(-1)?;
        let mut logits = logits
            .slice_axis(1, n - 1, Some(n), 1)?
            .reshape(&[1, vocab])?;
        if let Some((config, history)) = &mut self.processors {
            history.push(input)?;
            logits = config.apply(&history.tokens()?, &logits)?;
        }
        let logprobs = logprobs(&logits)?;
        let token = self.sampler.sample(&logprobs, &mut self.rng)?;
        let token_logprob = logprobs
            .take_along_axis(&token.reshape(&[1, 1])?, -1)?
            .as_type(Dtype::F32)?;
        Ok(Pending {
            token,
            logprobs,
            token_logprob,
        })
    }

    fn queue(&self, p: &Pending) -> Result<()> {
        let mut arrays = vec![&p.token, &p.logprobs, &p.token_logprob];
        arrays.extend(self.rng.pending());
        Ok(async_eval(&arrays)?)
    }

    fn advance(&mut self) -> Result<Option<GeneratedToken>> {
        if self.max_tokens.is_some_and(|m| self.generated >= m) {
            return Ok(None);
        }
        let Some(current) = self.pending.take() else {
            return Ok(None);
        };
        let next = self.step(&current.token)?;
        self.queue(&next)?;
        self.pending = Some(next);

        let token = current.token.item::<u32>()?;
        let logprob = current.token_logprob.item::<f32>()?;
        let now = Instant::now();
        if self.first_token.is_none() {
            self.first_token = Some(now);
        }
        self.last_token = Some(now);
        self.generated += 1;
        if self.generated.is_multiple_of(256) {
            memory::clear_cache();
        }
        let logprobs = if self.return_logprobs {
            Some(current.logprobs.reshape(&[-1])?)
        } else {
            None
        };
        Ok(Some(GeneratedToken {
            token,
            logprob,
            logprobs,
        }))
    }

    /// Tokens handed out so far.
    pub fn generated(&self) -> usize {
        self.generated
    }

    /// Prompt and generation throughput so far.
    ///
    /// The prompt time runs from the generator's creation to the first
    /// token; the generation rate counts every token handed out over the
    /// time since the first one was ready (so with one token it is 0).
    pub fn stats(&self) -> GenerationStats {
        let first = self.first_token.unwrap_or_else(Instant::now);
        let last = self.last_token.unwrap_or(first);
        GenerationStats {
            prompt_tokens: self.prompt_tokens,
            prompt_time: first.saturating_duration_since(self.start),
            generation_tokens: self.generated,
            generation_time: last.saturating_duration_since(first),
            peak_memory: memory::peak_memory(),
        }
    }

    /// The caches, holding the prompt and every token handed out (and the
    /// one queued after it).
    pub fn cache(&self) -> &[LayerCache] {
        &self.cache
    }

    /// The random state, advanced past every draw made so far (including
    /// the queued step's).
    pub fn random_state(&self) -> &RandomState {
        &self.rng
    }

    /// Ends generation and returns the caches and the random state.
    pub fn into_parts(mut self) -> (Vec<LayerCache>, RandomState) {
        (
            std::mem::take(&mut self.cache),
            std::mem::replace(&mut self.rng, RandomState::Global),
        )
    }
}

impl<M: LanguageModel> Iterator for TokenGenerator<'_, M> {
    type Item = Result<GeneratedToken>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.advance() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Starts generating after `prompt` (mlx-lm's `generate_step`): an iterator
/// of [`GeneratedToken`]s, at most `options.max_tokens` of them.
/// End-of-sequence ids and stop sequences are not looked at here.
pub fn generate_step<'m, M: LanguageModel>(
    model: &'m M,
    prompt: &[u32],
    options: &GenerateOptions,
    rng: RandomState,
) -> Result<TokenGenerator<'m, M>> {
    TokenGenerator::new(model, prompt, options, rng)
}
