//! Logits processors: logit bias and the repetition, presence and frequency
//! penalties, applied to raw logits before they become log-probabilities.

use mlx_tensor::{Array, Dtype};

use crate::error::{Error, Result};

/// How many recent tokens the penalties look at unless told otherwise.
pub const DEFAULT_CONTEXT_SIZE: usize = 20;

/// Settings of the logits processors (mlx-lm's `make_logits_processors`).
///
/// They run in this order: logit bias, repetition penalty, presence penalty,
/// frequency penalty. A penalty that is `None` or `0` is off.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitsProcessorConfig {
    /// Added to the logits of the given token ids.
    pub logit_bias: Vec<(u32, f64)>,
    /// Logits of recent tokens are divided by it when positive and
    /// multiplied by it when negative.
    pub repetition_penalty: Option<f64>,
    /// How many recent tokens the repetition penalty looks at.
    pub repetition_context_size: usize,
    /// Subtracted once from the logit of every token that occurs among the
    /// recent ones.
    pub presence_penalty: Option<f64>,
    /// How many recent tokens the presence penalty looks at.
    pub presence_context_size: usize,
    /// Subtracted from the logit of every recent token once per occurrence.
    pub frequency_penalty: Option<f64>,
    /// How many recent tokens the frequency penalty looks at.
    pub frequency_context_size: usize,
}

impl Default for LogitsProcessorConfig {
    fn default() -> Self {
        LogitsProcessorConfig {
            logit_bias: Vec::new(),
            repetition_penalty: None,
            repetition_context_size: DEFAULT_CONTEXT_SIZE,
            presence_penalty: None,
            presence_context_size: DEFAULT_CONTEXT_SIZE,
            frequency_penalty: None,
            frequency_context_size: DEFAULT_CONTEXT_SIZE,
        }
    }
}

fn active(p: Option<f64>) -> Option<f64> {
    p.filter(|p| *p != 0.0)
}

impl LogitsProcessorConfig {
    /// Whether any processor is on.
    pub fn is_active(&self) -> bool {
        !self.logit_bias.is_empty()
            || active(self.repetition_penalty).is_some()
            || active(self.presence_penalty).is_some()
            || active(self.frequency_penalty).is_some()
    }

    /// How many recent tokens the active penalties need (0 when none).
    pub fn context_window(&self) -> usize {
        [
            (self.repetition_penalty, self.repetition_context_size),
            (self.presence_penalty, self.presence_context_size),
            (self.frequency_penalty, self.frequency_context_size),
        ]
        .iter()
        .filter(|(p, _)| active(*p).is_some())
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
    }

    /// Checks the settings against a vocabulary of `vocab` tokens.
    pub fn validate(&self, vocab: i32) -> Result<()> {
        if let Some(p) = self.repetition_penalty
            && (p < 0.0 || !p.is_finite())
        {
            return Err(Error::InvalidSampling {
                parameter: "repetition_penalty",
                message: format!("must be a non-negative number, got {p}"),
            });
        }
        for (parameter, penalty) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if let Some(p) = penalty
                && !p.is_finite()
            {
                return Err(Error::InvalidSampling {
                    parameter,
                    message: format!("must be a finite number, got {p}"),
                });
            }
        }
        for &(t, bias) in &self.logit_bias {
            if i64::from(t) >= i64::from(vocab) {
                return Err(Error::InvalidSampling {
                    parameter: "logit_bias",
                    message: format!("token {t} is outside the vocabulary ({vocab})"),
                });
            }
            // -inf bans a token; NaN or +inf would make every probability NaN.
            if bias.is_nan() || bias == f64::INFINITY {
                return Err(Error::InvalidSampling {
                    parameter: "logit_bias",
                    message: format!(
                        "the bias of token {t} must be a number below +inf, got {bias}"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Applies the processors to `logits` (`[B, V]`, every row continuing
    /// the same tokens) given the sequence so far, `context` (`[n]` token
    /// ids, prompt included; only its last tokens matter, see
    /// [`Self::context_window`]).
    pub fn apply(&self, context: &Array, logits: &Array) -> Result<Array> {
        let mut logits = logits.clone();
        if !self.logit_bias.is_empty() {
            let ids: Vec<u32> = self.logit_bias.iter().map(|(t, _)| *t).collect();
            let values: Vec<f32> = self.logit_bias.iter().map(|(_, v)| *v as f32).collect();
            let n = ids.len() as i32;
            let ids = Array::from_slice(&ids, &[1, n])?;
            let values = Array::from_slice(&values, &[1, n])?.as_type(logits.dtype())?;
            logits = scatter_add_columns(&logits, &ids, &values)?;
        }
        let len = context.size();
        if len == 0 {
            return Ok(logits);
        }
        if let Some(p) = active(self.repetition_penalty) {
            let ids = last_tokens(context, self.repetition_context_size)?;
            let selected = logits.take(&ids, Some(-1))?;
            let penalised = mlx_tensor::where_(
                &selected.lt(&selected.scalar_like(0.0)?)?,
                &selected.mul_scalar(p)?,
                &selected.div_scalar(p)?,
            )?;
            logits = put_columns(&logits, &ids, &penalised)?;
        }
        if let Some(p) = active(self.presence_penalty) {
            let ids = last_tokens(context, self.presence_context_size)?;
            let penalised = logits.take(&ids, Some(-1))?.sub_scalar(p)?;
            logits = put_columns(&logits, &ids, &penalised)?;
        }
        if let Some(p) = active(self.frequency_penalty) {
            let ids = last_tokens(context, self.frequency_context_size)?;
            let n = ids.size() as i32;
            let values = Array::full(&[1, n], -p, logits.dtype())?;
            logits = scatter_add_columns(&logits, &ids.reshape(&[1, n])?, &values)?;
        }
        Ok(logits)
    }
}

/// The last `size` entries of `context` (all of them when it is shorter).
fn last_tokens(context: &Array, size: usize) -> Result<Array> {
    let len = context.size();
    let start = len.saturating_sub(size) as i32;
    Ok(context.slice_axis(0, start, None, 1)?)
}

/// `logits[:, ids] = values[:, j]` (the same columns in every row).
fn put_columns(logits: &Array, ids: &Array, values: &Array) -> Result<Array> {
    let rows = logits.dim(0).unwrap_or(1);
    let n = ids.size() as i32;
    let idx = ids.reshape(&[1, n])?.broadcast_to(&[rows, n])?;
    Ok(logits.put_along_axis(&idx, values, -1)?)
}

/// `logits[:, ids] += values` with repeated ids accumulating.
fn scatter_add_columns(logits: &Array, ids: &Array, values: &Array) -> Result<Array> {
    let rows = logits.dim(0).unwrap_or(1);
    let n = ids.size() as i32;
    let idx = ids.reshape(&[1, n])?.broadcast_to(&[rows, n])?;
    let values = values.broadcast_to(&[rows, n])?;
    Ok(logits.scatter_add_axis(&idx, &values, -1)?)
}

/// The token ids a sequence has seen, kept as a lazily extended array so
/// that the processors can use a token before it has been read back.
#[derive(Debug, Clone)]
pub struct TokenHistory {
    tokens: Option<Array>,
    len: usize,
    window: usize,
}

impl TokenHistory {
    /// An empty history that keeps the last `window` tokens.
    pub fn new(window: usize) -> Self {
        TokenHistory {
            tokens: None,
            len: 0,
            window,
        }
    }

    /// A history starting with `tokens`.
    pub fn from_tokens(tokens: &[u32], window: usize) -> Result<Self> {
        let mut h = TokenHistory::new(window);
        if !tokens.is_empty() {
            let start = tokens.len().saturating_sub(window);
            h.push(&Array::from_slice(
                &tokens[start..],
                &[(tokens.len() - start) as i32],
            )?)?;
        }
        Ok(h)
    }

    /// Appends the tokens `[n]` (possibly not yet evaluated).
    pub fn push(&mut self, tokens: &Array) -> Result<()> {
        if self.window == 0 {
            return Ok(());
        }
        let tokens = tokens.reshape(&[-1])?.as_type(Dtype::U32)?;
        let added = tokens.size();
        let joined = match &self.tokens {
            Some(t) => mlx_tensor::concatenate(&[t, &tokens], 0)?,
            None => tokens,
        };
        let total = self.len + added;
        if total > self.window {
            self.tokens = Some(joined.slice_axis(0, (total - self.window) as i32, None, 1)?);
            self.len = self.window;
        } else {
            self.tokens = Some(joined);
            self.len = total;
        }
        Ok(())
    }

    /// The kept tokens (`[n]`, `u32`), or an empty array.
    pub fn tokens(&self) -> Result<Array> {
        match &self.tokens {
            Some(t) => Ok(t.clone()),
            None => Ok(Array::zeros(&[0], Dtype::U32)?),
        }
    }

    /// How many tokens are kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token is kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
