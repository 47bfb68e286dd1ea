//! Lion.

use mlx_tensor::Array;

use super::{ParamState, UpdateRule};
use crate::Result;

/// Lion as in `mlx.optimizers.Lion`:
/// `c = β₁·m + (1 - β₁)·g`; `m ← β₂·m + (1 - β₂)·g`;
/// `w ← (1 - lr·wd)·w - lr·sign(c)` (the decay only when `wd > 0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lion {
    /// `(β₁, β₂)` (default `(0.9, 0.99)`).
    pub betas: (f64, f64),
    /// Decoupled weight decay (default 0).
    pub weight_decay: f64,
}

impl Default for Lion {
    fn default() -> Self {
        Lion {
            betas: (0.9, 0.99),
            weight_decay: 0.0,
        }
    }
}

impl UpdateRule for Lion {
    fn name(&self) -> &'static str {
        "lion"
    }

    fn init_state(&self, grad: &Array) -> Result<ParamState> {
        ParamState::zeros(&["m"], grad)
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
        let (b1, b2) = self.betas;
        let m = state.get("m")?;
        let c = m.mul_scalar(b1)?.add(&grad.mul_scalar(1.0 - b1)?)?;
        let new_m = m.mul_scalar(b2)?.add(&grad.mul_scalar(1.0 - b2)?)?;
        state.set("m", new_m);
        let decayed = if self.weight_decay > 0.0 {
            let factor = lr.mul_scalar(self.weight_decay)?;
            factor
                .scalar_like(1.0)?
                .subtract(&factor)?
                .multiply(param)?
        } else {
            param.clone()
        };
        Ok(decayed.subtract(&lr.multiply(&c.sign()?)?)?)
    }
}
