//! Helpers shared by the mlx-nn integration tests: fixtures, comparisons and
//! central finite differences.

#![allow(dead_code)]

pub mod transformer;

use std::collections::HashMap;
use std::path::PathBuf;

use mlx_tensor::{Array, Dtype, io};

/// The directory of the committed fixtures.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// A fixture file: tensors and the parsed `cases` metadata.
pub struct Fixture {
    pub tensors: HashMap<String, Array>,
    pub meta: serde_json::Value,
}

impl Fixture {
    /// Loads `tests/fixtures/<name>`.
    pub fn load(name: &str) -> Fixture {
        let file = io::load_safetensors(fixtures_dir().join(name)).expect("fixture file");
        let meta = serde_json::from_str(file.metadata.get("cases").expect("cases metadata"))
            .expect("metadata JSON");
        Fixture {
            tensors: file.tensors,
            meta,
        }
    }

    /// Tensor `key` (panics with the key when absent).
    pub fn get(&self, key: &str) -> Array {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("fixture tensor `{key}` missing"))
            .clone()
    }
}

/// The elements as `f32`.
pub fn f32s(a: &Array) -> Vec<f32> {
    a.to_vec::<f32>().expect("to_vec")
}

/// The elements as `f64` (other dtypes read through `f32`, so no `float64`
/// operation runs where the device has none).
pub fn f64s(a: &Array) -> Vec<f64> {
    if a.dtype() == Dtype::F64 {
        return a.to_vec::<f64>().expect("to_vec f64");
    }
    a.as_type(Dtype::F32)
        .and_then(|x| x.to_vec::<f32>())
        .expect("to_vec f32")
        .into_iter()
        .map(f64::from)
        .collect()
}

/// A scalar as `f64`.
pub fn scalar(a: &Array) -> f64 {
    let v = f64s(a);
    assert_eq!(v.len(), 1, "not a scalar: {a:?}");
    v[0]
}

/// Asserts identical shapes and bit-identical `f32` elements.
pub fn assert_bits_eq(actual: &Array, expected: &Array, what: &str) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shapes");
    let a: Vec<u32> = f32s(actual).iter().map(|x| x.to_bits()).collect();
    let e: Vec<u32> = f32s(expected).iter().map(|x| x.to_bits()).collect();
    if a != e {
        panic!(
            "{what}: not bit-identical\n actual   {:?}\n expected {:?}",
            f32s(actual),
            f32s(expected)
        );
    }
}

/// Asserts identical shapes and `|a - e| <= atol + rtol·|e|` everywhere.
pub fn assert_close(actual: &Array, expected: &Array, rtol: f64, atol: f64, what: &str) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shapes");
    let a = f64s(actual);
    let e = f64s(expected);
    for (i, (x, y)) in a.iter().zip(&e).enumerate() {
        let ok = (x - y).abs() <= atol + rtol * y.abs() || (x.is_nan() && y.is_nan());
        assert!(
            ok,
            "{what}: element {i}: {x} vs {y}\n actual   {a:?}\n expected {e:?}"
        );
    }
}

/// An array of `shape` from `f64` values, in `dtype`.
pub fn array(values: &[f64], shape: &[i32], dtype: Dtype) -> Array {
    Array::from_slice(values, shape)
        .and_then(|a| a.as_type(dtype))
        .expect("array")
}

/// Normal random values with a fixed seed.
pub fn randn(shape: &[i32], seed: u64, dtype: Dtype) -> Array {
    let key = mlx_tensor::random::key(seed).expect("key");
    mlx_tensor::random::normal(shape, Dtype::F32, 0.0, 1.0, Some(&key))
        .and_then(|a| a.as_type(dtype))
        .and_then(|a| {
            a.eval()?;
            Ok(a)
        })
        .expect("normal")
}

/// Settings of a finite-difference check.
#[derive(Clone, Copy, Debug)]
pub struct FdCheck {
    /// The step.
    pub eps: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Coordinates checked per input (spread over the input).
    pub max_coords: usize,
}

impl FdCheck {
    /// Settings for `f64` inputs. MLX's CPU kernels of `exp`, `erf`,
    /// `sigmoid`, … compute `f64` at about `f32` accuracy (relative error
    /// ~3e-8), so the step cannot be tiny: 2e-3 keeps both the truncation
    /// error (~4e-6) and the rounding noise (~2e-5·|f|) small.
    pub fn f64() -> Self {
        FdCheck {
            eps: 2e-3,
            rtol: 1e-3,
            atol: 2e-4,
            max_coords: 12,
        }
    }

    /// Settings for `f32` inputs.
    pub fn f32() -> Self {
        FdCheck {
            eps: 1e-2,
            rtol: 2e-2,
            atol: 2e-3,
            max_coords: 12,
        }
    }

    /// The settings for `dtype`.
    pub fn for_dtype(dtype: Dtype) -> Self {
        if dtype == Dtype::F64 {
            Self::f64()
        } else {
            Self::f32()
        }
    }
}

fn with_element(x: &Array, index: usize, delta: f64) -> Array {
    let dtype = x.dtype();
    let mut v = f64s(x);
    v[index] += delta;
    array(&v, &x.shape(), dtype)
}

/// Compares the gradient of the scalar function `f` with respect to each
/// input in `which` (autograd through MLX) with central finite differences
/// on up to `max_coords` coordinates of each input.
pub fn check_gradients(
    f: &dyn Fn(&[Array]) -> mlx_nn::Result<Array>,
    inputs: &[Array],
    which: &[usize],
    check: FdCheck,
    what: &str,
) {
    let argnums: Vec<i32> = which.iter().map(|&i| i as i32).collect();
    let (_, grads) = mlx_tensor::transforms::value_and_grad(
        |xs: &[Array]| -> mlx_tensor::Result<Vec<Array>> {
            f(xs)
                .map(|y| vec![y])
                .map_err(|e| mlx_tensor::Error::Invalid {
                    op: "test",
                    message: e.to_string(),
                })
        },
        inputs,
        &argnums,
    )
    .unwrap_or_else(|e| panic!("{what}: autograd failed: {e}"));
    let eval = |xs: &[Array]| -> f64 {
        scalar(&f(xs).unwrap_or_else(|e| panic!("{what}: forward failed: {e}")))
    };
    for (slot, &i) in which.iter().enumerate() {
        let analytic = f64s(&grads[slot]);
        let n = inputs[i].size();
        let stride = (n / check.max_coords).max(1);
        for j in (0..n).step_by(stride).take(check.max_coords) {
            let mut plus = inputs.to_vec();
            plus[i] = with_element(&inputs[i], j, check.eps);
            let mut minus = inputs.to_vec();
            minus[i] = with_element(&inputs[i], j, -check.eps);
            let numeric = (eval(&plus) - eval(&minus)) / (2.0 * check.eps);
            let a = analytic[j];
            assert!(
                (a - numeric).abs() <= check.atol + check.rtol * numeric.abs().max(a.abs()),
                "{what}: input {i}, element {j}: autograd {a} vs finite differences {numeric}"
            );
        }
    }
}

/// Reduces any output to a scalar with fixed random weights, so every
/// element's gradient matters: `sum(y · r)`.
pub fn project(y: &Array, seed: u64) -> mlx_nn::Result<Array> {
    let r = randn(&y.shape(), seed, y.dtype());
    Ok(y.multiply(&r)?.sum(mlx_tensor::Axes::All, false)?)
}

/// Whether MLX runs `f64` here (CPU only).
pub fn f64_supported() -> bool {
    let x = Array::ones(&[2, 2], Dtype::F64).expect("ones");
    x.matmul(&x).and_then(|y| y.eval()).is_ok()
}
