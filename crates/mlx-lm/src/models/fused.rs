//! Element-wise pieces of the blocks compiled by MLX into single kernels.
//!
//! Each is compiled once per thread (shapeless, so any shape and dtype
//! reuses the trace) and is differentiable like the uncompiled form. Fusing
//! matters most where a forward pass is launch-bound (decoding a few rows at
//! a time): `silu(gate) * up` is one kernel instead of three.

use mlx_tensor::Array;
use mlx_tensor::transforms::{Function, compile};

use crate::{Error, Result};

thread_local! {
    static SWIGLU: Option<Function> = compile(
        |xs: &[Array]| match xs {
            [gate, up] => Ok(vec![gate.multiply(&gate.sigmoid()?)?.multiply(up)?]),
            _ => Err(mlx_tensor::Error::Invalid {
                op: "swiglu",
                message: format!("expected 2 inputs, got {}", xs.len()),
            }),
        },
        true,
    )
    .ok();
}

/// `silu(gate) * up` (`gate · sigmoid(gate) · up`), fused when MLX's
/// compiler is available (and computed op by op otherwise).
pub(crate) fn swiglu(gate: &Array, up: &Array) -> Result<Array> {
    let fused = SWIGLU.with(|f| f.as_ref().map(|f| f.call(&[gate.clone(), up.clone()])));
    match fused {
        Some(Ok(mut out)) if out.len() == 1 => Ok(out.remove(0)),
        Some(Ok(out)) => Err(Error::InvalidInput {
            message: format!("the fused SwiGLU returned {} arrays", out.len()),
        }),
        Some(Err(e)) => Err(e.into()),
        None => Ok(gate.multiply(&gate.sigmoid()?)?.multiply(up)?),
    }
}
