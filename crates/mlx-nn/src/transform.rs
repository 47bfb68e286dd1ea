//! Gradient checkpointing and compilation of computations over a module.
//!
//! Both pass the module's parameters to MLX as explicit inputs, so gradients
//! flow to them (inside [`value_and_grad`](crate::value_and_grad)) and a
//! compiled function sees the current values after an optimizer step
//! without re-tracing.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

use mlx_tensor::{transforms, Array};

use crate::module::{Module, ModuleExt, ParamMap};
use crate::{Error, Result};

type ModuleFn<M> = dyn Fn(&M, &[Array]) -> Result<Vec<Array>>;

/// Wraps `f(module, inputs)` as a closure over `[params…, inputs…]`.
fn over_params<M: Module + Clone + 'static>(
    template: M,
    names: Vec<String>,
    f: Rc<ModuleFn<M>>,
    slot: Rc<RefCell<Option<Error>>>,
    transform: &'static str,
) -> impl Fn(&[Array]) -> mlx_tensor::Result<Vec<Array>> + 'static {
    move |xs: &[Array]| {
        let n = names.len().min(xs.len());
        let run = || -> Result<Vec<Array>> {
            let mut m = template.clone();
            let map: ParamMap = names.iter().cloned().zip(xs[..n].iter().cloned()).collect();
            m.for_each_param_mut(|name, p| {
                if let Some(v) = map.get(name) {
                    p.value = v.clone();
                }
            });
            f(&m, &xs[n..])
        };
        match run() {
            Ok(outs) => Ok(outs),
            Err(Error::Tensor(e)) => Err(e),
            Err(other) => {
                let message = other.to_string();
                *slot.borrow_mut() = Some(other);
                Err(mlx_tensor::Error::Closure { transform, message })
            }
        }
    }
}

fn take_error(slot: &RefCell<Option<Error>>, e: mlx_tensor::Error) -> Error {
    crate::autograd::transform_error(slot, e)
}

/// Runs `f(module, inputs)` with gradient checkpointing: the backward pass
/// recomputes `f`'s intermediate values instead of keeping them, trading
/// compute for memory (use it per transformer block). Gradients flow to the
/// module's trainable parameters and to `inputs`.
pub fn grad_checkpoint<M, F>(module: &M, inputs: &[Array], f: F) -> Result<Vec<Array>>
where
    M: Module + Clone + 'static,
    F: Fn(&M, &[Array]) -> Result<Vec<Array>> + 'static,
{
    let trainable = module.trainable_parameters();
    let names: Vec<String> = trainable.keys().cloned().collect();
    let mut args: Vec<Array> = trainable.into_values().collect();
    args.extend(inputs.iter().cloned());
    let slot = Rc::new(RefCell::new(None));
    let closure = over_params(
        module.clone(),
        names,
        Rc::new(f),
        slot.clone(),
        "grad_checkpoint",
    );
    let function = transforms::checkpoint(closure).map_err(|e| take_error(&slot, e))?;
    function.call(&args).map_err(|e| take_error(&slot, e))
}

/// A compiled computation over a module's parameters (see [`compile`]).
pub struct CompiledFn<M> {
    names: Vec<String>,
    function: transforms::Function,
    slot: Rc<RefCell<Option<Error>>>,
    _module: PhantomData<fn(&M)>,
}

/// Compiles `f(module, inputs)`. Every parameter of `module` becomes an input
/// of the compiled graph, so calling it on the same module after an
/// optimizer step uses the new values without re-tracing; input shapes that
/// change cause a re-trace unless `shapeless`. `f` runs only while tracing.
pub fn compile<M, F>(module: &M, f: F, shapeless: bool) -> Result<CompiledFn<M>>
where
    M: Module + Clone + 'static,
    F: Fn(&M, &[Array]) -> Result<Vec<Array>> + 'static,
{
    let names = module.parameter_names();
    // The compiled function keeps a skeleton of the module whose arrays are
    // all replaced at each call: hold placeholders, not the weights.
    let mut skeleton = module.clone();
    let placeholder = Array::scalar(0.0f32)?;
    skeleton.for_each_param_mut(|_, p| p.value = placeholder.clone());
    let slot = Rc::new(RefCell::new(None));
    let closure = over_params(skeleton, names.clone(), Rc::new(f), slot.clone(), "compile");
    let function = transforms::compile(closure, shapeless).map_err(|e| take_error(&slot, e))?;
    Ok(CompiledFn {
        names,
        function,
        slot,
        _module: PhantomData,
    })
}

impl<M: Module> CompiledFn<M> {
    /// Calls the compiled function with `module`'s current parameters (it
    /// must have the parameter names of the module it was compiled for).
    pub fn call(&self, module: &M, inputs: &[Array]) -> Result<Vec<Array>> {
        let params = module.parameters();
        let mut args = Vec::with_capacity(self.names.len() + inputs.len());
        for name in &self.names {
            let value = params
                .get(name)
                .ok_or_else(|| Error::MissingTensor { name: name.clone() })?;
            args.push(value.clone());
        }
        if params.len() != self.names.len() {
            if let Some(extra) = params.keys().find(|k| !self.names.contains(k)) {
                return Err(Error::UnknownParameter {
                    name: extra.clone(),
                });
            }
        }
        args.extend(inputs.iter().cloned());
        self.function
            .call(&args)
            .map_err(|e| take_error(&self.slot, e))
    }
}

impl<M> std::fmt::Debug for CompiledFn<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompiledFn({} parameters)", self.names.len())
    }
}
