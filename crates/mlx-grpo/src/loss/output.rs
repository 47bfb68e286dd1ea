//! [`LossOutput`]: the loss of one micro-batch, its metrics, and the packing
//! of both into the flat output list of a gradient transformation.

use mlx_tensor::Array;

use super::metrics::LossMetrics;
use crate::error::{Error, Result};

/// The entropy totals of one micro-batch that adaptive entropy control
/// accumulates over an optimiser step (no gradient).
#[derive(Debug, Clone)]
pub struct EntropyWindow {
    /// `sum(H * M)` over the tokens the bonus acts on.
    pub entropy_sum: Array,
    /// `sum(M)`, the number of those tokens.
    pub tokens: Array,
}

/// The result of [`GrpoLoss::compute`](super::GrpoLoss::compute).
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// The scalar loss to differentiate (already divided for gradient
    /// accumulation where TRL divides).
    pub loss: Array,
    /// TRL's metrics for this micro-batch, with no gradient.
    pub metrics: LossMetrics,
    /// Entropy totals for adaptive entropy control; present when
    /// `use_adaptive_entropy` is on.
    pub entropy_window: Option<EntropyWindow>,
}

/// How [`LossOutput::into_outputs`] laid a [`LossOutput`] out, so that
/// [`LossOutput::from_outputs`] can rebuild it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLayout {
    /// The metric names, in order.
    pub metric_names: Vec<&'static str>,
    /// Whether the two entropy-window arrays follow the metrics.
    pub entropy_window: bool,
}

impl OutputLayout {
    /// Number of arrays in the flat list (the loss included).
    pub fn len(&self) -> usize {
        1 + self.metric_names.len() + if self.entropy_window { 2 } else { 0 }
    }

    /// Always false: the list holds at least the loss.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl LossOutput {
    /// The layout of [`LossOutput::into_outputs`] for this output.
    pub fn layout(&self) -> OutputLayout {
        OutputLayout {
            metric_names: self.metrics.names(),
            entropy_window: self.entropy_window.is_some(),
        }
    }

    /// The flat list `[loss, metrics…, (entropy_sum, tokens)?]`: return it
    /// from the closure of `value_and_grad`, whose first output is the value
    /// differentiated and whose others come back as auxiliary values.
    pub fn into_outputs(self) -> Vec<Array> {
        let mut out = Vec::with_capacity(2 + self.metrics.len() + 2);
        out.push(self.loss);
        out.extend(self.metrics.arrays());
        if let Some(window) = self.entropy_window {
            out.push(window.entropy_sum);
            out.push(window.tokens);
        }
        out
    }

    /// Rebuilds an output from the list made by [`LossOutput::into_outputs`]
    /// with `layout`.
    pub fn from_outputs(layout: &OutputLayout, outputs: Vec<Array>) -> Result<Self> {
        if outputs.len() != layout.len() {
            return Err(Error::LossOutputLayout {
                message: format!("{} arrays for a layout of {}", outputs.len(), layout.len()),
            });
        }
        let mut iter = outputs.into_iter();
        let missing = || Error::LossOutputLayout {
            message: "list ended early".into(),
        };
        let loss = iter.next().ok_or_else(missing)?;
        let metric_arrays: Vec<Array> = iter.by_ref().take(layout.metric_names.len()).collect();
        let metrics =
            LossMetrics::from_parts(&layout.metric_names, metric_arrays).ok_or_else(missing)?;
        let entropy_window = if layout.entropy_window {
            let entropy_sum = iter.next().ok_or_else(missing)?;
            let tokens = iter.next().ok_or_else(missing)?;
            Some(EntropyWindow {
                entropy_sum,
                tokens,
            })
        } else {
            None
        };
        Ok(Self {
            loss,
            metrics,
            entropy_window,
        })
    }
}
