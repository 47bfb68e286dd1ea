//! Manual backward passes of common layers and losses.
//!
//! Each helper returns the vector-Jacobian product of one operation: given
//! the forward inputs and the gradient of some scalar with respect to the
//! operation's output (`grad_output`), it returns the gradients with respect
//! to the inputs (and parameters). They are computed with
//! [`mlx_tensor::transforms::vjp`] through the same forward code the layers
//! use, so they agree with [`value_and_grad`](crate::value_and_grad); the
//! tests check them against the closed-form derivatives.

use mlx_tensor::Array;

use crate::activations;
use crate::autograd::vjp;
use crate::layers::{Linear, RmsNorm};
use crate::losses::{CrossEntropy, Reduction, mse as mse_loss};
use crate::{Error, Result};

fn single(mut grads: Vec<Array>, what: &str) -> Result<Array> {
    if grads.len() != 1 {
        return Err(Error::Closure(format!(
            "{what}: expected one gradient, got {}",
            grads.len()
        )));
    }
    Ok(grads.remove(0))
}

fn unary(
    x: &Array,
    grad_output: &Array,
    what: &str,
    f: fn(&Array) -> Result<Array>,
) -> Result<Array> {
    let (_, grads) = vjp(
        |xs| Ok(vec![f(&xs[0])?]),
        std::slice::from_ref(x),
        std::slice::from_ref(grad_output),
    )?;
    single(grads, what)
}

/// `∂L/∂logits` of [`CrossEntropy::loss`] (unweighted) given `∂L/∂loss`
/// (shaped like the reduced loss: a scalar for `Mean`/`Sum`).
///
/// Closed form for `Mean` without smoothing: `(softmax(z) - onehot(t)) / N`.
pub fn cross_entropy_backward(
    logits: &Array,
    targets: &Array,
    settings: &CrossEntropy,
    grad_output: &Array,
) -> Result<Array> {
    let (_, grads) = vjp(
        |xs| Ok(vec![settings.loss(&xs[0], targets, None)?]),
        std::slice::from_ref(logits),
        std::slice::from_ref(grad_output),
    )?;
    single(grads, "cross_entropy_backward")
}

/// `∂L/∂predictions` of [`mse`](crate::losses::mse) given `∂L/∂loss`.
/// Closed form for `Mean`: `2 (p - y) / N · grad_output`.
pub fn mse_backward(
    predictions: &Array,
    targets: &Array,
    reduction: Reduction,
    grad_output: &Array,
) -> Result<Array> {
    let (_, grads) = vjp(
        |xs| Ok(vec![mse_loss(&xs[0], targets, reduction)?]),
        std::slice::from_ref(predictions),
        std::slice::from_ref(grad_output),
    )?;
    single(grads, "mse_backward")
}

/// Gradients of a [`Linear`] layer.
#[derive(Debug, Clone)]
pub struct LinearGrads {
    /// `∂L/∂x = g W`.
    pub input: Array,
    /// `∂L/∂W = gᵀ x` (summed over leading axes).
    pub weight: Array,
    /// `∂L/∂b = Σ g` (when the layer has a bias).
    pub bias: Option<Array>,
}

/// Backward pass of `layer.forward(x)` given `∂L/∂y`.
pub fn linear_backward(layer: &Linear, x: &Array, grad_output: &Array) -> Result<LinearGrads> {
    let mut primals = vec![x.clone(), layer.weight.value.clone()];
    if let Some(b) = &layer.bias {
        primals.push(b.value.clone());
    }
    let (_, mut grads) = vjp(
        |xs| {
            let l = Linear::from_arrays(xs[1].clone(), xs.get(2).cloned());
            Ok(vec![l.forward(&xs[0])?])
        },
        &primals,
        std::slice::from_ref(grad_output),
    )?;
    if grads.len() != primals.len() {
        return Err(Error::Closure(format!(
            "linear_backward: expected {} gradients, got {}",
            primals.len(),
            grads.len()
        )));
    }
    let bias = if layer.bias.is_some() {
        grads.pop()
    } else {
        None
    };
    let weight = grads.remove(1);
    let input = grads.remove(0);
    Ok(LinearGrads {
        input,
        weight,
        bias,
    })
}

/// Backward pass of `layer.forward(x)` for RMS normalisation given `∂L/∂y`:
/// `(∂L/∂x, ∂L/∂weight)`.
pub fn rms_norm_backward(
    layer: &RmsNorm,
    x: &Array,
    grad_output: &Array,
) -> Result<(Array, Array)> {
    let eps = layer.eps;
    let (_, mut grads) = vjp(
        |xs| Ok(vec![mlx_tensor::fast::rms_norm(&xs[0], Some(&xs[1]), eps)?]),
        &[x.clone(), layer.weight.value.clone()],
        std::slice::from_ref(grad_output),
    )?;
    if grads.len() != 2 {
        return Err(Error::Closure(format!(
            "rms_norm_backward: expected 2 gradients, got {}",
            grads.len()
        )));
    }
    let weight = grads.remove(1);
    Ok((grads.remove(0), weight))
}

/// `∂L/∂x` of SiLU: `g · σ(x) · (1 + x (1 - σ(x)))`.
pub fn silu_backward(x: &Array, grad_output: &Array) -> Result<Array> {
    unary(x, grad_output, "silu_backward", activations::silu)
}

/// `∂L/∂x` of ReLU: `g · [x > 0]`.
pub fn relu_backward(x: &Array, grad_output: &Array) -> Result<Array> {
    unary(x, grad_output, "relu_backward", activations::relu)
}

/// `∂L/∂x` of the sigmoid: `g · σ(x) (1 - σ(x))`.
pub fn sigmoid_backward(x: &Array, grad_output: &Array) -> Result<Array> {
    unary(x, grad_output, "sigmoid_backward", activations::sigmoid)
}
