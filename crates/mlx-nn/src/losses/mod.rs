//! Loss functions with the semantics of `mlx.nn.losses`.
//!
//! Every loss takes a [`Reduction`]. `Mean` and `Sum` reduce over all
//! elements like MLX; [`Reduction::WeightedMean`] divides the weighted sum by
//! the sum of the weights, which is what a mask or an ignored index needs
//! (the mean over the tokens that count).

mod classification;
mod cross_entropy;
mod regression;

pub use classification::{binary_cross_entropy, binary_cross_entropy_with_logits, kl_div, nll};
pub use cross_entropy::{CrossEntropy, cross_entropy};
pub use regression::{l1, mse};

use mlx_tensor::{Array, Axes};

use crate::{Error, Result};

/// How a per-element loss is reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// No reduction: the per-element losses.
    None,
    /// The mean over all elements (ignored or masked ones count as zeros).
    #[default]
    Mean,
    /// The sum over all elements.
    Sum,
    /// `sum(loss · w) / sum(w)` with the weights (or mask) given to the loss;
    /// the same as `Mean` without weights.
    WeightedMean,
}

/// Applies `reduction` to an already weighted loss; `weights` is the weight
/// array used (for [`Reduction::WeightedMean`]).
pub(crate) fn reduce(loss: Array, reduction: Reduction, weights: Option<&Array>) -> Result<Array> {
    Ok(match reduction {
        Reduction::None => loss,
        Reduction::Mean => loss.mean(Axes::All, false)?,
        Reduction::Sum => loss.sum(Axes::All, false)?,
        Reduction::WeightedMean => match weights {
            None => loss.mean(Axes::All, false)?,
            Some(w) => {
                let total = loss.sum(Axes::All, false)?;
                let count = w.as_type(loss.dtype())?.sum(Axes::All, false)?;
                total.divide(&count)?
            }
        },
    })
}

/// Multiplies `loss` by `weights` after checking the shapes agree (as MLX does).
pub(crate) fn apply_weights(loss: Array, weights: Option<&Array>, what: &str) -> Result<Array> {
    match weights {
        None => Ok(loss),
        Some(w) => {
            if w.shape() != loss.shape() {
                return Err(Error::Config(format!(
                    "{what}: weights of shape {} do not match the loss of shape {}",
                    w.shape(),
                    loss.shape()
                )));
            }
            Ok(loss.multiply(w)?)
        }
    }
}

pub(crate) fn check_same_shape(what: &str, a: &Array, b: &Array) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::Config(format!(
            "{what}: inputs of shape {} do not match targets of shape {}",
            a.shape(),
            b.shape()
        )));
    }
    Ok(())
}
