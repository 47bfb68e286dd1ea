//! Helpers shared by the integration tests: a naive n-dimensional array in
//! `f64` that the tests compute expected results with, proptest strategies
//! for shapes and values, and tolerance checks.

#![allow(dead_code)]

use mlx_tensor::{Array, Dtype};
use proptest::prelude::*;

/// A row-major n-dimensional array of `f64`, the reference implementation.
#[derive(Clone, Debug, PartialEq)]
pub struct Nd {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The elements in row-major order.
    pub data: Vec<f64>,
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut out = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        out[i] = out[i + 1] * shape[i + 1];
    }
    out
}

/// The multi-index of flat position `flat`.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for i in (0..shape.len()).rev() {
        idx[i] = flat % shape[i];
        flat /= shape[i];
    }
    idx
}

/// The flat position of a multi-index.
pub fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(strides(shape)).map(|(i, s)| i * s).sum()
}

/// A shape as MLX wants it.
pub fn dims(shape: &[usize]) -> Vec<i32> {
    shape.iter().map(|&d| d as i32).collect()
}

/// The NumPy broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n {
                a[i + a.len() - n]
            } else {
                1
            };
            let db = if i + b.len() >= n {
                b[i + b.len() - n]
            } else {
                1
            };
            assert!(
                da == db || da == 1 || db == 1,
                "{a:?} and {b:?} do not broadcast"
            );
            da.max(db)
        })
        .collect()
}

impl Nd {
    /// An array from a shape and its data.
    pub fn new(shape: &[usize], data: Vec<f64>) -> Nd {
        assert_eq!(numel(shape), data.len(), "shape {shape:?}");
        Nd {
            shape: shape.to_vec(),
            data,
        }
    }

    /// An array from `f32` data.
    pub fn from_f32(shape: &[usize], data: &[f32]) -> Nd {
        Nd::new(shape, data.iter().map(|&x| f64::from(x)).collect())
    }

    /// Element `f(index)` at every multi-index.
    pub fn from_fn(shape: &[usize], f: impl Fn(&[usize]) -> f64) -> Nd {
        let data = (0..numel(shape)).map(|i| f(&unravel(i, shape))).collect();
        Nd::new(shape, data)
    }

    /// The element at a multi-index.
    pub fn at(&self, idx: &[usize]) -> f64 {
        self.data[ravel(idx, &self.shape)]
    }

    /// The element at a multi-index of a broadcast of this array to a
    /// shape of rank `idx.len()`.
    pub fn at_broadcast(&self, idx: &[usize]) -> f64 {
        let skip = idx.len() - self.shape.len();
        let own: Vec<usize> = self
            .shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if d == 1 { 0 } else { idx[skip + i] })
            .collect();
        self.at(&own)
    }

    /// The MLX array (`f32`) with the same shape and values.
    pub fn to_array(&self) -> Array {
        self.to_array_as(Dtype::F32)
    }

    /// The MLX array of `dtype` with the same shape and values. Other
    /// dtypes than `f64` are built from `f32` host values, so no `float64`
    /// operation runs (MLX's GPU backends have none).
    pub fn to_array_as(&self, dtype: Dtype) -> Array {
        if dtype == Dtype::F64 {
            return Array::from_slice(&self.data, &dims(&self.shape)).unwrap();
        }
        let data: Vec<f32> = self.data.iter().map(|&x| x as f32).collect();
        let a = Array::from_slice(&data, &dims(&self.shape)).unwrap();
        if dtype == Dtype::F32 {
            a
        } else {
            a.as_type(dtype).unwrap()
        }
    }

    /// Element-wise map.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Nd {
        Nd::new(&self.shape, self.data.iter().map(|&x| f(x)).collect())
    }

    /// Element-wise map that also sees the multi-index.
    pub fn map_index(&self, f: impl Fn(&[usize], f64) -> f64) -> Nd {
        Nd::from_fn(&self.shape, |idx| f(idx, self.at(idx)))
    }

    /// The values rounded to `f32` (what an `f32` array of them holds).
    pub fn f32_exact(&self) -> Nd {
        self.map(|v| f64::from(v as f32))
    }

    /// Element-wise function of two broadcast arrays.
    pub fn zip(&self, other: &Nd, f: impl Fn(f64, f64) -> f64) -> Nd {
        let shape = broadcast_shapes(&self.shape, &other.shape);
        Nd::from_fn(&shape, |idx| {
            f(self.at_broadcast(idx), other.at_broadcast(idx))
        })
    }

    /// Broadcast to a shape.
    pub fn broadcast_to(&self, shape: &[usize]) -> Nd {
        Nd::from_fn(shape, |idx| self.at_broadcast(idx))
    }

    /// Reduces `axes` with `f`, which sees the reduced elements in row-major
    /// order of the reduced axes.
    pub fn reduce(&self, axes: &[usize], keepdims: bool, f: impl Fn(&[f64]) -> f64) -> Nd {
        let kept: Vec<usize> = (0..self.shape.len())
            .filter(|a| !axes.contains(a))
            .collect();
        let kept_shape: Vec<usize> = kept.iter().map(|&a| self.shape[a]).collect();
        let red_shape: Vec<usize> = axes.iter().map(|&a| self.shape[a]).collect();
        let mut out = Vec::with_capacity(numel(&kept_shape));
        for o in 0..numel(&kept_shape) {
            let oidx = unravel(o, &kept_shape);
            let mut full = vec![0; self.shape.len()];
            for (k, &a) in kept.iter().enumerate() {
                full[a] = oidx[k];
            }
            let values: Vec<f64> = (0..numel(&red_shape))
                .map(|r| {
                    let ridx = unravel(r, &red_shape);
                    for (k, &a) in axes.iter().enumerate() {
                        full[a] = ridx[k];
                    }
                    self.at(&full)
                })
                .collect();
            out.push(f(&values));
        }
        let shape: Vec<usize> = if keepdims {
            (0..self.shape.len())
                .map(|a| if axes.contains(&a) { 1 } else { self.shape[a] })
                .collect()
        } else {
            kept_shape
        };
        Nd::new(&shape, out)
    }

    /// Replaces every line along `axis` by `f(line)` (same length).
    pub fn map_lines(&self, axis: usize, f: impl Fn(&[f64]) -> Vec<f64>) -> Nd {
        let n = self.shape[axis];
        let stride = strides(&self.shape)[axis];
        let mut out = self.data.clone();
        for start in 0..self.data.len() {
            if unravel(start, &self.shape)[axis] != 0 {
                continue;
            }
            let line: Vec<f64> = (0..n).map(|i| self.data[start + i * stride]).collect();
            let mapped = f(&line);
            assert_eq!(mapped.len(), n);
            for (i, v) in mapped.into_iter().enumerate() {
                out[start + i * stride] = v;
            }
        }
        Nd::new(&self.shape, out)
    }

    /// Permutes the axes (`out.shape[i] = shape[perm[i]]`).
    pub fn permute(&self, perm: &[usize]) -> Nd {
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        Nd::from_fn(&shape, |idx| {
            let mut src = vec![0; idx.len()];
            for (i, &p) in perm.iter().enumerate() {
                src[p] = idx[i];
            }
            self.at(&src)
        })
    }
}

/// Reads an array back as `f64` (through `f32` for low-precision types).
pub fn read(a: &Array) -> Vec<f64> {
    match a.dtype() {
        Dtype::F64 => a.to_vec::<f64>().unwrap(),
        _ => a
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
    }
}

/// Asserts that `actual` has the shape and (within `|a - e| <= atol + rtol
/// |e|`) the values of `expected`. NaN matches NaN, infinities match exactly.
#[track_caller]
pub fn assert_close(actual: &Array, expected: &Nd, rtol: f64, atol: f64, what: &str) {
    let shape: Vec<usize> = actual.shape().iter().map(|&d| d as usize).collect();
    assert_eq!(shape, expected.shape, "{what}: shape");
    assert_values(&read(actual), &expected.data, rtol, atol, what);
}

/// Element-wise closeness of two slices.
#[track_caller]
pub fn assert_values(actual: &[f64], expected: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let ok = if e.is_nan() {
            a.is_nan()
        } else if e.is_infinite() {
            a == e
        } else {
            (a - e).abs() <= atol + rtol * e.abs()
        };
        assert!(
            ok,
            "{what}: element {i}: got {a}, expected {e}\n got {actual:?}\nwant {expected:?}"
        );
    }
}

/// The shape of an array as `usize`s.
pub fn ushape(a: &Array) -> Vec<usize> {
    a.shape().iter().map(|&d| d as usize).collect()
}

/// Shapes of rank `0..=max_rank` with dimensions `1..=max_dim`.
pub fn shape(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_dim, 0..=max_rank)
}

/// Shapes of rank `min_rank..=max_rank` with dimensions `1..=max_dim`.
pub fn shape_min(
    min_rank: usize,
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_dim, min_rank..=max_rank)
}

/// An `Nd` of the given shape strategy with `f32` values in `lo..hi`.
pub fn nd_in(
    shape: impl Strategy<Value = Vec<usize>>,
    lo: f32,
    hi: f32,
) -> impl Strategy<Value = Nd> {
    shape.prop_flat_map(move |s| {
        let n = numel(&s);
        prop::collection::vec(lo..hi, n).prop_map(move |v| Nd::from_f32(&s, &v))
    })
}

/// Two shapes that broadcast together: a random output shape with some
/// dimensions set to 1 and some leading dimensions dropped in each operand.
pub fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    broadcast_pair_up_to(4, 4)
}

/// Like [`broadcast_pair`] with outputs of rank `0..=max_rank` and
/// dimensions `1..=max_dim`.
pub fn broadcast_pair_up_to(
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(max_rank, max_dim)
        .prop_flat_map(|out| {
            let r = out.len();
            (
                Just(out),
                prop::collection::vec(any::<bool>(), r),
                prop::collection::vec(any::<bool>(), r),
                0..=r,
                0..=r,
            )
        })
        .prop_map(|(out, ma, mb, da, db)| {
            let thin = |mask: &[bool], drop: usize| -> Vec<usize> {
                out.iter()
                    .zip(mask)
                    .map(|(&d, &m)| if m { 1 } else { d })
                    .skip(drop)
                    .collect()
            };
            (thin(&ma, da), thin(&mb, db))
        })
}

/// Two `Nd`s of broadcast-compatible shapes with values in `lo..hi`.
pub fn broadcast_nds(lo: f32, hi: f32) -> impl Strategy<Value = (Nd, Nd)> {
    broadcast_pair().prop_flat_map(move |(sa, sb)| {
        let a = prop::collection::vec(lo..hi, numel(&sa));
        let b = prop::collection::vec(lo..hi, numel(&sb));
        (a, b).prop_map(move |(a, b)| (Nd::from_f32(&sa, &a), Nd::from_f32(&sb, &b)))
    })
}

/// Proptest settings with `cases` cases and no persisted failure files.
pub fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The error function: its Taylor series for |x| <= 3, a continued fraction
/// of `erfc` beyond (both accurate to about 1e-13 in f64).
pub fn erf(x: f64) -> f64 {
    if x.abs() > 3.0 {
        let a = x.abs();
        let mut t = a;
        for k in (1..=80).rev() {
            t = a + (k as f64 / 2.0) / t;
        }
        let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / t;
        return x.signum() * (1.0 - erfc);
    }
    let mut sum = 0.0;
    let mut term = x; // (-1)^n x^(2n+1) / n!
    for n in 0..100 {
        sum += term / (2 * n + 1) as f64;
        term *= -x * x / (n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// Numerically stable `ln(e^a + e^b)`.
pub fn logaddexp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + (a.min(b) - m).exp().ln_1p()
}

/// Stable `ln Σ e^x`.
pub fn logsumexp(xs: &[f64]) -> f64 {
    let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Softmax of a slice.
pub fn softmax(xs: &[f64]) -> Vec<f64> {
    let lse = logsumexp(xs);
    xs.iter().map(|x| (x - lse).exp()).collect()
}

/// A fresh, empty temporary directory for `tag`, removed when the returned
/// guard is dropped.
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("mlx-tensor-test-{tag}-"))
        .tempdir()
        .unwrap()
}
