//! Gradients of a loss with respect to a module's trainable parameters, and
//! `vjp`/`jvp` over closures that return this crate's [`Result`].

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mlx_tensor::{Array, transforms};

use crate::module::{Module, ModuleExt, ParamMap};
use crate::{Error, Result};

/// The loss value, any auxiliary outputs, and gradients keyed like the
/// trainable parameters.
#[derive(Debug)]
pub struct LossAndGrads {
    /// The scalar loss.
    pub loss: Array,
    /// Further values the closure returned (no gradient flows through them).
    pub aux: Vec<Array>,
    /// `∂loss/∂param` for every trainable parameter.
    pub grads: ParamMap,
}

/// Turns a closure over this crate's `Result` into one over `mlx_tensor`'s:
/// errors other than array errors are parked in `slot` so the caller gets
/// them back unchanged.
pub(crate) fn bridge_closure<'a>(
    f: impl Fn(&[Array]) -> Result<Vec<Array>> + 'a,
    slot: &'a RefCell<Option<Error>>,
    transform: &'static str,
) -> impl Fn(&[Array]) -> mlx_tensor::Result<Vec<Array>> + 'a {
    move |xs: &[Array]| match f(xs) {
        Ok(outs) => Ok(outs),
        Err(Error::Tensor(e)) => Err(e),
        Err(other) => {
            let message = other.to_string();
            *slot.borrow_mut() = Some(other);
            Err(mlx_tensor::Error::Closure { transform, message })
        }
    }
}

/// The error a failed transformation reports: the closure's own error when
/// it returned one, otherwise the array error (a panic becomes
/// [`Error::Closure`]).
pub(crate) fn transform_error(slot: &RefCell<Option<Error>>, e: mlx_tensor::Error) -> Error {
    match slot.borrow_mut().take() {
        Some(original) => original,
        None => match e {
            mlx_tensor::Error::Closure { message, .. } => Error::Closure(message),
            other => Error::Tensor(other),
        },
    }
}

/// Outputs of `f(primals)` and the vector-Jacobian products
/// `cotangentsᵀ · ∂f/∂primals`, one per primal. Errors and panics inside `f`
/// come back as `Err`.
pub fn vjp<'a>(
    f: impl Fn(&[Array]) -> Result<Vec<Array>> + 'a,
    primals: &[Array],
    cotangents: &[Array],
) -> Result<(Vec<Array>, Vec<Array>)> {
    let slot = RefCell::new(None);
    transforms::vjp(bridge_closure(f, &slot, "vjp"), primals, cotangents)
        .map_err(|e| transform_error(&slot, e))
}

/// Outputs of `f(primals)` and the Jacobian-vector products
/// `∂f/∂primals · tangents`, one per output.
pub fn jvp<'a>(
    f: impl Fn(&[Array]) -> Result<Vec<Array>> + 'a,
    primals: &[Array],
    tangents: &[Array],
) -> Result<(Vec<Array>, Vec<Array>)> {
    let slot = RefCell::new(None);
    transforms::jvp(bridge_closure(f, &slot, "jvp"), primals, tangents)
        .map_err(|e| transform_error(&slot, e))
}

/// The gradient of a scalar function of one array.
pub fn grad<'a>(f: impl Fn(&Array) -> Result<Array> + 'a, x: &Array) -> Result<Array> {
    let slot = RefCell::new(None);
    let wrapped = |xs: &[Array]| -> Result<Vec<Array>> { Ok(vec![f(&xs[0])?]) };
    let (_, mut grads) = transforms::value_and_grad(
        bridge_closure(wrapped, &slot, "grad"),
        std::slice::from_ref(x),
        &[0],
    )
    .map_err(|e| transform_error(&slot, e))?;
    grads
        .pop()
        .ok_or_else(|| Error::Closure("grad: no gradient returned".into()))
}

/// Evaluates `loss_fn(model)` and its gradient with respect to every
/// trainable (not frozen) parameter of `model`.
///
/// `loss_fn` is an ordinary closure: it may capture anything, runs once, and
/// returns the scalar loss first, then any auxiliary arrays. An `Err` or a
/// panic inside it comes back as `Err`. The model is not modified.
pub fn value_and_grad<M, F>(model: &M, loss_fn: F) -> Result<LossAndGrads>
where
    M: Module + Clone,
    F: Fn(&M) -> Result<Vec<Array>>,
{
    value_and_grad_with(model, loss_fn)
}

/// [`value_and_grad`] for a loss closure with an error type of its own:
/// an `Err` the closure returns comes back unchanged, of its own type (a
/// caller's loss error stays that error, not a message); failures of the
/// transformation itself and panics come back as `E::from` this crate's
/// [`Error`].
pub fn value_and_grad_with<M, F, E>(model: &M, loss_fn: F) -> std::result::Result<LossAndGrads, E>
where
    M: Module + Clone,
    F: Fn(&M) -> std::result::Result<Vec<Array>, E>,
    E: From<Error>,
{
    let trainable = model.trainable_parameters();
    let names: Vec<String> = trainable.keys().cloned().collect();
    let inputs: Vec<Array> = trainable.into_values().collect();
    let argnums: Vec<i32> = (0..inputs.len() as i32).collect();
    let slot: RefCell<Option<E>> = RefCell::new(None);

    let (mut values, grads) = if inputs.is_empty() {
        // Nothing to differentiate: still evaluate the loss, panics included.
        match catch_unwind(AssertUnwindSafe(|| loss_fn(model))) {
            Ok(outs) => (outs?, Vec::new()),
            Err(panic) => {
                return Err(E::from(Error::Closure(format!(
                    "the loss closure panicked: {}",
                    panic_message(&panic)
                ))));
            }
        }
    } else {
        // The closure's own errors wait in `slot`; MLX only learns that
        // the closure failed.
        let run = |xs: &[Array]| -> mlx_tensor::Result<Vec<Array>> {
            let mut m = model.clone();
            let map: ParamMap = names.iter().cloned().zip(xs.iter().cloned()).collect();
            let outcome = match m.update(&map) {
                Ok(()) => loss_fn(&m),
                Err(e) => Err(E::from(e)),
            };
            outcome.map_err(|e| {
                *slot.borrow_mut() = Some(e);
                mlx_tensor::Error::Closure {
                    transform: "value_and_grad",
                    message: "the loss closure failed".into(),
                }
            })
        };
        match transforms::value_and_grad(run, &inputs, &argnums) {
            Ok(out) => out,
            Err(e) => {
                return Err(match slot.borrow_mut().take() {
                    Some(original) => original,
                    None => E::from(match e {
                        mlx_tensor::Error::Closure { message, .. } => Error::Closure(message),
                        other => Error::Tensor(other),
                    }),
                });
            }
        }
    };
    if values.is_empty() {
        return Err(E::from(Error::Closure(
            "the loss closure returned no arrays".into(),
        )));
    }
    let loss = values.remove(0);
    Ok(LossAndGrads {
        loss,
        aux: values,
        grads: names.into_iter().zip(grads).collect(),
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
