//! Micro-batches: completions laid out as arrays for the loss.

use std::collections::BTreeMap;

use mlx_lm::models::Model;
use mlx_lm::score::{ScoreBatch, ScoreOptions, score};
use mlx_tensor::Array;

use crate::config::GrpoConfig;
use crate::loss::RolloutCorrection;
use crate::rewards::FinishReason;
use crate::trainer::rollout::RolloutSample;
use crate::{Error, Result};

/// One micro-batch of completions, ready for the loss.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    /// Prompts and completions laid out for scoring (left-padded prompts,
    /// right-padded completions).
    pub layout: ScoreBatch,
    /// `[B, T]` loss mask: the completion mask, zero at tokens the model
    /// did not sample (tool results of multi-turn rollouts, TRL's
    /// `tool_mask`), all zeros for truncated completions when
    /// `mask_truncated_completions`.
    pub mask: Array,
    /// `[B]` advantages.
    pub advantages: Array,
    /// `[B, T]` log-probabilities when the batch was generated (when the
    /// policy may have moved since: `num_iterations > 1` or more generation
    /// micro-steps than accumulation steps).
    pub old_logps: Option<Array>,
    /// `[B, T]` reference-model log-probabilities (when `beta != 0`).
    pub ref_logps: Option<Array>,
    /// `[B, T]` log-probabilities the sampler recorded while decoding (0 at
    /// padding), kept when the rollout-versus-training correction is on
    /// (`vllm_importance_sampling_correction`).
    pub sampling_logps: Option<Array>,
    /// The correction's importance-sampling ratio
    /// ([`RolloutCorrection::importance_sampling_ratio`]: `[B, T]` or
    /// `[B, 1]`), when it is on.
    pub importance_sampling_ratio: Option<Array>,
    /// Loss tokens in the whole generation batch (TRL's `num_items_in_batch`).
    pub num_items_in_batch: f64,
}

impl MicroBatch {
    /// Builds the micro-batch of completion slots `part`, computing old and
    /// reference log-probabilities as the config requires, and the
    /// rollout-versus-training correction when it is on.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        part: &[usize],
        samples: &[RolloutSample],
        advantages: &[f32],
        pad_id: u32,
        num_items_in_batch: f64,
        config: &GrpoConfig,
        model: &Model,
        ref_model: Option<&Model>,
    ) -> Result<Self> {
        let mut pairs = Vec::with_capacity(part.len());
        let mut adv = Vec::with_capacity(part.len());
        let mut truncated = Vec::with_capacity(part.len());
        let mut sampled_masks = Vec::with_capacity(part.len());
        for &i in part {
            let s = samples.get(i).ok_or_else(|| {
                Error::internal(format!("micro-batch slot {i} of {}", samples.len()))
            })?;
            pairs.push((s.prompt_ids.as_slice(), s.completion_ids.as_slice()));
            adv.push(advantages.get(i).copied().unwrap_or(0.0));
            truncated.push(s.finish_reason == FinishReason::Length);
            sampled_masks.push(s.sampled_mask());
        }
        let layout = ScoreBatch::new(&pairs, pad_id)?;
        let completion_mask = match sampled_mask_array(&sampled_masks, layout.completion_width)? {
            Some(sampled) => layout.mask.multiply(&sampled)?,
            None => layout.mask.clone(),
        };
        let mask = if config.mask_truncated_completions && truncated.iter().any(|&t| t) {
            let keep: Vec<f32> = truncated
                .iter()
                .map(|&t| if t { 0.0 } else { 1.0 })
                .collect();
            let keep = Array::from_slice(&keep, &[keep.len() as i32, 1])?;
            completion_mask.multiply(&keep)?
        } else {
            completion_mask
        };
        let advantages = Array::from_slice(&adv, &[adv.len() as i32])?;
        let options = ScoreOptions {
            temperature: config.temperature as f32,
            ..Default::default()
        };
        let old_logps = if config.needs_old_logps() {
            let s = score(model, &layout, &options)?;
            let lp = s.logprobs.stop_gradient()?;
            lp.eval()?;
            Some(lp)
        } else {
            None
        };
        let ref_logps = match ref_model {
            Some(r) if config.beta != 0.0 => {
                let s = score(r, &layout, &options)?;
                let lp = s.logprobs.stop_gradient()?;
                lp.eval()?;
                Some(lp)
            }
            _ => None,
        };
        let (sampling_logps, importance_sampling_ratio) =
            match (RolloutCorrection::from_config(config), &old_logps) {
                (Some(correction), Some(old)) => {
                    let rows: Vec<&RolloutSample> =
                        part.iter().filter_map(|&i| samples.get(i)).collect();
                    let sampling = sampling_logps_layout(&rows, layout.completion_width)?;
                    let ratio = correction.importance_sampling_ratio(old, &sampling, &mask)?;
                    ratio.eval()?;
                    (Some(sampling), Some(ratio))
                }
                (Some(_), None) => {
                    return Err(Error::internal(
                        "the rollout correction is on but no old log-probabilities were computed",
                    ));
                }
                (None, _) => (None, None),
            };
        Ok(MicroBatch {
            layout,
            mask,
            advantages,
            old_logps,
            ref_logps,
            sampling_logps,
            importance_sampling_ratio,
            num_items_in_batch,
        })
    }
}

/// The sampler's log-probabilities of `rows` as a `[B, width]` array,
/// right-padded with 0 as the completions are in a [`ScoreBatch`].
fn sampling_logps_layout(rows: &[&RolloutSample], width: i32) -> Result<Array> {
    let w =
        usize::try_from(width).map_err(|_| Error::internal(format!("completion width {width}")))?;
    let mut flat = Vec::with_capacity(rows.len().saturating_mul(w));
    for (i, s) in rows.iter().enumerate() {
        if s.sampling_logps.len() != s.completion_ids.len() || s.completion_ids.len() > w {
            return Err(Error::internal(format!(
                "completion {i} has {} tokens but {} sampling log-probabilities (width {w})",
                s.completion_ids.len(),
                s.sampling_logps.len()
            )));
        }
        flat.extend_from_slice(&s.sampling_logps);
        flat.resize(flat.len() + (w - s.sampling_logps.len()), 0.0);
    }
    let b = i32::try_from(rows.len())
        .map_err(|_| Error::internal(format!("{} rows in a micro-batch", rows.len())))?;
    Ok(Array::from_slice(&flat, &[b, width])?)
}

/// `[B, width]` with 1 where a row's completion token was sampled by the
/// model, 0 where it was inserted (and 1 past the row's end, which the
/// completion mask zeroes); `None` when every row is single-turn.
fn sampled_mask_array(masks: &[Option<&[bool]>], width: i32) -> Result<Option<Array>> {
    if masks.iter().all(Option::is_none) {
        return Ok(None);
    }
    let cols =
        usize::try_from(width).map_err(|_| Error::internal(format!("completion width {width}")))?;
    let mut values = vec![
        1.0f32;
        masks.len().checked_mul(cols).ok_or_else(|| {
            Error::internal(format!("{} rows of {cols} completion tokens", masks.len()))
        })?
    ];
    for (row, mask) in masks.iter().enumerate() {
        let Some(mask) = mask else { continue };
        if mask.len() > cols {
            return Err(Error::internal(format!(
                "a token mask of {} for {cols} completion positions",
                mask.len()
            )));
        }
        for (v, &m) in values[row * cols..].iter_mut().zip(mask.iter()) {
            if !m {
                *v = 0.0;
            }
        }
    }
    let rows =
        i32::try_from(masks.len()).map_err(|_| Error::internal(format!("{} rows", masks.len())))?;
    Ok(Some(Array::from_slice(&values, &[rows, width])?))
}

/// TRL's completion metrics of a generation batch:
/// `completions/mean_length|min_length|max_length|clipped_ratio` and the
/// lengths of the completions that terminated.
pub fn completion_metrics(samples: &[RolloutSample]) -> BTreeMap<String, f64> {
    let outcomes: Vec<(usize, FinishReason)> = samples
        .iter()
        .map(|s| (s.model_tokens(), s.finish_reason))
        .collect();
    completion_metrics_of(&outcomes)
}

/// [`completion_metrics`] of completions given as `(length, finish
/// reason)` (e.g. gathered from every data-parallel rank).
pub fn completion_metrics_of(outcomes: &[(usize, FinishReason)]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if outcomes.is_empty() {
        return out;
    }
    let lengths: Vec<f64> = outcomes.iter().map(|&(n, _)| n as f64).collect();
    let n = lengths.len() as f64;
    out.insert(
        "completions/mean_length".into(),
        lengths.iter().sum::<f64>() / n,
    );
    out.insert(
        "completions/min_length".into(),
        lengths.iter().copied().fold(f64::INFINITY, f64::min),
    );
    out.insert(
        "completions/max_length".into(),
        lengths.iter().copied().fold(0.0, f64::max),
    );
    let clipped = outcomes
        .iter()
        .filter(|&&(_, r)| r == FinishReason::Length)
        .count() as f64;
    out.insert("completions/clipped_ratio".into(), clipped / n);
    let terminated: Vec<f64> = outcomes
        .iter()
        .filter(|&&(_, r)| r == FinishReason::Stop)
        .map(|&(n, _)| n as f64)
        .collect();
    let (mean, min, max) = if terminated.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            terminated.iter().sum::<f64>() / terminated.len() as f64,
            terminated.iter().copied().fold(f64::INFINITY, f64::min),
            terminated.iter().copied().fold(0.0, f64::max),
        )
    };
    out.insert("completions/mean_terminated_length".into(), mean);
    out.insert("completions/min_terminated_length".into(), min);
    out.insert("completions/max_terminated_length".into(), max);
    out
}
