//! The metrics one loss call logs, under TRL's names, as device scalars with
//! no gradient; [`LossMetrics::to_map`] reads them back.

use std::collections::BTreeMap;

use mlx_tensor::{Array, Axes, where_};

use crate::error::Result;

/// TRL's metric names.
pub mod names {
    /// Mean KL to the reference model over valid tokens (`beta != 0`).
    pub const KL: &str = "kl";
    /// Mean entropy over valid tokens.
    pub const ENTROPY: &str = "entropy";
    /// Fraction of valid tokens clipped below (`w < 1 - eps`, `A < 0`).
    pub const CLIP_LOW_MEAN: &str = "clip_ratio/low_mean";
    /// Smallest per-sequence fraction clipped below.
    pub const CLIP_LOW_MIN: &str = "clip_ratio/low_min";
    /// Fraction of valid tokens clipped above (`w > 1 + eps_high`, `A > 0`).
    pub const CLIP_HIGH_MEAN: &str = "clip_ratio/high_mean";
    /// Largest per-sequence fraction clipped above.
    pub const CLIP_HIGH_MAX: &str = "clip_ratio/high_max";
    /// Fraction of valid tokens clipped either way.
    pub const CLIP_REGION_MEAN: &str = "clip_ratio/region_mean";
    /// Fraction of valid tokens whose CISPO weight is capped (`A > 0`).
    pub const CISPO_CLIP_RATIO: &str = "cispo_clip_ratio";
    /// Mean VESPO gamma weight over sequences.
    pub const VESPO_PHI_SEQ_MEAN: &str = "vespo/phi_seq_mean";
    /// The loss before the entropy bonus (and before the accumulation divisor).
    pub const POLICY_LOSS: &str = "policy_loss";
    /// The entropy coefficient applied to this micro-batch. TRL logs the
    /// controller's current coefficient at optimiser-step boundaries instead;
    /// the two differ only under adaptive control, where the trainer should
    /// log [`EntropyControl::coef`](crate::loss::EntropyControl::coef).
    pub const ENTROPY_COEF: &str = "entropy_coef";
}

/// Named scalar metrics of one loss call, in TRL's logging order. Every value
/// is a 0-d array with no gradient; nothing is evaluated until
/// [`LossMetrics::to_map`] (or an `eval` of [`LossMetrics::arrays`]).
#[derive(Debug, Clone, Default)]
pub struct LossMetrics {
    entries: Vec<(&'static str, Array)>,
}

impl LossMetrics {
    /// No metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a metric (its gradient is stopped).
    pub fn push(&mut self, name: &'static str, value: &Array) -> Result<()> {
        self.entries.push((name, value.stop_gradient()?));
        Ok(())
    }

    /// The metric names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|(name, _)| *name).collect()
    }

    /// The metric arrays (cheap handle copies), in the order of [`LossMetrics::names`].
    pub fn arrays(&self) -> Vec<Array> {
        self.entries
            .iter()
            .map(|(_, value)| value.clone())
            .collect()
    }

    /// The metric called `name`, if logged.
    pub fn get(&self, name: &str) -> Option<&Array> {
        self.entries
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// Number of metrics.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no metrics.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Rebuilds metrics from names and arrays (e.g. the auxiliary outputs of a
    /// gradient transformation). The lengths must match.
    pub fn from_parts(names: &[&'static str], arrays: Vec<Array>) -> Option<Self> {
        (names.len() == arrays.len()).then(|| Self {
            entries: names.iter().copied().zip(arrays).collect(),
        })
    }

    /// Evaluates every metric at once and returns `name -> value` (NaN where
    /// TRL logs NaN, e.g. `clip_ratio/low_min` when every sequence is empty).
    pub fn to_map(&self) -> Result<BTreeMap<String, f64>> {
        let arrays: Vec<&Array> = self.entries.iter().map(|(_, v)| v).collect();
        if !arrays.is_empty() {
            mlx_tensor::eval(&arrays)?;
        }
        let mut map = BTreeMap::new();
        for (name, value) in &self.entries {
            map.insert((*name).to_string(), f64::from(value.item::<f32>()?));
        }
        Ok(map)
    }
}

/// TRL's `global_masked_mean` on one process: for a `[B, T]` array,
/// `sum(x m) / max(sum(m), 1)`; for a `[B, 1]` array (one value per
/// sequence), `sum(x) / max(B, 1)`. As in TRL, the choice is made on the
/// second dimension being 1, so a `[B, 1]` completion batch (`T = 1`) is
/// averaged over sequences too.
pub fn global_masked_mean(x: &Array, mask: &Array) -> Result<Array> {
    let x = x.stop_gradient()?;
    let (total, count) = if x.dim(1) == Some(1) {
        let rows = f64::from(x.axis_size(0)?);
        (x.sum(Axes::All, false)?, Array::scalar_as(rows, x.dtype())?)
    } else {
        (
            x.multiply(mask)?.sum(Axes::All, false)?,
            mask.sum(Axes::All, false)?,
        )
    };
    Ok(total.divide(&count.clip(Some(1.0), None)?)?)
}

/// TRL's `masked_seq_mean`: the per-sequence mean over valid tokens, `[B]`,
/// NaN for empty sequences (no clamp); a `[B, 1]` array is returned squeezed.
pub fn masked_seq_mean(x: &Array, mask: &Array) -> Result<Array> {
    let x = x.stop_gradient()?;
    if x.dim(1) == Some(1) {
        return Ok(x.squeeze(&[1])?);
    }
    Ok(x.multiply(mask)?
        .sum(-1, false)?
        .divide(&mask.sum(-1, false)?)?)
}

/// The minimum over all entries ignoring NaNs; NaN if all are NaN.
pub fn nanmin(x: &Array) -> Result<Array> {
    nan_reduce(x, f64::INFINITY, |v| v.min(Axes::All, false))
}

/// The maximum over all entries ignoring NaNs; NaN if all are NaN.
pub fn nanmax(x: &Array) -> Result<Array> {
    nan_reduce(x, f64::NEG_INFINITY, |v| v.max(Axes::All, false))
}

fn nan_reduce(
    x: &Array,
    neutral: f64,
    reduce: impl Fn(&Array) -> mlx_tensor::Result<Array>,
) -> Result<Array> {
    let nan = x.is_nan()?;
    let filled = where_(&nan, &x.scalar_like(neutral)?, x)?;
    let value = reduce(&filled)?;
    let all_nan = nan.all(Axes::All, false)?;
    Ok(where_(&all_nan, &x.scalar_like(f64::NAN)?, &value)?)
}
