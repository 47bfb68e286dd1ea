//! Stochastic gradient descent with momentum, dampening, Nesterov momentum
//! and (coupled, L2) weight decay.

use mlx_tensor::Array;

use super::{ParamState, UpdateRule};
use crate::{Error, Result};

/// SGD as in `mlx.optimizers.SGD`:
/// `g ← g + wd·w`; `v ← μ·v + (1 - τ)·g`; `w ← w - lr·(g + μ·v if Nesterov else v)`
/// (plain `w ← w - lr·g` when `μ = 0`). The velocity starts at zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// Momentum `μ` (default 0).
    pub momentum: f64,
    /// L2 weight decay added to the gradient (default 0).
    pub weight_decay: f64,
    /// Dampening `τ` of the momentum (default 0).
    pub dampening: f64,
    /// Nesterov momentum (needs `μ > 0` and `τ = 0`).
    pub nesterov: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
            dampening: 0.0,
            nesterov: false,
        }
    }
}

impl Sgd {
    /// SGD with momentum `momentum` and no weight decay.
    pub fn new(momentum: f64) -> Self {
        Sgd {
            momentum,
            ..Sgd::default()
        }
    }

    /// Checks the combination of settings.
    pub fn validate(&self) -> Result<()> {
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::Config(
                "Nesterov momentum needs a positive momentum and zero dampening".into(),
            ));
        }
        Ok(())
    }
}

impl UpdateRule for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
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
        self.validate()?;
        let g = if self.weight_decay != 0.0 {
            grad.add(&param.mul_scalar(self.weight_decay)?)?
        } else {
            grad.clone()
        };
        let lr = lr.as_type(g.dtype())?;
        if self.momentum <= 0.0 {
            return Ok(param.subtract(&lr.multiply(&g)?)?);
        }
        let mut v = state.get("v")?.mul_scalar(self.momentum)?;
        v = if self.dampening > 0.0 {
            v.add(&g.mul_scalar(1.0 - self.dampening)?)?
        } else {
            v.add(&g)?
        };
        let step = if self.nesterov {
            g.add(&v.mul_scalar(self.momentum)?)?
        } else {
            v.clone()
        };
        state.set("v", v);
        Ok(param.subtract(&lr.multiply(&step)?)?)
    }
}
