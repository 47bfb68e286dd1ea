//! Gradient clipping.

use mlx_tensor::{Array, Dtype};

use crate::module::ParamMap;
use crate::{Error, Result};

/// Scales `grads` so that their global L2 norm is at most `max_norm` and
/// returns them with the norm before clipping, as
/// `mlx.optimizers.clip_grad_norm`: the squared norms are summed in the
/// map's (sorted) order, `float16` gradients in `float32`, and the factor is
/// `min(max_norm / (norm + 1e-6), 1)`.
pub fn clip_grad_norm(grads: &ParamMap, max_norm: f64) -> Result<(ParamMap, Array)> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::Config(format!(
            "max_norm must be >= 0, got {max_norm}"
        )));
    }
    let mut total: Option<Array> = None;
    for g in grads.values() {
        let g = if g.dtype() == Dtype::F16 {
            g.as_type(Dtype::F32)?
        } else {
            g.clone()
        };
        let sq = g.square()?.sum(mlx_tensor::Axes::All, false)?;
        total = Some(match total {
            None => sq,
            Some(acc) => acc.add(&sq)?,
        });
    }
    let norm = match total {
        Some(t) => t.sqrt()?,
        None => Array::scalar(0.0f32)?,
    };
    let factor = norm
        .scalar_like(max_norm)?
        .divide(&norm.add_scalar(1e-6)?)?;
    let factor = factor.minimum(&factor.scalar_like(1.0)?)?;
    let mut out = ParamMap::new();
    for (name, g) in grads {
        let scaled = g.multiply(&factor)?;
        let scaled = if g.dtype().is_float() {
            scaled.as_type(g.dtype())?
        } else {
            scaled
        };
        out.insert(name.clone(), scaled);
    }
    Ok((out, norm))
}

/// Clamps every gradient element to `[-max_value, max_value]`.
pub fn clip_grad_value(grads: &ParamMap, max_value: f64) -> Result<ParamMap> {
    if max_value.is_nan() || max_value < 0.0 {
        return Err(Error::Config(format!(
            "max_value must be >= 0, got {max_value}"
        )));
    }
    grads
        .iter()
        .map(|(name, g)| Ok((name.clone(), g.clip(Some(-max_value), Some(max_value))?)))
        .collect()
}
