//! Group-relative advantages and the reward metrics, with TRL 1.16's
//! semantics (`GRPOTrainer._generate_and_score_completions`).
//!
//! Input: the [`RewardMatrix`] of one generation batch, `[B, F]` with the B
//! completions ordered by prompt group (`G = num_generations` consecutive
//! completions per prompt), and one weight per function. NaN rewards mean
//! "not applicable" and are skipped by every sum, mean and standard deviation
//! (`nansum`, `nanmean`, `nanstd`). Standard deviations are Bessel-corrected
//! and NaN when fewer than two values are present.
//!
//! `sum_then_normalize` (default): `r = nansum_f(w_f * x_f)`; `A = r -
//! nanmean_group(r)`, divided by `std + 1e-4` where `std` is the group's
//! (`scale_rewards = group`) or the batch's (`batch`) standard deviation of
//! `r`, and not divided for `none`.
//!
//! `normalize_then_sum` (GDPO): each function is z-scored within each group,
//! `z_f = (x_f - mean) / (std + 1e-4)`; `r = nansum_f(w_f * z_f)`; then
//! `A = (r - nanmean_batch(r)) / (std_batch(r) + 1e-4)`, whatever
//! `scale_rewards` says (as in TRL).
//!
//! In both, a completion for which every function returned NaN is
//! *unscorable*: its `r` is NaN, so it is left out of the group and batch
//! statistics, and its advantage is 0. Any other NaN advantage (for instance a
//! group with a single scorable completion, whose standard deviation is NaN)
//! is also set to 0. Computation is in f64; results are rounded to f32.

use std::collections::BTreeMap;

use crate::config::{GrpoConfig, MultiObjectiveAggregation, ScaleRewards};
use crate::error::{Error, Result};
use crate::rewards::RewardMatrix;

/// TRL's `1e-4` added to standard deviations before dividing.
pub const STD_EPSILON: f64 = 1e-4;

/// The settings that shape advantages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvantageSettings {
    /// Completions per prompt (the group size G), at least 1.
    pub num_generations: usize,
    /// Reward scaling (used by `sum_then_normalize` only).
    pub scale_rewards: ScaleRewards,
    /// How the reward functions are combined.
    pub aggregation: MultiObjectiveAggregation,
}

impl AdvantageSettings {
    /// The settings of a training config.
    pub fn from_config(cfg: &GrpoConfig) -> Self {
        Self {
            num_generations: cfg.num_generations,
            scale_rewards: cfg.scale_rewards,
            aggregation: cfg.multi_objective_aggregation,
        }
    }
}

/// Mean and standard deviation of one reward function over the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionMetrics {
    /// The function's name.
    pub name: String,
    /// `nanmean` of its rewards (NaN when it returned only NaN).
    pub mean: f64,
    /// `nanstd` of its rewards.
    pub std: f64,
}

/// The reward metrics TRL logs for a generation batch.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardMetrics {
    /// `reward`: mean of the weighted reward sum over scorable completions.
    pub reward: f64,
    /// `reward_std`: its standard deviation.
    pub reward_std: f64,
    /// `frac_reward_zero_std`: fraction of completions whose scaling standard
    /// deviation (group, or batch for `scale_rewards = batch` and
    /// `normalize_then_sum`) is zero (`|std| <= 1e-8`).
    pub frac_reward_zero_std: f64,
    /// `rewards/<name>/mean` and `rewards/<name>/std`, per function.
    pub per_function: Vec<FunctionMetrics>,
}

impl RewardMetrics {
    /// The metrics under TRL's names.
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        let mut map = BTreeMap::new();
        map.insert("reward".to_string(), self.reward);
        map.insert("reward_std".to_string(), self.reward_std);
        map.insert(
            "frac_reward_zero_std".to_string(),
            self.frac_reward_zero_std,
        );
        for f in &self.per_function {
            map.insert(format!("rewards/{}/mean", f.name), f.mean);
            map.insert(format!("rewards/{}/std", f.name), f.std);
        }
        map
    }
}

/// Advantages of a generation batch and what goes with them.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    /// One advantage per completion; never NaN.
    pub advantages: Vec<f32>,
    /// The weighted reward sum per completion (NaN for unscorable ones).
    pub rewards: Vec<f32>,
    /// Completions for which every reward function returned NaN (TRL logs a
    /// warning for these); their advantage is 0.
    pub unscorable: Vec<usize>,
    /// The logged metrics.
    pub metrics: RewardMetrics,
}

/// Computes advantages and reward metrics.
///
/// Fails when the weights do not match the functions or are not finite, when
/// the number of completions is 0 or not a multiple of `num_generations`, and
/// when no completion at all could be scored (every function returned NaN
/// everywhere; TRL would train on all-zero advantages).
pub fn compute_advantages(
    rewards: &RewardMatrix,
    weights: &[f32],
    settings: &AdvantageSettings,
) -> Result<Advantages> {
    check_shapes(rewards, weights, settings)?;
    let b = rewards.num_samples();
    let f = rewards.num_functions();
    let g = settings.num_generations;
    let x: Vec<f64> = rewards.values().iter().map(|&v| f64::from(v)).collect();
    let w: Vec<f64> = weights.iter().map(|&v| f64::from(v)).collect();
    let unscorable = rewards.unscorable_samples();
    if unscorable.len() == b {
        return Err(Error::NoScorableCompletions { completions: b });
    }

    // The logged reward: weighted nansum, NaN for unscorable rows.
    let mut logged = weighted_nansum(&x, &w, f);
    for &i in &unscorable {
        logged[i] = f64::NAN;
    }

    let (raw_advantages, scale_std) = match settings.aggregation {
        MultiObjectiveAggregation::SumThenNormalize => {
            sum_then_normalize(&logged, g, settings.scale_rewards)
        }
        MultiObjectiveAggregation::NormalizeThenSum => {
            let mut summed = weighted_nansum(&normalize_per_function(&x, f, g), &w, f);
            for &i in &unscorable {
                summed[i] = f64::NAN;
            }
            let std = if b > 1 { nanstd(&summed) } else { 0.0 };
            let mean = nanmean(&summed);
            (
                summed
                    .iter()
                    .map(|r| (r - mean) / (std + STD_EPSILON))
                    .collect(),
                vec![std; b],
            )
        }
    };

    let advantages = raw_advantages
        .iter()
        .map(|&a| if a.is_nan() { 0.0 } else { a as f32 })
        .collect();
    let zero_std = scale_std.iter().filter(|s| s.abs() <= 1e-8).count();
    let per_function = (0..f)
        .map(|j| {
            let column: Vec<f64> = x.iter().skip(j).step_by(f).copied().collect();
            FunctionMetrics {
                name: rewards.names()[j].clone(),
                mean: nanmean(&column),
                std: nanstd(&column),
            }
        })
        .collect();
    let metrics = RewardMetrics {
        reward: nanmean(&logged),
        reward_std: nanstd(&logged),
        frac_reward_zero_std: zero_std as f64 / b as f64,
        per_function,
    };
    Ok(Advantages {
        advantages,
        rewards: logged.iter().map(|&r| r as f32).collect(),
        unscorable,
        metrics,
    })
}

fn check_shapes(
    rewards: &RewardMatrix,
    weights: &[f32],
    settings: &AdvantageSettings,
) -> Result<()> {
    let (b, f, g) = (
        rewards.num_samples(),
        rewards.num_functions(),
        settings.num_generations,
    );
    if weights.len() != f {
        return Err(Error::RewardWeightCount {
            weights: weights.len(),
            functions: f,
        });
    }
    if let Some((j, w)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite()) {
        return Err(Error::InvalidRewardParams {
            name: rewards.names()[j].clone(),
            message: format!("weight {w} is not finite"),
        });
    }
    let problem = if f == 0 {
        Some("no reward functions".to_string())
    } else if g == 0 {
        Some("num_generations is 0".to_string())
    } else if b == 0 || !b.is_multiple_of(g) {
        Some(format!(
            "{b} completions do not form whole groups of num_generations = {g}"
        ))
    } else {
        None
    };
    match problem {
        Some(message) => Err(Error::RewardShape { message }),
        None => Ok(()),
    }
}

/// `A = r - group mean`, scaled by the group or batch std; also returns the
/// std used for the zero-std metric (the group std for `none`).
fn sum_then_normalize(r: &[f64], g: usize, scale: ScaleRewards) -> (Vec<f64>, Vec<f64>) {
    let b = r.len();
    let group_mean: Vec<f64> = r
        .chunks_exact(g)
        .flat_map(|grp| std::iter::repeat_n(nanmean(grp), g))
        .collect();
    let std: Vec<f64> = match scale {
        ScaleRewards::Group | ScaleRewards::None if g > 1 => r
            .chunks_exact(g)
            .flat_map(|grp| std::iter::repeat_n(nanstd(grp), g))
            .collect(),
        ScaleRewards::Batch if b > 1 => vec![nanstd(r); b],
        _ => vec![0.0; b],
    };
    let advantages = r
        .iter()
        .zip(&group_mean)
        .zip(&std)
        .map(|((ri, mi), si)| {
            let centred = ri - mi;
            if scale == ScaleRewards::None {
                centred
            } else {
                centred / (si + STD_EPSILON)
            }
        })
        .collect();
    (advantages, std)
}

/// Each function's rewards z-scored within each group (row-major `[B, F]`).
fn normalize_per_function(x: &[f64], f: usize, g: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    for (group_index, group) in x.chunks_exact(g * f).enumerate() {
        for j in 0..f {
            let column: Vec<f64> = group.iter().skip(j).step_by(f).copied().collect();
            let mean = nanmean(&column);
            let std = if g > 1 { nanstd(&column) } else { 0.0 };
            for (k, v) in column.iter().enumerate() {
                out[(group_index * g + k) * f + j] = (v - mean) / (std + STD_EPSILON);
            }
        }
    }
    out
}

/// Row sums of `w_f * x_f` over non-NaN terms (0 for an all-NaN row).
pub(crate) fn weighted_nansum(x: &[f64], w: &[f64], f: usize) -> Vec<f64> {
    x.chunks_exact(f)
        .map(|row| {
            row.iter()
                .zip(w)
                .map(|(v, wj)| v * wj)
                .filter(|p| !p.is_nan())
                .sum()
        })
        .collect()
}

/// Mean of the non-NaN values; NaN when there are none.
pub fn nanmean(values: &[f64]) -> f64 {
    let (sum, n) = values
        .iter()
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Bessel-corrected standard deviation of the non-NaN values; NaN when fewer
/// than two (TRL's `nanstd`).
pub fn nanstd(values: &[f64]) -> f64 {
    let mean = nanmean(values);
    let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    let n = present.len();
    if n < 2 {
        return f64::NAN;
    }
    let variance = present.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    (variance * n as f64 / (n - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(columns: &[Vec<f32>]) -> Result<RewardMatrix> {
        let names = (0..columns.len()).map(|j| format!("f{j}")).collect();
        RewardMatrix::from_columns(names, columns)
    }

    fn settings(
        g: usize,
        scale: ScaleRewards,
        aggregation: MultiObjectiveAggregation,
    ) -> AdvantageSettings {
        AdvantageSettings {
            num_generations: g,
            scale_rewards: scale,
            aggregation,
        }
    }

    const SUM: MultiObjectiveAggregation = MultiObjectiveAggregation::SumThenNormalize;

    #[test]
    fn group_scaling_by_hand() -> std::result::Result<(), Box<dyn std::error::Error>> {
        // One group [0, 1, 2, 3]: mean 1.5, Bessel std sqrt(5/3).
        let out = compute_advantages(
            &matrix(&[vec![0.0, 1.0, 2.0, 3.0]])?,
            &[1.0],
            &settings(4, ScaleRewards::Group, SUM),
        )?;
        let std = (5.0f64 / 3.0).sqrt();
        for (a, r) in out.advantages.iter().zip([0.0, 1.0, 2.0, 3.0]) {
            assert!((f64::from(*a) - (r - 1.5) / (std + 1e-4)).abs() < 1e-6);
        }
        assert_eq!(out.metrics.frac_reward_zero_std, 0.0);
        assert!((out.metrics.reward - 1.5).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn unscaled_and_zero_std_groups() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let m = matrix(&[vec![1.0, 1.0, 0.0, 2.0]])?;
        let out = compute_advantages(&m, &[2.0], &settings(2, ScaleRewards::None, SUM))?;
        assert_eq!(out.advantages, vec![0.0, 0.0, -2.0, 2.0]);
        assert_eq!(out.metrics.frac_reward_zero_std, 0.5);
        assert_eq!(out.rewards, vec![2.0, 2.0, 0.0, 4.0]);
        Ok(())
    }

    #[test]
    fn nan_rows_are_unscorable() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let m = matrix(&[
            vec![1.0, f32::NAN, 0.0, 1.0],
            vec![f32::NAN, f32::NAN, 1.0, f32::NAN],
        ])?;
        let out = compute_advantages(&m, &[1.0, 1.0], &settings(2, ScaleRewards::Group, SUM))?;
        assert_eq!(out.unscorable, vec![1]);
        // Group 0 has one scorable value: std is NaN, so both advantages are 0.
        assert_eq!(out.advantages[..2], [0.0, 0.0]);
        assert!(out.rewards[1].is_nan());
        assert_eq!(out.metrics.per_function[1].mean, 1.0);
        assert!(out.metrics.per_function[1].std.is_nan());
        let map = out.metrics.to_map();
        assert!(map.contains_key("rewards/f1/std") && map.contains_key("reward_std"));
        Ok(())
    }

    #[test]
    fn all_nan_is_an_error() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let m = matrix(&[vec![f32::NAN; 4]])?;
        let err =
            compute_advantages(&m, &[1.0], &settings(2, ScaleRewards::Group, SUM)).unwrap_err();
        assert!(matches!(
            err,
            Error::NoScorableCompletions { completions: 4 }
        ));
        Ok(())
    }

    #[test]
    fn shape_errors() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let m = matrix(&[vec![1.0, 2.0, 3.0]])?;
        assert!(matches!(
            compute_advantages(&m, &[1.0], &settings(2, ScaleRewards::Group, SUM)),
            Err(Error::RewardShape { .. })
        ));
        assert!(matches!(
            compute_advantages(&m, &[1.0, 1.0], &settings(3, ScaleRewards::Group, SUM)),
            Err(Error::RewardWeightCount {
                weights: 2,
                functions: 1
            })
        ));
        assert!(
            compute_advantages(&m, &[f32::NAN], &settings(3, ScaleRewards::Group, SUM)).is_err()
        );
        Ok(())
    }

    #[test]
    fn nan_statistics() {
        assert!(nanmean(&[f64::NAN]).is_nan());
        assert!(nanstd(&[1.0, f64::NAN]).is_nan());
        assert!((nanstd(&[1.0, 3.0, f64::NAN]) - 2f64.sqrt()).abs() < 1e-12);
    }
}
