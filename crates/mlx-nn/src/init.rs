//! Parameter initialisers, all drawing from explicit random keys.

use mlx_tensor::{Array, Dtype, random};

use crate::Result;

/// How to fill a new parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// A constant.
    Constant(f64),
    /// Normal with mean and standard deviation.
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
    /// Normal truncated to two standard deviations.
    TruncatedNormal {
        /// Standard deviation.
        std: f32,
    },
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// Glorot (Xavier) uniform: `U(±sqrt(6 / (fan_in + fan_out)))`.
    GlorotUniform,
    /// Glorot (Xavier) normal: `N(0, 2 / (fan_in + fan_out))`.
    GlorotNormal,
    /// He (Kaiming) uniform for ReLU nets: `U(±sqrt(6 / fan_in))`.
    HeUniform,
    /// He (Kaiming) normal: `N(0, 2 / fan_in)`.
    HeNormal,
}

/// `(fan_in, fan_out)` of a weight shaped like a Linear's `[out, in]`.
pub fn fans(shape: &[i32]) -> (f64, f64) {
    match shape {
        [] => (1.0, 1.0),
        [n] => (f64::from(*n), f64::from(*n)),
        [out, inp, rest @ ..] => {
            let receptive: f64 = rest.iter().map(|&d| f64::from(d)).product();
            (f64::from(*inp) * receptive, f64::from(*out) * receptive)
        }
    }
}

impl Init {
    /// Draws a parameter of `shape` and `dtype` with `key`.
    pub fn sample(self, shape: &[i32], dtype: Dtype, key: &Array) -> Result<Array> {
        // MLX's random generators have no f64 kernels: draw in f32 and widen.
        if dtype == Dtype::F64 && !matches!(self, Init::Zeros | Init::Ones | Init::Constant(_)) {
            return Ok(self.sample(shape, Dtype::F32, key)?.as_type(Dtype::F64)?);
        }
        let (fan_in, fan_out) = fans(shape);
        let out = match self {
            Init::Zeros => Array::zeros(shape, dtype)?,
            Init::Ones => Array::ones(shape, dtype)?,
            Init::Constant(v) => Array::full(shape, v, dtype)?,
            Init::Normal { mean, std } => random::normal(shape, dtype, mean, std, Some(key))?,
            Init::TruncatedNormal { std } => {
                random::truncated_normal(-2.0, 2.0, shape, Dtype::F32, Some(key))?
                    .mul_scalar(f64::from(std))?
                    .as_type(dtype)?
            }
            Init::Uniform { low, high } => random::uniform(low, high, shape, dtype, Some(key))?,
            Init::GlorotUniform => {
                let limit = (6.0 / (fan_in + fan_out)).sqrt();
                random::uniform(-limit, limit, shape, dtype, Some(key))?
            }
            Init::GlorotNormal => {
                let std = (2.0 / (fan_in + fan_out)).sqrt() as f32;
                random::normal(shape, dtype, 0.0, std, Some(key))?
            }
            Init::HeUniform => {
                let limit = (6.0 / fan_in).sqrt();
                random::uniform(-limit, limit, shape, dtype, Some(key))?
            }
            Init::HeNormal => {
                let std = (2.0 / fan_in).sqrt() as f32;
                random::normal(shape, dtype, 0.0, std, Some(key))?
            }
        };
        Ok(out)
    }
}
