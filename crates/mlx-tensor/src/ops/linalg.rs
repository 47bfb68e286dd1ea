//! Linear algebra and quantized matrix products.

use mlx_ffi::ffi;

use crate::array::check;
use crate::ops::shape_ops::from_array_vec;
use crate::{Array, Axes, Error, Result};

/// A quantized matrix: packed weights with per-group scales and biases.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// Packed `u32` weights.
    pub weight: Array,
    /// Per-group scales.
    pub scales: Array,
    /// Per-group biases.
    pub biases: Array,
    /// Elements per group (32, 64 or 128).
    pub group_size: i32,
    /// Bits per element (2, 3, 4, 5, 6 or 8).
    pub bits: i32,
}

impl Array {
    /// `beta * self + alpha * (a @ b)`.
    #[track_caller]
    pub fn addmm(&self, a: &Array, b: &Array, alpha: f32, beta: f32) -> Result<Array> {
        check(
            "addmm",
            &[self, a, b],
            ffi::addmm(self.raw(), a.raw(), b.raw(), alpha, beta),
        )
    }

    /// The `ord`-norm over `axes` (vector norm for one axis, matrix norm for
    /// two; `Axes::All` flattens). `ord = 2.0` is the Euclidean norm.
    #[track_caller]
    pub fn norm(&self, ord: f64, axes: impl Into<Axes>, keepdims: bool) -> Result<Array> {
        let axes = axes.into();
        let (list, all) = axes.parts();
        if all {
            // MLX's default for a missing axis is the 2-norm of the flattened array.
            let flat = self.reshape(&[-1])?;
            return check(
                "norm",
                &[self],
                ffi::norm(flat.raw(), ord, &[0], false, keepdims),
            )
            .and_then(|n| {
                if keepdims {
                    n.reshape(&vec![1; self.ndim()])
                } else {
                    Ok(n)
                }
            });
        }
        check(
            "norm",
            &[self],
            ffi::norm(self.raw(), ord, list, false, keepdims),
        )
    }

    /// Quantizes a matrix along its last axis.
    #[track_caller]
    pub fn quantize(&self, group_size: i32, bits: i32) -> Result<Quantized> {
        let parts = crate::array::check_with(
            "quantize",
            &[self],
            ffi::quantize(self.raw(), group_size, bits),
        )?;
        let mut parts = parts
            .as_ref()
            .map(from_array_vec)
            .unwrap_or_else(|| Ok(Vec::new()))?;
        if parts.len() != 3 {
            return Err(Error::Invalid {
                op: "quantize",
                message: format!(
                    "expected weights, scales and biases, got {} arrays",
                    parts.len()
                ),
            });
        }
        let biases = parts.remove(2);
        let scales = parts.remove(1);
        let weight = parts.remove(0);
        Ok(Quantized {
            weight,
            scales,
            biases,
            group_size,
            bits,
        })
    }
}

impl Quantized {
    /// The dense matrix back.
    #[track_caller]
    pub fn dequantize(&self) -> Result<Array> {
        check(
            "dequantize",
            &[&self.weight, &self.scales, &self.biases],
            ffi::dequantize(
                self.weight.raw(),
                self.scales.raw(),
                self.biases.raw(),
                self.group_size,
                self.bits,
            ),
        )
    }

    /// `x @ W.T` (with `transpose`) or `x @ W` using the quantized weights.
    #[track_caller]
    pub fn matmul(&self, x: &Array, transpose: bool) -> Result<Array> {
        check(
            "quantized_matmul",
            &[x, &self.weight],
            ffi::quantized_matmul(
                x.raw(),
                self.weight.raw(),
                self.scales.raw(),
                self.biases.raw(),
                transpose,
                self.group_size,
                self.bits,
            ),
        )
    }

    /// [`gather_mm`] with these stacked quantized weights (`weight: [...,
    /// out, in]` packed): `x[lhs_indices] @ W[rhs_indices].T` (with
    /// `transpose`, else `@ W[rhs_indices]`) without dequantizing `W`.
    /// With `sorted_indices`, `rhs_indices` are ascending.
    #[track_caller]
    pub fn gather_matmul(
        &self,
        x: &Array,
        lhs_indices: Option<&Array>,
        rhs_indices: Option<&Array>,
        transpose: bool,
        sorted_indices: bool,
    ) -> Result<Array> {
        let placeholder = Array::scalar(0u32)?;
        let lhs = lhs_indices.unwrap_or(&placeholder);
        let rhs = rhs_indices.unwrap_or(&placeholder);
        check(
            "gather_qmm",
            &[x, &self.weight],
            ffi::gather_qmm(
                x.raw(),
                self.weight.raw(),
                self.scales.raw(),
                self.biases.raw(),
                lhs.raw(),
                rhs.raw(),
                lhs_indices.is_some(),
                rhs_indices.is_some(),
                transpose,
                self.group_size,
                self.bits,
                sorted_indices,
            ),
        )
    }
}

/// Batched matrix product with gathered operands: `a[lhs_indices] @
/// b[rhs_indices]` without materialising the gathers (the building block of
/// mixture-of-experts layers). With `sorted_indices`, `rhs_indices` are
/// ascending, which lets MLX use a faster kernel.
#[track_caller]
pub fn gather_mm(
    a: &Array,
    b: &Array,
    lhs_indices: Option<&Array>,
    rhs_indices: Option<&Array>,
    sorted_indices: bool,
) -> Result<Array> {
    let placeholder = Array::scalar(0u32)?;
    let lhs = lhs_indices.unwrap_or(&placeholder);
    let rhs = rhs_indices.unwrap_or(&placeholder);
    check(
        "gather_mm",
        &[a, b],
        ffi::gather_mm(
            a.raw(),
            b.raw(),
            lhs.raw(),
            rhs.raw(),
            lhs_indices.is_some(),
            rhs_indices.is_some(),
            sorted_indices,
        ),
    )
}
