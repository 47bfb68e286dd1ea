//! RMSprop.

use mlx_tensor::Array;

use super::{ParamState, UpdateRule};
use crate::Result;

/// RMSprop as in `mlx.optimizers.RMSprop`:
/// `v ← α·v + (1 - α)·g²`; `w ← w - lr·g / (√v + ε)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsProp {
    /// Smoothing constant `α` (default 0.99).
    pub alpha: f64,
    /// `ε` added to the denominator (default 1e-8).
    pub eps: f64,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            alpha: 0.99,
            eps: 1e-8,
        }
    }
}

impl UpdateRule for RmsProp {
    fn name(&self) -> &'static str {
        "rmsprop"
    }

    fn init_state(&self, grad: &Array) -> Result<ParamState> {
        ParamState::zeros(&["v"], grad)
    }

    fn update(
        &self,
        param: &Array,
        grad: &Array,
        state: &mut ParamState,
        lr: &Array,
        _step: u64,
    ) -> Result<Array> {
        let lr = lr.as_type(grad.dtype())?;
        let v = state
            .get("v")?
            .mul_scalar(self.alpha)?
            .add(&grad.square()?.mul_scalar(1.0 - self.alpha)?)?;
        let denom = v.sqrt()?.add_scalar(self.eps)?;
        state.set("v", v);
        Ok(param.subtract(&lr.multiply(grad)?.divide(&denom)?)?)
    }
}
