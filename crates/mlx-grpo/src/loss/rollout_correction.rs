//! The rollout-versus-training correction: TRL 1.16's
//! `vllm_importance_sampling_correction`, applied to this trainer's own
//! sampler.
//!
//! The sampler records `log_softmax(logits / T)` of every token it draws;
//! the training forward recomputes them (the old log-probabilities) along a
//! different numerical path. Per completion token the log-ratio is
//! `(old - sampling) · mask` (a NaN sampling log-probability counts as 0),
//! summed over the sequence for the `sequence_*` modes; its `exp` is then
//! clipped to `[clip_min, clip_max]` (`*_truncate`) or set to 0 outside it
//! (`*_mask`). The result multiplies the per-token policy loss
//! ([`LossInputs::importance_sampling_ratio`](super::LossInputs::importance_sampling_ratio)).
//!
//! [`SamplingStats`] gathers what TRL logs of it: the mean and largest
//! `|old - sampling|` over the loss tokens, and the smallest, mean and
//! largest ratio (over loss tokens, or over sequences for `sequence_*`).

use std::collections::BTreeMap;

use mlx_tensor::{Array, Axes, where_};

use crate::config::{GrpoConfig, ImportanceSamplingMode};
use crate::error::{Error, Result};

/// TRL's names of the correction's metrics.
pub mod sampling_names {
    /// Mean `|old_logp - sampling_logp|` over the loss tokens.
    pub const LOGP_DIFFERENCE_MEAN: &str = "sampling/sampling_logp_difference/mean";
    /// Largest `|old_logp - sampling_logp|` over the loss tokens.
    pub const LOGP_DIFFERENCE_MAX: &str = "sampling/sampling_logp_difference/max";
    /// Smallest importance-sampling ratio.
    pub const RATIO_MIN: &str = "sampling/importance_sampling_ratio/min";
    /// Mean importance-sampling ratio.
    pub const RATIO_MEAN: &str = "sampling/importance_sampling_ratio/mean";
    /// Largest importance-sampling ratio.
    pub const RATIO_MAX: &str = "sampling/importance_sampling_ratio/max";
}

/// The correction's settings (TRL's `vllm_importance_sampling_mode`,
/// `_clip_min` and `_clip_max`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RolloutCorrection {
    /// Token or sequence ratios, clipped or masked.
    pub mode: ImportanceSamplingMode,
    /// Lower bound C_min (`None`: unbounded below).
    pub clip_min: Option<f64>,
    /// Upper bound C_max (`None`: unbounded above).
    pub clip_max: Option<f64>,
}

impl RolloutCorrection {
    /// The correction a config asks for; `None` when
    /// `vllm_importance_sampling_correction` is off.
    pub fn from_config(cfg: &GrpoConfig) -> Option<Self> {
        cfg.vllm_importance_sampling_correction.then_some(Self {
            mode: cfg.vllm_importance_sampling_mode,
            clip_min: cfg.vllm_importance_sampling_clip_min,
            clip_max: cfg.vllm_importance_sampling_clip_max,
        })
    }

    /// The importance-sampling ratio of a batch: `[B, T]` for the `token_*`
    /// modes, `[B, 1]` for the `sequence_*` modes. `old_logps` and
    /// `sampling_logps` are `[B, T]` float, `mask` the `[B, T]` loss mask
    /// (any numeric dtype). The result carries no gradient.
    pub fn importance_sampling_ratio(
        &self,
        old_logps: &Array,
        sampling_logps: &Array,
        mask: &Array,
    ) -> Result<Array> {
        check_same_shape(old_logps, sampling_logps, mask)?;
        let mask = mask.as_type(old_logps.dtype())?;
        let diff = old_logps
            .stop_gradient()?
            .subtract(&sampling_logps.stop_gradient()?)?
            .multiply(&mask)?
            .nan_to_num(0.0, f32::MAX, f32::MIN)?;
        let log_ratio = if self.mode.is_sequence_level() {
            diff.sum(Axes::from(-1), true)?
        } else {
            diff
        };
        let ratio = log_ratio.exp()?;
        if !self.mode.masks() {
            return Ok(ratio.clip(self.clip_min, self.clip_max)?);
        }
        let low = ratio.scalar_like(self.clip_min.unwrap_or(f64::NEG_INFINITY))?;
        let high = ratio.scalar_like(self.clip_max.unwrap_or(f64::INFINITY))?;
        let outside = ratio.lt(&low)?.logical_or(&ratio.gt(&high)?)?;
        Ok(where_(&outside, &ratio.scalar_like(0.0)?, &ratio)?)
    }
}

fn check_same_shape(old: &Array, sampling: &Array, mask: &Array) -> Result<()> {
    let shape = old.shape().0;
    if shape.len() != 2 {
        return Err(Error::LossInputShape {
            input: "old_per_token_logps",
            shape,
            expected: "[B, T] (two dimensions)".into(),
        });
    }
    for (input, array) in [
        ("sampling_per_token_logps", sampling),
        ("completion_mask", mask),
    ] {
        let got = array.shape().0;
        if got != shape {
            return Err(Error::LossInputShape {
                input,
                shape: got,
                expected: format!("{shape:?}, the shape of old_per_token_logps"),
            });
        }
    }
    Ok(())
}

/// What TRL logs of the correction, accumulated over the micro-batches of
/// one process's generation batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingStats {
    diff_sum: f64,
    diff_count: usize,
    diff_max: f64,
    ratio_sum: f64,
    ratio_count: usize,
    ratio_min: f64,
    ratio_max: f64,
}

impl Default for SamplingStats {
    fn default() -> Self {
        Self {
            diff_sum: 0.0,
            diff_count: 0,
            diff_max: f64::NEG_INFINITY,
            ratio_sum: 0.0,
            ratio_count: 0,
            ratio_min: f64::INFINITY,
            ratio_max: f64::NEG_INFINITY,
        }
    }
}

impl SamplingStats {
    /// The statistics of one batch: `|old - sampling|` at the loss tokens
    /// whose difference is not NaN, and `ratio` (from
    /// [`RolloutCorrection::importance_sampling_ratio`] in `mode`): every
    /// row's `[B, 1]` ratio for the `sequence_*` modes, the `[B, T]` ratios
    /// at the loss tokens for the `token_*` modes. Reads the arrays back.
    pub fn of_batch(
        mode: ImportanceSamplingMode,
        old_logps: &Array,
        sampling_logps: &Array,
        mask: &Array,
        ratio: &Array,
    ) -> Result<Self> {
        check_same_shape(old_logps, sampling_logps, mask)?;
        let shape = old_logps.shape().0;
        let per_row = mode.is_sequence_level();
        let expected = if per_row {
            vec![shape[0], 1]
        } else {
            shape.clone()
        };
        if ratio.shape().0 != expected {
            return Err(Error::LossInputShape {
                input: "importance_sampling_ratio",
                shape: ratio.shape().0,
                expected: format!("{expected:?} for \"{mode}\" and a batch of {shape:?}"),
            });
        }
        let f32_of = |a: &Array| -> Result<Vec<f32>> {
            Ok(a.as_type(mlx_tensor::Dtype::F32)?.to_vec::<f32>()?)
        };
        let old = f32_of(old_logps)?;
        let sampling = f32_of(sampling_logps)?;
        let keep = f32_of(mask)?;
        let ratios = f32_of(ratio)?;
        let mut stats = Self::default();
        for (i, ((&o, &s), &m)) in old.iter().zip(&sampling).zip(&keep).enumerate() {
            if m == 0.0 {
                continue;
            }
            let diff = f64::from((o - s).abs());
            if !diff.is_nan() {
                stats.diff_sum += diff;
                stats.diff_count += 1;
                stats.diff_max = stats.diff_max.max(diff);
            }
            if let (false, Some(&r)) = (per_row, ratios.get(i)) {
                stats.push_ratio(f64::from(r));
            }
        }
        if per_row {
            for &r in &ratios {
                stats.push_ratio(f64::from(r));
            }
        }
        Ok(stats)
    }

    fn push_ratio(&mut self, r: f64) {
        self.ratio_sum += r;
        self.ratio_count += 1;
        self.ratio_min = self.ratio_min.min(r);
        self.ratio_max = self.ratio_max.max(r);
    }

    /// Adds another batch's statistics (of the same generation batch).
    pub fn merge(&mut self, other: &Self) {
        self.diff_sum += other.diff_sum;
        self.diff_count += other.diff_count;
        self.diff_max = self.diff_max.max(other.diff_max);
        self.ratio_sum += other.ratio_sum;
        self.ratio_count += other.ratio_count;
        self.ratio_min = self.ratio_min.min(other.ratio_min);
        self.ratio_max = self.ratio_max.max(other.ratio_max);
    }

    /// This process's values, in the order of [`SamplingStats::NAMES`]:
    /// each 0 when nothing was counted, as TRL reports an empty selection.
    pub fn values(&self) -> [f64; 5] {
        let mean = |sum: f64, n: usize| if n == 0 { 0.0 } else { sum / n as f64 };
        let or_zero = |v: f64, n: usize| if n == 0 { 0.0 } else { v };
        [
            mean(self.diff_sum, self.diff_count),
            or_zero(self.diff_max, self.diff_count),
            or_zero(self.ratio_min, self.ratio_count),
            mean(self.ratio_sum, self.ratio_count),
            or_zero(self.ratio_max, self.ratio_count),
        ]
    }

    /// The metric names of [`SamplingStats::values`].
    pub const NAMES: [&'static str; 5] = [
        sampling_names::LOGP_DIFFERENCE_MEAN,
        sampling_names::LOGP_DIFFERENCE_MAX,
        sampling_names::RATIO_MIN,
        sampling_names::RATIO_MEAN,
        sampling_names::RATIO_MAX,
    ];

    /// The metrics of a run, from every process's [`SamplingStats::values`]
    /// (one entry for a single process) as TRL gathers them: the mean of
    /// the processes' means, the largest maximum, the smallest minimum.
    pub fn metrics(per_process: &[[f64; 5]]) -> BTreeMap<String, f64> {
        let n = per_process.len().max(1) as f64;
        let column = |c: usize| per_process.iter().map(move |v| v[c]);
        let nan_fold = |c: usize, f: fn(f64, f64) -> f64, start: f64| {
            column(c).filter(|v| !v.is_nan()).fold(start, f)
        };
        let values = [
            column(0).sum::<f64>() / n,
            column(1).fold(f64::NEG_INFINITY, f64::max),
            nan_fold(2, f64::min, f64::INFINITY),
            {
                let finite: Vec<f64> = column(3).filter(|v| !v.is_nan()).collect();
                finite.iter().sum::<f64>() / finite.len().max(1) as f64
            },
            nan_fold(4, f64::max, f64::NEG_INFINITY),
        ];
        Self::NAMES
            .iter()
            .zip(values)
            .map(|(name, v)| (name.to_string(), v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_combine_as_trl_gathers_them() {
        // Process values: [diff mean, diff max, ratio min, ratio mean, ratio max].
        let a = [0.2, 0.5, 0.5, 1.0, 2.0];
        let b = [0.4, 0.3, 0.8, 1.5, 1.2];
        let m = SamplingStats::metrics(&[a, b]);
        let get = |name: &str| m[name];
        assert!((get(sampling_names::LOGP_DIFFERENCE_MEAN) - 0.3).abs() < 1e-12);
        assert_eq!(get(sampling_names::LOGP_DIFFERENCE_MAX), 0.5);
        assert_eq!(get(sampling_names::RATIO_MIN), 0.5);
        assert!((get(sampling_names::RATIO_MEAN) - 1.25).abs() < 1e-12);
        assert_eq!(get(sampling_names::RATIO_MAX), 2.0);
    }

    #[test]
    fn merged_batches_equal_one_batch() -> Result<()> {
        let mode = ImportanceSamplingMode::TokenTruncate;
        let c = RolloutCorrection {
            mode,
            clip_min: None,
            clip_max: Some(3.0),
        };
        let old = Array::from_slice(&[-1.0f32, -2.0, -0.5, -1.5], &[2, 2])?;
        let sampling = Array::from_slice(&[-1.5f32, -1.0, -0.25, -9.0], &[2, 2])?;
        let mask = Array::from_slice(&[1.0f32, 1.0, 1.0, 0.0], &[2, 2])?;
        let whole = {
            let r = c.importance_sampling_ratio(&old, &sampling, &mask)?;
            SamplingStats::of_batch(mode, &old, &sampling, &mask, &r)?
        };
        let mut merged = SamplingStats::default();
        for row in 0..2 {
            let pick = |a: &Array| a.slice(&[row, 0], &[row + 1, 2], &[1, 1]);
            let (o, s, m) = (pick(&old)?, pick(&sampling)?, pick(&mask)?);
            let r = c.importance_sampling_ratio(&o, &s, &m)?;
            merged.merge(&SamplingStats::of_batch(mode, &o, &s, &m, &r)?);
        }
        assert_eq!(merged.values(), whole.values());
        // |diffs| 0.5, 1.0, 0.25 over the three loss tokens; ratios e^0.5, e^-1, e^-0.25.
        let v = whole.values();
        assert!((v[0] - 1.75 / 3.0).abs() < 1e-7 && v[1] == 1.0, "{v:?}");
        let want = [0.5f64.exp(), (-1.0f64).exp(), (-0.25f64).exp()];
        assert!(
            (v[2] - want[1]).abs() < 1e-6 && (v[4] - want[0]).abs() < 1e-6,
            "{v:?}"
        );
        assert!(
            (v[3] - want.iter().sum::<f64>() / 3.0).abs() < 1e-6,
            "{v:?}"
        );
        Ok(())
    }
}
