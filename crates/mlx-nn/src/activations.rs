//! Activation functions, as plain functions and as unit-struct layers.
//!
//! The formulas are those of `mlx.nn`: `gelu` is the exact
//! `x · (1 + erf(x/√2)) / 2`, `gelu_approx` the tanh approximation,
//! `log_softmax` shifts by the (gradient-free) maximum before subtracting the
//! log-sum-exp.

use mlx_tensor::Array;

use crate::Result;
use crate::layers::Forward;

/// `x · sigmoid(x)` (SiLU, also called swish).
pub fn silu(x: &Array) -> Result<Array> {
    Ok(x.multiply(&x.sigmoid()?)?)
}

/// Exact GELU: `x · (1 + erf(x / √2)) / 2`.
pub fn gelu(x: &Array) -> Result<Array> {
    let inner = x
        .div_scalar(std::f64::consts::SQRT_2)?
        .erf()?
        .add_scalar(1.0)?;
    Ok(x.multiply(&inner)?.div_scalar(2.0)?)
}

/// Tanh approximation of GELU:
/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
pub fn gelu_approx(x: &Array) -> Result<Array> {
    let cube = x.pow_scalar(3.0)?;
    let inner = x
        .add(&cube.mul_scalar(0.044715)?)?
        .mul_scalar((2.0 / std::f64::consts::PI).sqrt())?;
    let gate = inner.tanh()?.add_scalar(1.0)?;
    Ok(x.mul_scalar(0.5)?.multiply(&gate)?)
}

/// `max(x, 0)`.
pub fn relu(x: &Array) -> Result<Array> {
    Ok(x.maximum(&x.scalar_like(0.0)?)?)
}

/// `1 / (1 + e^-x)`.
pub fn sigmoid(x: &Array) -> Result<Array> {
    Ok(x.sigmoid()?)
}

/// Softmax along `axis`.
pub fn softmax(x: &Array, axis: i32) -> Result<Array> {
    Ok(x.softmax(axis, false)?)
}

/// Log-softmax along `axis`: `y - logsumexp(y)` with `y = x - stop_gradient(max x)`.
pub fn log_softmax(x: &Array, axis: i32) -> Result<Array> {
    let shifted = x.subtract(&x.max(axis, true)?.stop_gradient()?)?;
    Ok(shifted.subtract(&shifted.logsumexp(axis, true)?)?)
}

/// The element-wise activations as a value (for configurable layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// No activation.
    Identity,
    /// [`silu`].
    #[default]
    Silu,
    /// [`gelu`] (exact).
    Gelu,
    /// [`gelu_approx`] (tanh).
    GeluApprox,
    /// [`relu`].
    Relu,
    /// [`sigmoid`].
    Sigmoid,
    /// `tanh`.
    Tanh,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(self, x: &Array) -> Result<Array> {
        match self {
            Activation::Identity => Ok(x.clone()),
            Activation::Silu => silu(x),
            Activation::Gelu => gelu(x),
            Activation::GeluApprox => gelu_approx(x),
            Activation::Relu => relu(x),
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => Ok(x.tanh()?),
        }
    }
}

impl Forward for Activation {
    fn forward(&self, x: &Array) -> Result<Array> {
        self.apply(x)
    }
}

macro_rules! unit_activation {
    ($($(#[$doc:meta])* $name:ident => $f:ident;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
            pub struct $name;

            impl Forward for $name {
                fn forward(&self, x: &Array) -> Result<Array> {
                    $f(x)
                }
            }
        )*
    };
}

unit_activation! {
    /// The [`silu`] layer.
    Silu => silu;
    /// The [`gelu`] layer (exact).
    Gelu => gelu;
    /// The [`gelu_approx`] layer (tanh approximation).
    GeluApprox => gelu_approx;
    /// The [`relu`] layer.
    Relu => relu;
    /// The [`sigmoid`] layer.
    Sigmoid => sigmoid;
}

/// The [`softmax`] layer over `axis` (usually `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Softmax {
    /// The axis normalised over.
    pub axis: i32,
}

impl Default for Softmax {
    fn default() -> Self {
        Softmax { axis: -1 }
    }
}

impl Forward for Softmax {
    fn forward(&self, x: &Array) -> Result<Array> {
        softmax(x, self.axis)
    }
}

/// The [`log_softmax`] layer over `axis` (usually `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSoftmax {
    /// The axis normalised over.
    pub axis: i32,
}

impl Default for LogSoftmax {
    fn default() -> Self {
        LogSoftmax { axis: -1 }
    }
}

impl Forward for LogSoftmax {
    fn forward(&self, x: &Array) -> Result<Array> {
        log_softmax(x, self.axis)
    }
}

macro_rules! parameter_free {
    ($($ty:ty),*) => {
        $(
            impl crate::module::Module for $ty {
                fn visit<'a>(&'a self, _v: &mut crate::module::Visitor<'_, 'a>) {}
                fn visit_mut(&mut self, _v: &mut crate::module::VisitorMut<'_>) {}
            }
        )*
    };
}

parameter_free!(
    Activation, Silu, Gelu, GeluApprox, Relu, Sigmoid, Softmax, LogSoftmax
);
