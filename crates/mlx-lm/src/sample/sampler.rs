//! Sampler settings and the sampling chain built from them.

use mlx_tensor::{Array, concatenate};

use super::filters::{
    apply_min_p, apply_top_k, apply_top_p, apply_xtc, apply_xtc_rows, categorical_sampling,
    categorical_sampling_rows, greedy,
};
use super::rng::{RandomState, SampleKey};
use crate::error::{Error, Result};

/// Default XTC threshold.
pub const DEFAULT_XTC_THRESHOLD: f64 = 0.1;

/// Settings of a sampler (mlx-lm's `make_sampler` arguments and defaults).
///
/// A temperature of `0` means greedy decoding: every other setting is then
/// ignored and no random number is drawn. Otherwise the log-probabilities go
/// through top-p (when `0 < top_p < 1`), min-p (when `min_p != 0`), XTC (when
/// `xtc_probability > 0`) and top-k (when `top_k > 0`), in that order, and a
/// token is drawn from `softmax(logprobs / temperature)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Sampling temperature; `0` is greedy.
    pub temperature: f64,
    /// Nucleus sampling mass; on when strictly between 0 and 1.
    pub top_p: f64,
    /// Minimum probability relative to the most likely token; `0` is off.
    pub min_p: f64,
    /// How many of the most likely tokens min-p always keeps (at least 1).
    pub min_tokens_to_keep: usize,
    /// How many of the most likely tokens to keep; `0` is off.
    pub top_k: usize,
    /// Probability that XTC removes the top choices at a step; `0` is off.
    pub xtc_probability: f64,
    /// Probability above which XTC considers a token a top choice (`[0, 0.5]`).
    pub xtc_threshold: f64,
    /// Token ids XTC never removes.
    pub xtc_special_tokens: Vec<u32>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_p: 0.0,
            min_p: 0.0,
            min_tokens_to_keep: 1,
            top_k: 0,
            xtc_probability: 0.0,
            xtc_threshold: DEFAULT_XTC_THRESHOLD,
            xtc_special_tokens: Vec::new(),
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding (argmax).
    pub fn greedy() -> Self {
        SamplerConfig::default()
    }

    /// Plain sampling at `temperature` with no filter.
    pub fn with_temperature(temperature: f64) -> Self {
        SamplerConfig {
            temperature,
            ..SamplerConfig::default()
        }
    }

    /// Whether this samples greedily (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks every setting against a vocabulary of `vocab` tokens, with
    /// mlx-lm's ranges, whatever the temperature (a setting that is wrong
    /// is reported even where greedy decoding would ignore it):
    /// `temperature` finite and `>= 0`; `top_p` in `[0, 1]` (0 and 1 are
    /// off); `min_p`, `xtc_probability` in `[0, 1]`; `xtc_threshold` in
    /// `[0, 0.5]`; `top_k` and `xtc_special_tokens` inside the vocabulary;
    /// `min_tokens_to_keep` in `1..=vocab` when min-p is on. NaN is never
    /// in range.
    pub fn validate(&self, vocab: i32) -> Result<()> {
        let bad = |parameter: &'static str, message: String| {
            Err(Error::InvalidSampling { parameter, message })
        };
        let in_range = |x: f64, lo: f64, hi: f64| x.is_finite() && (lo..=hi).contains(&x);
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(
                "temperature",
                format!(
                    "must be a finite non-negative number, got {}",
                    self.temperature
                ),
            );
        }
        if !in_range(self.top_p, 0.0, 1.0) {
            return bad(
                "top_p",
                format!("has to be in [0, 1] (0 or 1: off), got {}", self.top_p),
            );
        }
        if !in_range(self.min_p, 0.0, 1.0) {
            return bad("min_p", format!("has to be in [0, 1], got {}", self.min_p));
        }
        if self.min_p != 0.0 {
            if self.min_tokens_to_keep < 1 {
                return bad(
                    "min_tokens_to_keep",
                    "has to be a positive integer, got 0".into(),
                );
            }
            if self.min_tokens_to_keep > vocab.max(0) as usize {
                return bad(
                    "min_tokens_to_keep",
                    format!(
                        "{} is larger than the vocabulary ({vocab})",
                        self.min_tokens_to_keep
                    ),
                );
            }
        }
        if !in_range(self.xtc_probability, 0.0, 1.0) {
            return bad(
                "xtc_probability",
                format!("has to be in [0, 1], got {}", self.xtc_probability),
            );
        }
        if !in_range(self.xtc_threshold, 0.0, 0.5) {
            return bad(
                "xtc_threshold",
                format!("has to be in [0, 0.5], got {}", self.xtc_threshold),
            );
        }
        if let Some(t) = self
            .xtc_special_tokens
            .iter()
            .find(|t| i64::from(**t) >= i64::from(vocab))
        {
            return bad(
                "xtc_special_tokens",
                format!("token {t} is outside the vocabulary ({vocab})"),
            );
        }
        if self.top_k > 0 && self.top_k >= vocab.max(0) as usize {
            return bad(
                "top_k",
                format!("has to be in (0, {vocab}), got {}", self.top_k),
            );
        }
        Ok(())
    }

    /// Draws one token per row of `logprobs` (`[B, V]`): `u32` ids `[B]`.
    ///
    /// Random draws, in order: one uniform number when XTC is on, then the
    /// Gumbel noise of the categorical draw (none when greedy), each with the
    /// next key of `rng` (with [`RandomState::PerRow`], each row draws with
    /// its own next key: one state per row of `logprobs`).
    pub fn sample(&self, logprobs: &Array, rng: &mut RandomState) -> Result<Array> {
        if self.is_greedy() {
            return greedy(logprobs);
        }
        let mut x = logprobs.clone();
        if 0.0 < self.top_p && self.top_p < 1.0 {
            x = apply_top_p(&x, self.top_p)?;
        }
        if self.min_p != 0.0 {
            x = apply_min_p(&x, self.min_p, self.min_tokens_to_keep)?;
        }
        if self.xtc_probability > 0.0 {
            let (p, t, special) = (
                self.xtc_probability,
                self.xtc_threshold,
                &self.xtc_special_tokens,
            );
            x = match rng.next_sample_key()? {
                SampleKey::Shared(key) => apply_xtc(&x, p, t, special, key.as_ref())?,
                SampleKey::Rows(keys) => apply_xtc_rows(&x, p, t, special, &keys)?,
            };
        }
        if self.top_k > 0 {
            x = apply_top_k(&x, self.top_k)?;
        }
        match rng.next_sample_key()? {
            SampleKey::Shared(key) => categorical_sampling(&x, self.temperature, key.as_ref()),
            SampleKey::Rows(keys) => categorical_sampling_rows(&x, self.temperature, &keys),
        }
    }
}

/// Samples a batch whose rows may have different settings.
///
/// When every row has the same settings the whole batch is sampled in one
/// call; otherwise each row is sampled on its own, in row order, each taking
/// its own keys from `rng` (with [`RandomState::PerRow`], row `r` takes
/// them from its own state: the same tokens as in one call).
pub fn sample_rows(
    configs: &[&SamplerConfig],
    logprobs: &Array,
    rng: &mut RandomState,
) -> Result<Array> {
    let Some(first) = configs.first() else {
        return Err(Error::InvalidSampling {
            parameter: "rows",
            message: "no sampler settings given".into(),
        });
    };
    let rows = usize::try_from(logprobs.axis_size(0)?).unwrap_or(0);
    if configs.len() != rows {
        return Err(Error::InvalidSampling {
            parameter: "rows",
            message: format!("{} sampler settings for {rows} rows", configs.len()),
        });
    }
    if let Some(n) = rng.rows()?.filter(|&n| n != rows) {
        return Err(Error::InvalidSampling {
            parameter: "keys",
            message: format!("{n} per-row keys for {rows} rows"),
        });
    }
    if configs.iter().all(|c| c == first) {
        return first.sample(logprobs, rng);
    }
    let per_row = matches!(rng, RandomState::PerRow(_));
    let mut outs = Vec::with_capacity(rows);
    let mut states = Vec::with_capacity(if per_row { rows } else { 0 });
    for (i, cfg) in configs.iter().enumerate() {
        let row = logprobs.slice_axis(0, i as i32, Some(i as i32 + 1), 1)?;
        match rng.row(i)? {
            Some(state) => {
                let mut own = RandomState::PerRow(state);
                outs.push(cfg.sample(&row, &mut own)?);
                if let RandomState::PerRow(state) = own {
                    states.push(state);
                }
            }
            None => outs.push(cfg.sample(&row, rng)?),
        }
    }
    if per_row {
        let refs: Vec<&Array> = states.iter().collect();
        *rng = RandomState::PerRow(concatenate(&refs, 0)?);
    }
    let refs: Vec<&Array> = outs.iter().collect();
    Ok(concatenate(&refs, 0)?)
}
