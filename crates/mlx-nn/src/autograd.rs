//! Gradients of a loss with respect to a module's trainable parameters.

use std::cell::RefCell;

use mlx_tensor::{transforms, Array};

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
    let trainable = model.trainable_parameters();
    let names: Vec<String> = trainable.keys().cloned().collect();
    let inputs: Vec<Array> = trainable.into_values().collect();
    let argnums: Vec<i32> = (0..inputs.len() as i32).collect();
    let user_error: RefCell<Option<Error>> = RefCell::new(None);

    let closure = |xs: &[Array]| -> mlx_tensor::Result<Vec<Array>> {
        let mut m = model.clone();
        let map: ParamMap = names.iter().cloned().zip(xs.iter().cloned()).collect();
        let run = m.update(&map).and_then(|()| loss_fn(&m));
        match run {
            Ok(outs) => Ok(outs),
            Err(Error::Tensor(e)) => Err(e),
            Err(other) => {
                let message = other.to_string();
                *user_error.borrow_mut() = Some(other);
                Err(mlx_tensor::Error::Closure { transform: "value_and_grad", message })
            }
        }
    };
    let result = if inputs.is_empty() {
        // Nothing to differentiate: still evaluate the loss.
        loss_fn(model).map(|outs| (outs, Vec::new()))
    } else {
        transforms::value_and_grad(closure, &inputs, &argnums).map_err(|e| match user_error.borrow_mut().take() {
            Some(original) => original,
            None => match e {
                mlx_tensor::Error::Closure { message, .. } => Error::Closure(message),
                other => Error::Tensor(other),
            },
        })
    };
    let (mut values, grads) = result?;
    if values.is_empty() {
        return Err(Error::Closure("the loss closure returned no arrays".into()));
    }
    let loss = values.remove(0);
    Ok(LossAndGrads { loss, aux: values, grads: names.into_iter().zip(grads).collect() })
}
