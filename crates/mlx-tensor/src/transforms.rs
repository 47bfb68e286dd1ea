//! Function transformations: gradients, vector-Jacobian and Jacobian-vector
//! products, compilation and gradient checkpointing of Rust closures.
//!
//! Closures receive and return arrays. An `Err` returned by the closure, or a
//! panic inside it, comes back from the transformation as an `Err` (the
//! closure's own error when it returned one); the process stays usable.
//!
//! [`vjp`], [`jvp`], [`value_and_grad`] and [`grad`] run the closure only
//! during the call, so it may borrow local data. [`compile`] and
//! [`checkpoint`] keep the closure for later calls, so it must be `'static`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mlx_ffi::RustFn;
use mlx_ffi::cxx::UniquePtr;
use mlx_ffi::ffi::{self, ArrayFn};

use crate::array::mlx_error;
use crate::ops::{from_array_vec, to_array_vec};
use crate::{Array, Error, Result};

thread_local! {
    /// The typed error of the last closure that failed on this thread, so the
    /// caller gets it back instead of only its text.
    static CLOSURE_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
}

type ArrayClosure<'a> = dyn Fn(&[Array]) -> Result<Vec<Array>> + 'a;

/// Adapts an array closure to the bridge's calling convention.
fn adapt(f: Rc<ArrayClosure<'static>>, alive: Option<Arc<AtomicBool>>) -> Box<RustFn> {
    Box::new(RustFn(Box::new(move |inputs: &ffi::ArrayVec, out| {
        if let Some(alive) = &alive
            && !alive.load(Ordering::Acquire)
        {
            return Err("the closure was called after its transformation returned".to_string());
        }
        let inputs = from_array_vec(inputs).map_err(|e| e.to_string())?;
        match f(&inputs) {
            Ok(outputs) => {
                for a in outputs {
                    out.push(ffi::array_clone(a.raw()));
                }
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                CLOSURE_ERROR.with(|slot| *slot.borrow_mut() = Some(e));
                Err(message)
            }
        }
    })))
}

/// Runs `body` with a bridge function for a closure that may borrow local
/// data. The closure is disabled (calls fail cleanly) when `body` returns.
fn with_scoped_fn<'a, T>(
    f: &'a ArrayClosure<'a>,
    body: impl FnOnce(&ArrayFn) -> Result<T>,
) -> Result<T> {
    // SAFETY: the 'static reference never outlives this function in use: the
    // `alive` flag is cleared before returning, and every call checks it
    // first, so a copy of the function that MLX might keep can no longer reach
    // `f` once `f`'s borrow ends.
    let erased: &'static ArrayClosure<'static> =
        unsafe { std::mem::transmute::<&'a ArrayClosure<'a>, &'static ArrayClosure<'static>>(f) };
    let alive = Arc::new(AtomicBool::new(true));
    let rc: Rc<ArrayClosure<'static>> = Rc::new(move |xs: &[Array]| erased(xs));
    let bridge_fn = ffi::array_fn_from_rust(adapt(rc, Some(alive.clone())));
    CLOSURE_ERROR.with(|slot| slot.borrow_mut().take());
    let result = function_ref(&bridge_fn, "transform").and_then(body);
    alive.store(false, Ordering::Release);
    result
}

/// Maps a failed transformation to the closure's own error when it had one.
#[track_caller]
fn transform_error(
    transform: &'static str,
    inputs: &[&Array],
    e: mlx_ffi::cxx::Exception,
) -> Error {
    if let Some(original) = CLOSURE_ERROR.with(|slot| slot.borrow_mut().take()) {
        return original;
    }
    let message = e.what().to_string();
    if message.contains("closure panicked") || message.contains("the closure was called after") {
        return Error::Closure { transform, message };
    }
    mlx_error(transform, inputs, e)
}

fn list(arrays: &[Array]) -> UniquePtr<ffi::ArrayVec> {
    let refs: Vec<&Array> = arrays.iter().collect();
    to_array_vec(&refs)
}

fn unpack(v: UniquePtr<ffi::ArrayVec>) -> Result<Vec<Array>> {
    v.as_ref()
        .map(from_array_vec)
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// Outputs of `f(primals)` and the vector-Jacobian products
/// `cotangentsᵀ · ∂f/∂primals` (one per primal).
#[track_caller]
pub fn vjp<'a>(
    f: impl Fn(&[Array]) -> Result<Vec<Array>> + 'a,
    primals: &[Array],
    cotangents: &[Array],
) -> Result<(Vec<Array>, Vec<Array>)> {
    let location_inputs: Vec<&Array> = primals.iter().collect();
    let f: &ArrayClosure<'_> = &f;
    with_scoped_fn(f, |func| {
        let p = list(primals);
        let c = list(cotangents);
        let mut outputs = ffi::array_vec_new();
        let (Some(p), Some(c), Some(o)) = (p.as_ref(), c.as_ref(), outputs.as_mut()) else {
            return Err(Error::Invalid {
                op: "vjp",
                message: "null list".into(),
            });
        };
        let grads =
            ffi::vjp(func, p, c, o).map_err(|e| transform_error("vjp", &location_inputs, e))?;
        Ok((unpack(outputs)?, unpack(grads)?))
    })
}

/// Outputs of `f(primals)` and the Jacobian-vector products
/// `∂f/∂primals · tangents` (one per output).
#[track_caller]
pub fn jvp<'a>(
    f: impl Fn(&[Array]) -> Result<Vec<Array>> + 'a,
    primals: &[Array],
    tangents: &[Array],
) -> Result<(Vec<Array>, Vec<Array>)> {
    let location_inputs: Vec<&Array> = primals.iter().collect();
    let f: &ArrayClosure<'_> = &f;
    with_scoped_fn(f, |func| {
        let p = list(primals);
        let t = list(tangents);
        let mut outputs = ffi::array_vec_new();
        let (Some(p), Some(t), Some(o)) = (p.as_ref(), t.as_ref(), outputs.as_mut()) else {
            return Err(Error::Invalid {
                op: "jvp",
                message: "null list".into(),
            });
        };
        let tans =
            ffi::jvp(func, p, t, o).map_err(|e| transform_error("jvp", &location_inputs, e))?;
        Ok((unpack(outputs)?, unpack(tans)?))
    })
}

/// The outputs of `f(inputs)` and the gradient of its first output (a
/// scalar) with respect to `inputs[i]` for each `i` in `argnums`.
/// Further outputs are returned as auxiliary values with no gradient.
#[track_caller]
pub fn value_and_grad<'a>(
    f: impl Fn(&[Array]) -> Result<Vec<Array>> + 'a,
    inputs: &[Array],
    argnums: &[i32],
) -> Result<(Vec<Array>, Vec<Array>)> {
    let location_inputs: Vec<&Array> = inputs.iter().collect();
    let f: &ArrayClosure<'_> = &f;
    with_scoped_fn(f, |func| {
        let x = list(inputs);
        let mut values = ffi::array_vec_new();
        let (Some(x), Some(v)) = (x.as_ref(), values.as_mut()) else {
            return Err(Error::Invalid {
                op: "value_and_grad",
                message: "null list".into(),
            });
        };
        let grads = ffi::value_and_grad(func, x, argnums, v)
            .map_err(|e| transform_error("value_and_grad", &location_inputs, e))?;
        Ok((unpack(values)?, unpack(grads)?))
    })
}

/// The gradient of a scalar function of one array.
#[track_caller]
pub fn grad<'a>(f: impl Fn(&Array) -> Result<Array> + 'a, x: &Array) -> Result<Array> {
    let wrapped = |xs: &[Array]| -> Result<Vec<Array>> {
        let input = xs.first().ok_or(Error::Invalid {
            op: "grad",
            message: "no input".into(),
        })?;
        Ok(vec![f(input)?])
    };
    let (_, mut grads) = value_and_grad(wrapped, std::slice::from_ref(x), &[0])?;
    grads.pop().ok_or(Error::Invalid {
        op: "grad",
        message: "no gradient returned".into(),
    })
}

/// A function over arrays kept by MLX: compiled ([`compile`]) or
/// checkpointed ([`checkpoint`]).
pub struct Function {
    inner: UniquePtr<ArrayFn>,
}

impl Function {
    /// Calls the function.
    #[track_caller]
    pub fn call(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        let func = function_ref(&self.inner, "Function::call")?;
        let x = list(inputs);
        let Some(x) = x.as_ref() else {
            return Err(Error::Invalid {
                op: "Function::call",
                message: "null list".into(),
            });
        };
        CLOSURE_ERROR.with(|slot| slot.borrow_mut().take());
        let refs: Vec<&Array> = inputs.iter().collect();
        let out = ffi::array_fn_call(func, x).map_err(|e| transform_error("call", &refs, e))?;
        unpack(out)
    }

    /// Views this function as a closure usable inside other transformations.
    pub fn as_closure(&self) -> impl Fn(&[Array]) -> Result<Vec<Array>> + '_ {
        move |xs| self.call(xs)
    }
}

/// The function behind `f`, or an error naming `op` if the bridge returned
/// none.
fn function_ref<'a>(f: &'a UniquePtr<ArrayFn>, op: &'static str) -> Result<&'a ArrayFn> {
    f.as_ref().ok_or_else(|| Error::Invalid {
        op,
        message: "null function".into(),
    })
}

fn owned_fn(f: impl Fn(&[Array]) -> Result<Vec<Array>> + 'static) -> UniquePtr<ArrayFn> {
    ffi::array_fn_from_rust(adapt(Rc::new(f), None))
}

/// Compiles `f`: MLX traces it on the first calls and then replays a fused
/// graph (re-tracing when input shapes change unless `shapeless`). Side
/// effects of `f` happen only while tracing.
#[track_caller]
pub fn compile(
    f: impl Fn(&[Array]) -> Result<Vec<Array>> + 'static,
    shapeless: bool,
) -> Result<Function> {
    let base = owned_fn(f);
    let base_ref = function_ref(&base, "compile")?;
    let inner = ffi::array_fn_compile(base_ref, shapeless)
        .map_err(|e| transform_error("compile", &[], e))?;
    Ok(Function { inner })
}

/// Gradient checkpointing: the returned function does not keep `f`'s
/// intermediate values for the backward pass but recomputes them. The
/// recomputation depends on the cotangents of `f`'s outputs, so it runs just
/// before the backward step that needs it: at most one checkpointed call's
/// intermediates are alive at a time along a chain of such calls.
#[track_caller]
pub fn checkpoint(f: impl Fn(&[Array]) -> Result<Vec<Array>> + 'static) -> Result<Function> {
    let base = owned_fn(f);
    let base_ref = function_ref(&base, "checkpoint")?;
    let inner =
        ffi::array_fn_checkpoint(base_ref).map_err(|e| transform_error("checkpoint", &[], e))?;
    Ok(Function { inner })
}

/// `f` with a vector-Jacobian product of the caller's. `vjp(primals,
/// cotangents, outputs)` returns one array per primal (zeros where no
/// gradient flows); MLX calls it while building a backward graph, so it
/// builds arrays rather than evaluating them.
#[track_caller]
pub fn custom_vjp(
    f: impl Fn(&[Array]) -> Result<Vec<Array>> + 'static,
    vjp: impl Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + 'static,
) -> Result<Function> {
    let base = owned_fn(f);
    // The bridge passes primals, cotangents and outputs as one list ending
    // in a scalar that holds the number of primals.
    let flat_vjp = owned_fn(move |flat: &[Array]| {
        let malformed = || Error::Invalid {
            op: "custom_vjp",
            message: format!("malformed argument list of {} arrays", flat.len()),
        };
        let (count, rest) = flat.split_last().ok_or_else(malformed)?;
        let primals = usize::try_from(count.item::<i32>()?).map_err(|_| malformed())?;
        if primals > rest.len() || (rest.len() - primals) % 2 != 0 {
            return Err(malformed());
        }
        let outputs = (rest.len() - primals) / 2;
        let (p, tail) = rest.split_at(primals);
        let (c, o) = tail.split_at(outputs);
        let grads = vjp(p, c, o)?;
        if grads.len() != primals {
            return Err(Error::Invalid {
                op: "custom_vjp",
                message: format!(
                    "the vector-Jacobian product returned {} arrays for {primals} primals",
                    grads.len()
                ),
            });
        }
        Ok(grads)
    });
    let base_ref = function_ref(&base, "custom_vjp")?;
    let vjp_ref = function_ref(&flat_vjp, "custom_vjp")?;
    let inner = ffi::array_fn_custom_vjp(base_ref, vjp_ref)
        .map_err(|e| transform_error("custom_vjp", &[], e))?;
    Ok(Function { inner })
}

/// `inputs` unchanged, except that computing them now also computes
/// `dependencies` first: a scheduling constraint (no data flows from
/// `dependencies`, and no gradient flows to them).
#[track_caller]
pub fn depends(inputs: &[Array], dependencies: &[Array]) -> Result<Vec<Array>> {
    let refs: Vec<&Array> = inputs.iter().collect();
    let (i, d) = (list(inputs), list(dependencies));
    let (Some(i), Some(d)) = (i.as_ref(), d.as_ref()) else {
        return Err(Error::Invalid {
            op: "depends",
            message: "null list".into(),
        });
    };
    let out = ffi::depends(i, d).map_err(|e| mlx_error("depends", &refs, e))?;
    unpack(out)
}

/// Turns MLX's compilation on or off globally (on by default).
pub fn set_compile_enabled(enabled: bool) {
    ffi::set_compile_enabled(enabled);
}
