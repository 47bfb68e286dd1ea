//! Dropout with an explicit train/eval mode and explicit random keys.

use mlx_tensor::{Array, random};

use crate::{Error, Result};

/// Zeroes each element with probability `p` in training mode and scales the
/// survivors by `1 / (1 - p)`; the identity in evaluation mode.
///
/// Dropout has no parameters. The random mask is drawn from a key the caller
/// passes, so a training step is reproducible (split one key per step and
/// per dropout site with [`random::split`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    p: f32,
    training: bool,
}

impl Dropout {
    /// A dropout layer in training mode. `p` must lie in `[0, 1)`.
    pub fn new(p: f32) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::Config(format!(
                "dropout probability {p} is not in [0, 1)"
            )));
        }
        Ok(Dropout { p, training: true })
    }

    /// The probability of zeroing an element.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// Whether the layer is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Switches between training (`true`) and evaluation (`false`) mode.
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    /// The same layer in training mode.
    pub fn train(mut self) -> Self {
        self.training = true;
        self
    }

    /// The same layer in evaluation mode.
    pub fn eval(mut self) -> Self {
        self.training = false;
        self
    }

    /// Applies dropout, drawing the mask with `key` (`None`: the thread's
    /// global key sequence, not reproducible across threads).
    pub fn forward_with_key(&self, x: &Array, key: Option<&Array>) -> Result<Array> {
        if !self.training || self.p == 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - f64::from(self.p);
        let keep_prob = Array::scalar_as(keep, mlx_tensor::Dtype::F32)?;
        let mask = random::bernoulli(&keep_prob, &x.shape(), key)?;
        let kept = mask.as_type(x.dtype())?.multiply(x)?;
        Ok(kept.mul_scalar(1.0 / keep)?)
    }

    /// Applies dropout with `key`.
    pub fn forward(&self, x: &Array, key: &Array) -> Result<Array> {
        self.forward_with_key(x, Some(key))
    }
}
