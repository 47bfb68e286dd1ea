//! Gradient checkpointing and compilation of computations over a module.
//!
//! Both pass the module's parameters to MLX as explicit inputs, so gradients
//! flow to them (inside [`value_and_grad`](crate::value_and_grad)) and a
//! compiled function sees the current values after an optimizer step
//! without re-tracing.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

use mlx_tensor::{Array, transforms};

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
            let m = with_values(&template, &names, &xs[..n]);
            f(&m, &xs[n..])
        };
        run().map_err(|e| park(&slot, transform, e))
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

type ChunkFn<M> = dyn Fn(&M, usize, &Array) -> Result<Vec<Array>>;

/// What the forward and backward passes of [`sequential_checkpoint`] share.
struct ChunkRun<M> {
    template: M,
    names: Vec<String>,
    f: Box<ChunkFn<M>>,
    /// A module-level error of `f`, handed back to the caller.
    slot: RefCell<Option<Error>>,
    /// How many outputs each chunk gave (set by the forward pass).
    counts: RefCell<Vec<usize>>,
}

/// A copy of `template` whose parameters `names` take `values`.
fn with_values<M: Module + Clone>(template: &M, names: &[String], values: &[Array]) -> M {
    let mut m = template.clone();
    let map: ParamMap = names.iter().cloned().zip(values.iter().cloned()).collect();
    m.for_each_param_mut(|name, p| {
        if let Some(v) = map.get(name) {
            p.value = v.clone();
        }
    });
    m
}

/// Maps a module-level error to a tensor-level one for MLX, parking the
/// original in `slot`.
fn park(slot: &RefCell<Option<Error>>, transform: &'static str, e: Error) -> mlx_tensor::Error {
    match e {
        Error::Tensor(e) => e,
        other => {
            let message = other.to_string();
            *slot.borrow_mut() = Some(other);
            mlx_tensor::Error::Closure { transform, message }
        }
    }
}

/// Runs `f(module, i, &chunks[i])` for every chunk, one after the other,
/// under gradient checkpointing, and returns each call's outputs.
///
/// Unlike separate [`grad_checkpoint`] calls, the chunks are chained: chunk
/// `i + 1` starts only after chunk `i`'s outputs exist, and in the backward
/// pass chunk `i + 1`'s recomputation starts only after chunk `i`'s
/// gradients (to its input and, summed, to the module's parameters) exist.
/// So at most one chunk's intermediate values — and one extra copy of the
/// parameters' gradient — are alive at a time, whatever the number of
/// chunks. This is what keeps an LM head's vocabulary-sized logits and its
/// per-chunk weight gradients from piling up. Gradients flow to the module's
/// trainable parameters and to every chunk.
pub fn sequential_checkpoint<M, F>(module: &M, chunks: &[Array], f: F) -> Result<Vec<Vec<Array>>>
where
    M: Module + Clone + 'static,
    F: Fn(&M, usize, &Array) -> Result<Vec<Array>> + 'static,
{
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    let trainable = module.trainable_parameters();
    let names: Vec<String> = trainable.keys().cloned().collect();
    let mut args: Vec<Array> = trainable.into_values().collect();
    let num_params = args.len();
    let num_chunks = chunks.len();
    args.extend(chunks.iter().cloned());
    let shared = Rc::new(ChunkRun {
        template: module.clone(),
        names,
        f: Box::new(f),
        slot: RefCell::new(None),
        counts: RefCell::new(Vec::new()),
    });

    let forward = {
        let s = shared.clone();
        move |xs: &[Array]| -> mlx_tensor::Result<Vec<Array>> {
            let run = || -> Result<Vec<Array>> {
                let m = with_values(&s.template, &s.names, &xs[..num_params]);
                let mut all = Vec::new();
                let mut sizes = Vec::with_capacity(num_chunks);
                let mut previous: Vec<Array> = Vec::new();
                for (i, x) in xs[num_params..].iter().enumerate() {
                    let x = chain(x, &previous)?;
                    let outs = (s.f)(&m, i, &x)?;
                    sizes.push(outs.len());
                    previous.clone_from(&outs);
                    all.extend(outs);
                }
                *s.counts.borrow_mut() = sizes;
                Ok(all)
            };
            run().map_err(|e| park(&s.slot, "sequential_checkpoint", e))
        }
    };

    let backward = {
        let s = shared.clone();
        move |primals: &[Array],
              cotangents: &[Array],
              _outputs: &[Array]|
              -> mlx_tensor::Result<Vec<Array>> {
            let run = || -> Result<Vec<Array>> {
                let params = &primals[..num_params];
                let sizes = s.counts.borrow().clone();
                let mut sums: Option<Vec<Array>> = None;
                let mut input_grads: Vec<Array> = Vec::with_capacity(num_chunks);
                let mut offset = 0;
                for (i, x) in primals[num_params..].iter().enumerate() {
                    let n = sizes.get(i).copied().ok_or_else(|| {
                        Error::Closure(format!("chunk {i} has no recorded outputs"))
                    })?;
                    let cot = cotangents.get(offset..offset + n).ok_or_else(|| {
                        Error::Closure(format!("too few cotangents for chunk {i}"))
                    })?;
                    offset += n;
                    // Recompute this chunk only once its cotangents and the
                    // previous chunk's gradients exist.
                    let mut after: Vec<Array> = cot.to_vec();
                    after.extend(sums.iter().flatten().cloned());
                    after.extend(input_grads.last().cloned());
                    let x = chain(x, &after)?;
                    let mut primal = params.to_vec();
                    primal.push(x);
                    let chunk_fn = |ys: &[Array]| -> mlx_tensor::Result<Vec<Array>> {
                        let m = with_values(&s.template, &s.names, &ys[..num_params]);
                        (s.f)(&m, i, &ys[num_params])
                            .map_err(|e| park(&s.slot, "sequential_checkpoint", e))
                    };
                    let (_, mut grads) = transforms::vjp(chunk_fn, &primal, cot)?;
                    let dx = grads.pop().ok_or_else(|| {
                        Error::Closure(format!("no input gradient for chunk {i}"))
                    })?;
                    input_grads.push(dx);
                    sums = Some(match sums.take() {
                        None => grads,
                        Some(acc) => acc
                            .iter()
                            .zip(&grads)
                            .map(|(a, g)| a.add(g))
                            .collect::<mlx_tensor::Result<_>>()?,
                    });
                }
                let mut out = sums.unwrap_or_default();
                out.extend(input_grads);
                Ok(out)
            };
            run().map_err(|e| park(&s.slot, "sequential_checkpoint", e))
        }
    };

    let function =
        transforms::custom_vjp(forward, backward).map_err(|e| take_error(&shared.slot, e))?;
    let flat = function
        .call(&args)
        .map_err(|e| take_error(&shared.slot, e))?;
    let sizes = shared.counts.borrow().clone();
    let mut flat = flat.into_iter();
    Ok(sizes
        .iter()
        .map(|&n| flat.by_ref().take(n).collect())
        .collect())
}

/// `x`, computed only after `after` (a scheduling constraint; nothing flows
/// from `after`).
fn chain(x: &Array, after: &[Array]) -> Result<Array> {
    if after.is_empty() {
        return Ok(x.clone());
    }
    let mut out = transforms::depends(std::slice::from_ref(x), after)?;
    out.pop()
        .ok_or_else(|| Error::Closure("depends returned no array".into()))
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
        if params.len() != self.names.len()
            && let Some(extra) = params.keys().find(|k| !self.names.contains(k))
        {
            return Err(Error::UnknownParameter {
                name: extra.clone(),
            });
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
