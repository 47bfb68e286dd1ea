//! Adam and AdamW.

use mlx_tensor::{Array, Dtype};

use super::{ParamState, UpdateRule};
use crate::Result;

/// Adam as in `mlx.optimizers.Adam`:
/// `m ← β₁·m + (1 - β₁)·g`; `v ← β₂·v + (1 - β₂)·g²`;
/// `w ← w - lr·m / (√v + ε)`, or with bias correction
/// `w ← w - (lr / (1 - β₁ᵗ))·m / (√v / √(1 - β₂ᵗ) + ε)`.
/// MLX's default is *no* bias correction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    /// `(β₁, β₂)` (default `(0.9, 0.999)`).
    pub betas: (f64, f64),
    /// `ε` (default 1e-8).
    pub eps: f64,
    /// Whether to correct the moment estimates' bias (default false).
    pub bias_correction: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            betas: (0.9, 0.999),
            eps: 1e-8,
            bias_correction: false,
        }
    }
}

impl Adam {
    /// The moment update and the step of Adam, shared with AdamW.
    fn apply(
        &self,
        param: &Array,
        grad: &Array,
        state: &mut ParamState,
        lr: &Array,
        step: u64,
    ) -> Result<Array> {
        let (b1, b2) = self.betas;
        let m = state
            .get("m")?
            .mul_scalar(b1)?
            .add(&grad.mul_scalar(1.0 - b1)?)?;
        let v = state
            .get("v")?
            .mul_scalar(b2)?
            .add(&grad.square()?.mul_scalar(1.0 - b2)?)?;
        state.set("m", m.clone());
        state.set("v", v.clone());
        if self.bias_correction {
            let t = Array::scalar_as(step as f64, Dtype::F32)?;
            let one = Array::scalar_as(1.0, Dtype::F32)?;
            let pow1 = Array::scalar_as(b1, Dtype::F32)?.power(&t)?;
            let pow2 = Array::scalar_as(b2, Dtype::F32)?.power(&t)?;
            let c1 = lr.divide(&one.subtract(&pow1)?)?.as_type(grad.dtype())?;
            let c2 = one.subtract(&pow2)?.rsqrt()?.as_type(grad.dtype())?;
            let numerator = c1.multiply(&m)?;
            let denominator = v.sqrt()?.multiply(&c2)?.add_scalar(self.eps)?;
            Ok(param.subtract(&numerator.divide(&denominator)?)?)
        } else {
            let denominator = v.sqrt()?.add_scalar(self.eps)?;
            Ok(param.subtract(&lr.multiply(&m)?.divide(&denominator)?)?)
        }
    }
}

impl UpdateRule for Adam {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn init_state(&self, grad: &Array) -> Result<ParamState> {
        ParamState::zeros(&["m", "v"], grad)
    }

    fn update(
        &self,
        param: &Array,
        grad: &Array,
        state: &mut ParamState,
        lr: &Array,
        step: u64,
    ) -> Result<Array> {
        let lr = lr.as_type(grad.dtype())?;
        self.apply(param, grad, state, &lr, step)
    }
}

/// AdamW as in `mlx.optimizers.AdamW`: Adam applied to the decayed weight
/// `w·(1 - lr·wd)` (decoupled weight decay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    /// The Adam part.
    pub adam: Adam,
    /// Weight decay `wd` (MLX's default 0.01).
    pub weight_decay: f64,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            adam: Adam::default(),
            weight_decay: 0.01,
        }
    }
}

impl AdamW {
    /// AdamW with default betas and ε and weight decay `weight_decay`.
    pub fn new(weight_decay: f64) -> Self {
        AdamW {
            adam: Adam::default(),
            weight_decay,
        }
    }
}

impl UpdateRule for AdamW {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn init_state(&self, grad: &Array) -> Result<ParamState> {
        self.adam.init_state(grad)
    }

    fn update(
        &self,
        param: &Array,
        grad: &Array,
        state: &mut ParamState,
        lr: &Array,
        step: u64,
    ) -> Result<Array> {
        let lr = lr.as_type(grad.dtype())?;
        let factor = lr.mul_scalar(self.weight_decay)?;
        let decayed = param.multiply(&factor.scalar_like(1.0)?.subtract(&factor)?)?;
        self.adam.apply(&decayed, grad, state, &lr, step)
    }
}
