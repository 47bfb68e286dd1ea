//! Cross-entropy from logits.

use mlx_tensor::{Array, where_};

use super::{Reduction, apply_weights, reduce};
use crate::{Error, Result};

/// Settings of the cross-entropy loss (see [`CrossEntropy::loss`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropy {
    /// The class axis of the logits (default `-1`).
    pub axis: i32,
    /// Label smoothing in `[0, 1)` (default `0`).
    pub label_smoothing: f32,
    /// Integer targets equal to this value contribute nothing (their loss is
    /// zero and they do not count for [`Reduction::WeightedMean`]).
    pub ignore_index: Option<i64>,
    /// The reduction (default [`Reduction::Mean`]).
    pub reduction: Reduction,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        CrossEntropy {
            axis: -1,
            label_smoothing: 0.0,
            ignore_index: None,
            reduction: Reduction::Mean,
        }
    }
}

impl CrossEntropy {
    /// The default settings with `reduction`.
    pub fn new(reduction: Reduction) -> Self {
        CrossEntropy {
            reduction,
            ..Self::default()
        }
    }

    /// Sets the label smoothing.
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// Sets the ignored target value (e.g. `-100` or a padding id).
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = Some(ignore_index);
        self
    }

    /// Sets the class axis.
    pub fn axis(mut self, axis: i32) -> Self {
        self.axis = axis;
        self
    }

    /// The loss of `logits` against `targets`, optionally weighted.
    ///
    /// `targets` are class indices (an integer array shaped like `logits`
    /// without the class axis) or probabilities (shaped like `logits`).
    /// `weights` (or a boolean mask) has the shape of the unreduced loss.
    /// Per element: `logsumexp(z) - (1 - s)·z[t] - s·mean(z)` with `z` the
    /// logits shifted by their (gradient-free) maximum and `s` the label
    /// smoothing, as in `mlx.nn.losses.cross_entropy`.
    pub fn loss(&self, logits: &Array, targets: &Array, weights: Option<&Array>) -> Result<Array> {
        let s = self.label_smoothing;
        if !(0.0..1.0).contains(&s) {
            return Err(Error::Config(format!(
                "label smoothing must be in [0, 1), got {s}"
            )));
        }
        let ndim = logits.ndim() as i32;
        let axis = if self.axis < 0 {
            self.axis + ndim
        } else {
            self.axis
        };
        if !(0..ndim).contains(&axis) {
            return Err(Error::Config(format!(
                "axis {} is out of range for logits {}",
                self.axis,
                logits.describe()
            )));
        }
        let as_probs = targets.ndim() == logits.ndim();
        let mut expected = logits.shape().0;
        if !as_probs {
            expected.remove(axis as usize);
        }
        if targets.shape().0 != expected {
            return Err(Error::Config(format!(
                "cross_entropy: targets of shape {} do not match logits of shape {}",
                targets.shape(),
                logits.shape()
            )));
        }

        let mut mask = None;
        let z = logits.subtract(&logits.max(axis, true)?.stop_gradient()?)?;
        let score = if as_probs {
            z.multiply(targets)?.sum(axis, false)?
        } else {
            let indices = match self.ignore_index {
                Some(ignored) => {
                    let keep = targets.ne(&Array::scalar_int_as(ignored, targets.dtype())?)?;
                    let safe = where_(&keep, targets, &targets.zeros_like()?)?;
                    mask = Some(keep);
                    safe
                }
                None => targets.clone(),
            };
            z.take_along_axis(&indices.expand_dims(&[axis])?, axis)?
                .squeeze(&[axis])?
        };
        let lse = z.logsumexp(axis, false)?;
        let loss = if s > 0.0 {
            let smoothing = f64::from(s);
            let adjusted = score.mul_scalar(1.0 - smoothing)?;
            let smoothed = z.mean(axis, false)?.negative()?.mul_scalar(smoothing)?;
            lse.subtract(&adjusted)?.add(&smoothed)?
        } else {
            lse.subtract(&score)?
        };

        let combined = match (weights, mask) {
            (Some(w), Some(m)) => Some(w.multiply(&m)?),
            (Some(w), None) => Some(w.clone()),
            (None, Some(m)) => Some(m),
            (None, None) => None,
        };
        let loss = apply_weights(loss, combined.as_ref(), "cross_entropy")?;
        reduce(loss, self.reduction, combined.as_ref())
    }
}

/// Cross-entropy of `logits` against integer (or probability) `targets`
/// over the last axis, with `reduction` (see [`CrossEntropy`] for the options).
pub fn cross_entropy(logits: &Array, targets: &Array, reduction: Reduction) -> Result<Array> {
    CrossEntropy::new(reduction).loss(logits, targets, None)
}
