//! Text generation for one sequence: tokens, text deltas, stop handling.

use mlx_tensor::Array;

use super::options::{FinishReason, GenerateOptions};
use super::stats::GenerationStats;
use super::step::TokenGenerator;
use super::stop::{StopMatcher, StopSequences, StopState};
use crate::error::Result;
use crate::model::LanguageModel;
use crate::sample::RandomState;
use crate::text::detokenizer::StreamingDetokenizer;
use crate::text::tokenizer::Tokenizer;
use crate::token_ids::check_tokenizer_fits;

/// One step of [`stream_generate`]: a generated token and the text it
/// completes.
#[derive(Debug, Clone)]
pub struct GenerationResponse {
    /// Newly completed text (may be empty: a character split over tokens, or
    /// tokens held back because they may start a stop sequence).
    pub text: String,
    /// The generated token id.
    pub token: u32,
    /// Its log-probability (see [`super::GeneratedToken::logprob`]).
    pub logprob: f32,
    /// The full log-probability vector, when asked for.
    pub logprobs: Option<Array>,
    /// Tokens generated so far, this one included.
    pub generation_tokens: usize,
    /// Throughput and memory so far.
    pub stats: GenerationStats,
    /// Set on the last response only.
    pub finish_reason: Option<FinishReason>,
}

/// Generates text after a prompt (mlx-lm's `stream_generate`), one
/// [`GenerationResponse`] per generated token. The tokenizer must fit the
/// model ([`crate::check_tokenizer_fits`]).
///
/// Generation ends at an end-of-sequence id (its text is not emitted), at a
/// stop sequence (the text of its tokens is not emitted: tokens that could
/// start one are held back until they cannot), or after `max_tokens`
/// tokens. The last response carries the [`FinishReason`].
pub struct TextGenerator<'m, M: LanguageModel> {
    tokens: TokenGenerator<'m, M>,
    detokenizer: StreamingDetokenizer,
    eos: Vec<u32>,
    stops: StopMatcher,
    /// Generated tokens whose text is held back because they may start a
    /// stop sequence.
    held: Vec<u32>,
    max_tokens: Option<usize>,
    done: bool,
}

impl<'m, M: LanguageModel> TextGenerator<'m, M> {
    /// Prefills `prompt` and queues the first step.
    pub fn new(
        model: &'m M,
        tokenizer: &Tokenizer,
        prompt: &[u32],
        options: &GenerateOptions,
        rng: RandomState,
    ) -> Result<Self> {
        check_tokenizer_fits(model, tokenizer)?;
        let tokens = TokenGenerator::new(model, prompt, options, rng)?;
        Ok(TextGenerator {
            tokens,
            detokenizer: tokenizer.detokenizer(options.skip_special_tokens),
            eos: options.stop_ids(tokenizer.eos_token_ids()),
            stops: StopSequences::new(&options.stop_sequences).matcher(),
            held: Vec::new(),
            max_tokens: options.max_tokens,
            done: false,
        })
    }

    /// Throughput and memory so far.
    pub fn stats(&self) -> GenerationStats {
        self.tokens.stats()
    }

    /// The token generator underneath (caches, random state).
    pub fn token_generator(&self) -> &TokenGenerator<'m, M> {
        &self.tokens
    }

    fn push_text(&mut self, ids: &[u32]) -> Result<String> {
        let mut out = String::new();
        for &id in ids {
            if let Some(delta) = self.detokenizer.push(id)? {
                out.push_str(&delta);
            }
        }
        Ok(out)
    }

    fn finish(&mut self, mut text: String) -> Result<String> {
        if let Some(rest) = self.detokenizer.finalize()? {
            text.push_str(&rest);
        }
        Ok(text)
    }

    fn advance(&mut self) -> Result<Option<GenerationResponse>> {
        if self.done {
            return Ok(None);
        }
        let Some(generated) = self.tokens.next().transpose()? else {
            self.done = true;
            return Ok(None);
        };
        let n = self.tokens.generated();
        let token = generated.token;
        let mut finish = None;
        let mut text;
        if self.eos.contains(&token) {
            // The end-of-sequence token ends generation; whatever was held
            // back for a possible stop sequence is released.
            let held = std::mem::take(&mut self.held);
            text = self.push_text(&held)?;
            finish = Some(FinishReason::Stop);
        } else {
            match self.stops.advance(token) {
                StopState::Matched(len) => {
                    self.held.push(token);
                    let keep = self.held.len().saturating_sub(len);
                    let released: Vec<u32> = self.held.drain(..keep).collect();
                    self.held.clear();
                    text = self.push_text(&released)?;
                    finish = Some(FinishReason::Stop);
                }
                StopState::Partial(depth) => {
                    self.held.push(token);
                    let release = self.held.len().saturating_sub(depth);
                    let released: Vec<u32> = self.held.drain(..release).collect();
                    text = self.push_text(&released)?;
                }
            }
            if finish.is_none() && self.max_tokens.is_some_and(|m| n >= m) {
                let held = std::mem::take(&mut self.held);
                text.push_str(&self.push_text(&held)?);
                finish = Some(FinishReason::Length);
            }
        }
        if finish.is_some() {
            text = self.finish(text)?;
            self.done = true;
        }
        Ok(Some(GenerationResponse {
            text,
            token,
            logprob: generated.logprob,
            logprobs: generated.logprobs,
            generation_tokens: n,
            stats: self.tokens.stats(),
            finish_reason: finish,
        }))
    }
}

impl<M: LanguageModel> Iterator for TextGenerator<'_, M> {
    type Item = Result<GenerationResponse>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.advance() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Starts generating text after `prompt` (token ids).
pub fn stream_generate<'m, M: LanguageModel>(
    model: &'m M,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    options: &GenerateOptions,
    rng: RandomState,
) -> Result<TextGenerator<'m, M>> {
    TextGenerator::new(model, tokenizer, prompt, options, rng)
}

/// A finished single-sequence generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The generated text (end-of-sequence and stop-sequence text excluded).
    pub text: String,
    /// Every generated token id, the one that ended generation included.
    pub tokens: Vec<u32>,
    /// The log-probability of each token (see [`super::GeneratedToken::logprob`]).
    pub logprobs: Vec<f32>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Throughput and memory.
    pub stats: GenerationStats,
}

/// Generates a whole completion after `prompt` (token ids).
pub fn generate<M: LanguageModel>(
    model: &M,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    options: &GenerateOptions,
    rng: RandomState,
) -> Result<Generation> {
    let mut stream = stream_generate(model, tokenizer, prompt, options, rng)?;
    let mut out = Generation {
        text: String::new(),
        tokens: Vec::new(),
        logprobs: Vec::new(),
        finish_reason: FinishReason::Length,
        stats: GenerationStats::default(),
    };
    for response in stream.by_ref() {
        let r = response?;
        out.text.push_str(&r.text);
        out.tokens.push(r.token);
        out.logprobs.push(r.logprob);
        out.stats = r.stats;
        if let Some(f) = r.finish_reason {
            out.finish_reason = f;
        }
    }
    out.stats = stream.stats();
    Ok(out)
}
