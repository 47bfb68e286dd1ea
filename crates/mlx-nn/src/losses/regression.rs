//! Regression losses.

use mlx_tensor::Array;

use super::{Reduction, check_same_shape, reduce};
use crate::Result;

/// Mean squared error: `(predictions - targets)²`, reduced.
pub fn mse(predictions: &Array, targets: &Array, reduction: Reduction) -> Result<Array> {
    check_same_shape("mse", predictions, targets)?;
    reduce(predictions.subtract(targets)?.square()?, reduction, None)
}

/// L1 loss: `|predictions - targets|`, reduced.
pub fn l1(predictions: &Array, targets: &Array, reduction: Reduction) -> Result<Array> {
    check_same_shape("l1", predictions, targets)?;
    reduce(predictions.subtract(targets)?.abs()?, reduction, None)
}
