//! Per-token log-probabilities (and entropies) of completions under a model.
//!
//! For each completion token `t` at position `i`, the score is
//! `log_softmax(logits_{i-1} / temperature)[t]`, the quantity GRPO's loss
//! differentiates: everything here is built from array operations, so
//! gradients flow through it. The log-softmax is never materialised over the
//! whole vocabulary for all positions at once: logits are computed for a
//! chunk of positions at a time in `f32`, reduced with `logsumexp`, and the
//! completion token's logit is picked with `take_along_axis`.

use mlx_tensor::{Array, Dtype, concatenate};

use crate::sizes::dim;
use crate::{Error, LanguageModel, Result};

/// How [`score`] and [`score_tokens`] compute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreOptions {
    /// Logits are divided by this before the log-softmax (1 = unchanged).
    pub temperature: f32,
    /// Whether to compute each position's entropy too.
    pub entropies: bool,
    /// Roughly how many token positions (batch rows × positions) get their
    /// full-vocabulary logits at a time.
    pub chunk_tokens: i32,
}

/// The default of [`ScoreOptions::chunk_tokens`].
pub const DEFAULT_CHUNK_TOKENS: i32 = 1024;

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            temperature: 1.0,
            entropies: false,
            chunk_tokens: DEFAULT_CHUNK_TOKENS,
        }
    }
}

/// How [`score_tokens_with`] takes part in a gradient computation. The
/// values are the same either way; only what the backward pass keeps
/// changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreGradients {
    /// Gradient checkpointing of each chunk (see
    /// [`ScoreOptions::chunk_tokens`]): the backward pass recomputes the
    /// chunk's logits, log-softmax and entropies from its hidden states
    /// instead of keeping them, so only one chunk's vocabulary-sized arrays
    /// are alive at a time. Costs one more LM-head product per chunk.
    pub checkpoint_chunks: bool,
    /// Whether gradients flow through the entropies (needed for an entropy
    /// bonus in the loss). When false, the entropies are computed from
    /// stopped-gradient logits, so the backward pass neither keeps nor
    /// recomputes the softmax they need (enough for entropy masks and
    /// metrics).
    pub entropy_gradients: bool,
}

impl Default for ScoreGradients {
    /// No checkpointing, gradients through the entropies: the plain graph.
    fn default() -> Self {
        ScoreGradients {
            checkpoint_chunks: false,
            entropy_gradients: true,
        }
    }
}

/// Scores of a batch of completions, all `[B, C]` with `C` the longest
/// completion.
#[derive(Debug, Clone)]
pub struct TokenScores {
    /// `log p(token)` per completion position (`f32`).
    pub logprobs: Array,
    /// The entropy of each position's distribution (`f32`), when asked for.
    pub entropies: Option<Array>,
    /// 1 at real completion tokens, 0 at padding (`f32`).
    pub mask: Array,
}

/// A batch of (prompt, completion) pairs laid out for one forward pass:
/// prompts left-padded to the longest prompt, completions right-padded to
/// the longest completion.
#[derive(Debug, Clone)]
pub struct ScoreBatch {
    /// `[B, P + C]` token ids (`u32`).
    pub tokens: Array,
    /// Padding before each row's prompt.
    pub left_padding: Vec<i32>,
    /// `C`, the completion width.
    pub completion_width: i32,
    /// `[B, C]`: 1 at real completion tokens.
    pub mask: Array,
}

impl ScoreBatch {
    /// Lays out `pairs` with `pad_id` as padding. Every prompt needs at
    /// least one token (the first completion token is predicted from it).
    pub fn new(pairs: &[(&[u32], &[u32])], pad_id: u32) -> Result<Self> {
        if pairs.is_empty() {
            return Err(Error::InvalidInput {
                message: "no (prompt, completion) pairs to score".into(),
            });
        }
        if let Some(i) = pairs.iter().position(|(p, _)| p.is_empty()) {
            return Err(Error::InvalidInput {
                message: format!("pair {i} has an empty prompt"),
            });
        }
        let prompt_width = pairs.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        let completion_width = pairs.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        let width = prompt_width
            .checked_add(completion_width)
            .ok_or_else(|| Error::TooLarge {
                setting: "completion".into(),
                value: completion_width.to_string(),
                message: "prompt and completion lengths overflow".into(),
            })?;
        let (rows, width_i32) = (
            dim(pairs.len(), "pairs")?,
            dim(width, "prompt + completion")?,
        );
        let completion_i32 = dim(completion_width, "completion")?;
        let mut tokens = Vec::with_capacity(pairs.len().saturating_mul(width));
        let mut mask = Vec::with_capacity(pairs.len().saturating_mul(completion_width));
        let mut left_padding = Vec::with_capacity(pairs.len());
        for (prompt, completion) in pairs {
            let pad = prompt_width - prompt.len();
            left_padding.push(dim(pad, "prompt")?);
            tokens.extend(std::iter::repeat_n(pad_id, pad));
            tokens.extend_from_slice(prompt);
            tokens.extend_from_slice(completion);
            tokens.extend(std::iter::repeat_n(
                pad_id,
                completion_width - completion.len(),
            ));
            mask.extend(std::iter::repeat_n(1.0f32, completion.len()));
            mask.extend(std::iter::repeat_n(
                0.0f32,
                completion_width - completion.len(),
            ));
        }
        Ok(ScoreBatch {
            tokens: Array::from_slice(&tokens, &[rows, width_i32])?,
            left_padding,
            completion_width: completion_i32,
            mask: Array::from_slice(&mask, &[rows, completion_i32])?,
        })
    }
}

/// Scores every completion of `batch` under `model` (see the module docs).
pub fn score<M: LanguageModel>(
    model: &M,
    batch: &ScoreBatch,
    options: &ScoreOptions,
) -> Result<TokenScores> {
    let (logprobs, entropies) = score_tokens(
        model,
        &batch.tokens,
        &batch.left_padding,
        batch.completion_width,
        options,
    )?;
    Ok(TokenScores {
        logprobs,
        entropies,
        mask: batch.mask.clone(),
    })
}

/// The array-level form of [`score`]: `tokens` is `[B, T]` with row `i`
/// left-padded by `left_padding[i]`, and the last `completion_width`
/// positions of each row are scored. Returns `[B, completion_width]`
/// log-probabilities and, if asked for, entropies.
pub fn score_tokens<M: LanguageModel>(
    model: &M,
    tokens: &Array,
    left_padding: &[i32],
    completion_width: i32,
    options: &ScoreOptions,
) -> Result<(Array, Option<Array>)> {
    score_tokens_with(
        model,
        tokens,
        left_padding,
        completion_width,
        options,
        &ScoreGradients::default(),
    )
}

/// [`score_tokens`] with a choice of what a backward pass through the
/// scores keeps ([`ScoreGradients`]): the form a training step uses.
pub fn score_tokens_with<M: LanguageModel>(
    model: &M,
    tokens: &Array,
    left_padding: &[i32],
    completion_width: i32,
    options: &ScoreOptions,
    gradients: &ScoreGradients,
) -> Result<(Array, Option<Array>)> {
    check_score_inputs(tokens, completion_width, options)?;
    let hidden = model.forward_hidden_padded(tokens, left_padding)?;
    score_hidden(model, &hidden, tokens, completion_width, options, gradients)
}

/// [`score_tokens_with`] together with the model's auxiliary training loss
/// from the same forward pass (for mixture-of-experts models the router
/// load-balancing loss, unscaled; `None` for dense models), counting only
/// the tokens where `token_mask` (`[B, T]`, 1 = real token; default:
/// everything after the left padding) is set, as transformers counts the
/// tokens of its `attention_mask`.
pub fn score_tokens_with_aux<M: LanguageModel>(
    model: &M,
    tokens: &Array,
    left_padding: &[i32],
    completion_width: i32,
    token_mask: Option<&Array>,
    options: &ScoreOptions,
    gradients: &ScoreGradients,
) -> Result<(Array, Option<Array>, Option<Array>)> {
    check_score_inputs(tokens, completion_width, options)?;
    let (hidden, aux) = model.forward_hidden_with_aux(tokens, Some(left_padding), token_mask)?;
    let (logprobs, entropies) =
        score_hidden(model, &hidden, tokens, completion_width, options, gradients)?;
    Ok((logprobs, entropies, aux))
}

/// The checks shared by the scoring functions: `[B, T]` tokens, a
/// completion width that leaves a prompt token, a positive temperature.
fn check_score_inputs(tokens: &Array, completion_width: i32, options: &ScoreOptions) -> Result<()> {
    let shape = tokens.shape();
    if shape.ndim() != 2 {
        return Err(Error::InvalidInput {
            message: format!("tokens must be [batch, length], got {}", tokens.describe()),
        });
    }
    let total = shape[1];
    if completion_width < 0 || completion_width >= total {
        return Err(Error::InvalidInput {
            message: format!(
                "cannot score {completion_width} completion positions of {total}-token rows (at least one prompt token is needed)"
            ),
        });
    }
    if options.temperature <= 0.0 || !options.temperature.is_finite() {
        return Err(Error::InvalidInput {
            message: format!("temperature must be positive, got {}", options.temperature),
        });
    }
    Ok(())
}

/// Scores the last `completion_width` tokens of each row of `tokens` from
/// the model's final hidden states `hidden` (`[B, T, hidden]`).
fn score_hidden<M: LanguageModel>(
    model: &M,
    hidden: &Array,
    tokens: &Array,
    completion_width: i32,
    options: &ScoreOptions,
    gradients: &ScoreGradients,
) -> Result<(Array, Option<Array>)> {
    let shape = tokens.shape();
    let (rows, total) = (shape[0], shape[1]);
    let start = total - completion_width;
    let hidden = hidden.slice_axis(1, start - 1, Some(total - 1), 1)?;
    let targets = tokens.slice_axis(1, start, None, 1)?;
    let step = (options.chunk_tokens / rows.max(1)).max(1);
    let mut hidden_chunks = Vec::new();
    let mut target_chunks = Vec::new();
    let mut from = 0;
    while from < completion_width {
        let to = (from + step).min(completion_width);
        hidden_chunks.push(hidden.slice_axis(1, from, Some(to), 1)?);
        target_chunks.push(targets.slice_axis(1, from, Some(to), 1)?);
        from = to;
    }
    let math = ChunkMath {
        temperature: options.temperature,
        entropies: options.entropies,
        entropy_gradients: gradients.entropy_gradients,
    };
    let chunk_outputs = if gradients.checkpoint_chunks {
        // The targets are constants of each chunk (no gradient flows to
        // indices), so they are captured rather than passed as inputs.
        model.with_checkpointed_logit_chunks(&hidden_chunks, move |i, logits| {
            let targets = target_chunks.get(i).ok_or_else(|| Error::InvalidInput {
                message: format!("no targets for score chunk {i}"),
            })?;
            math.scores(logits, targets)
        })?
    } else {
        hidden_chunks
            .iter()
            .zip(&target_chunks)
            .map(|(h, t)| math.scores(&model.logits_from_hidden(h)?, t))
            .collect::<Result<Vec<_>>>()?
    };
    let mut logprob_parts = Vec::new();
    let mut entropy_parts = Vec::new();
    for mut outs in chunk_outputs {
        if options.entropies {
            entropy_parts.push(outs.pop().ok_or_else(missing_output)?);
        }
        logprob_parts.push(outs.pop().ok_or_else(missing_output)?);
    }
    if logprob_parts.is_empty() {
        let empty = Array::zeros(&[rows, 0], Dtype::F32)?;
        return Ok((empty.clone(), options.entropies.then_some(empty)));
    }
    let logprobs = join(&logprob_parts)?;
    let entropies = if options.entropies {
        Some(join(&entropy_parts)?)
    } else {
        None
    };
    Ok((logprobs, entropies))
}

fn join(parts: &[Array]) -> Result<Array> {
    if parts.len() == 1 {
        return Ok(parts[0].clone());
    }
    let refs: Vec<&Array> = parts.iter().collect();
    Ok(concatenate(&refs, 1)?)
}

fn missing_output() -> Error {
    Error::InvalidInput {
        message: "a score chunk returned too few outputs".into(),
    }
}

/// The per-chunk arithmetic of scoring (kept `Copy` so that checkpointed
/// chunks can re-run it in the backward pass).
#[derive(Debug, Clone, Copy)]
struct ChunkMath {
    temperature: f32,
    entropies: bool,
    entropy_gradients: bool,
}

impl ChunkMath {
    /// `[logprobs]` or `[logprobs, entropies]` (`[B, n]`, `f32`) of
    /// `targets: [B, n]` from `logits: [B, n, vocab]` in the model's dtype.
    fn scores(&self, logits: &Array, targets: &Array) -> Result<Vec<Array>> {
        let mut logits = logits.as_type(Dtype::F32)?;
        if self.temperature != 1.0 {
            logits = logits.div_scalar(f64::from(self.temperature))?;
        }
        let lse = logits.logsumexp(-1, true)?;
        let picked = logits.take_along_axis(&targets.expand_dims(&[-1])?, -1)?;
        let mut out = vec![picked.subtract(&lse)?.squeeze(&[-1])?];
        if self.entropies {
            let (logits, lse) = if self.entropy_gradients {
                (logits, lse)
            } else {
                (logits.stop_gradient()?, lse.stop_gradient()?)
            };
            let probs = logits.subtract(&lse)?.exp()?;
            let expected_logit = probs.multiply(&logits)?.sum(-1, true)?;
            out.push(lse.subtract(&expected_logit)?.squeeze(&[-1])?);
        }
        Ok(out)
    }
}
