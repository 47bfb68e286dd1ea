//! Reductions, scans and normalisations against naive implementations, over
//! every axis (positive and negative), random axis sets, all axes, with and
//! without `keepdims`.

mod common;

use common::{Nd, assert_close, cases, logsumexp, nd_in, shape_min, softmax};
use mlx_tensor::{Array, Axes, Dtype, Result};
use proptest::prelude::*;

type Reduction = fn(&Array, Axes, bool) -> Result<Array>;

fn sum(xs: &[f64]) -> f64 {
    xs.iter().sum()
}

fn mean(xs: &[f64]) -> f64 {
    sum(xs) / xs.len() as f64
}

fn var(xs: &[f64], ddof: usize) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() as f64 - ddof as f64)
}

fn argmax(xs: &[f64]) -> f64 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as f64
}

fn argmin(xs: &[f64]) -> f64 {
    let neg: Vec<f64> = xs.iter().map(|x| -x).collect();
    argmax(&neg)
}

/// A naive reduction of the elements it is given.
type Reference = fn(&[f64]) -> f64;

/// `(name, op, reference, rtol, atol)`.
fn reductions() -> Vec<(&'static str, Reduction, Reference, f64, f64)> {
    vec![
        ("sum", |a, x, k| a.sum(x, k), sum, 1e-5, 1e-5),
        ("mean", |a, x, k| a.mean(x, k), mean, 1e-5, 1e-5),
        (
            "max",
            |a, x, k| a.max(x, k),
            |v| v.iter().cloned().fold(f64::MIN, f64::max),
            0.0,
            0.0,
        ),
        (
            "min",
            |a, x, k| a.min(x, k),
            |v| v.iter().cloned().fold(f64::MAX, f64::min),
            0.0,
            0.0,
        ),
        (
            "prod",
            |a, x, k| a.prod(x, k),
            |v| v.iter().product(),
            1e-5,
            1e-6,
        ),
        (
            "logsumexp",
            |a, x, k| a.logsumexp(x, k),
            logsumexp,
            1e-5,
            1e-5,
        ),
        ("var0", |a, x, k| a.var(x, k, 0), |v| var(v, 0), 1e-4, 1e-5),
        (
            "std0",
            |a, x, k| a.std(x, k, 0),
            |v| var(v, 0).sqrt(),
            1e-4,
            1e-5,
        ),
        ("var1", |a, x, k| a.var(x, k, 1), |v| var(v, 1), 1e-4, 1e-5),
        (
            "std1",
            |a, x, k| a.std(x, k, 1),
            |v| var(v, 1).sqrt(),
            1e-4,
            1e-5,
        ),
    ]
}

/// Checks every reduction over `axes` (given to MLX as `mlx_axes`).
fn check_reductions(x: &Nd, axes: &[usize], mlx_axes: Axes, keepdims: bool) {
    let a = x.to_array();
    let n: usize = axes.iter().map(|&ax| x.shape[ax]).product();
    for (name, op, reference, rtol, atol) in reductions() {
        if name.ends_with('1') && n < 2 {
            continue; // ddof = 1 over one element divides by zero
        }
        let got = op(&a, mlx_axes.clone(), keepdims).unwrap();
        let want = x.reduce(axes, keepdims, reference);
        assert_close(
            &got,
            &want,
            rtol,
            atol,
            &format!("{name} over {mlx_axes:?} keepdims={keepdims}"),
        );
    }
}

/// Values in `0.5..1.5` with a random sign, so that products stay moderate.
fn moderate(s: impl Strategy<Value = Vec<usize>>) -> impl Strategy<Value = Nd> {
    nd_in(s, -1.0, 1.0).prop_map(|x| {
        x.map(|v| if v < 0.0 { v - 0.5 } else { v + 0.5 })
            .f32_exact()
    })
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn reductions_over_every_axis(x in moderate(shape_min(1, 4, 4)), keepdims in any::<bool>()) {
        let rank = x.shape.len();
        for axis in 0..rank {
            check_reductions(&x, &[axis], Axes::from(axis as i32), keepdims);
            // The same axis counted from the end.
            check_reductions(&x, &[axis], Axes::from(axis as i32 - rank as i32), keepdims);
        }
    }

    #[test]
    fn reductions_over_axis_sets(
        x in moderate(shape_min(1, 4, 4)),
        mask in prop::collection::vec(any::<bool>(), 4),
        keepdims in any::<bool>(),
    ) {
        let axes: Vec<usize> = (0..x.shape.len()).filter(|&a| mask[a]).collect();
        let mlx: Vec<i32> = axes.iter().map(|&a| a as i32).collect();
        check_reductions(&x, &axes, Axes::from(mlx), keepdims);
        let all: Vec<usize> = (0..x.shape.len()).collect();
        check_reductions(&x, &all, Axes::All, keepdims);
    }

    #[test]
    fn arg_reductions(x in nd_in(shape_min(1, 4, 5), -10.0, 10.0), keepdims in any::<bool>()) {
        let a = x.to_array();
        for axis in 0..x.shape.len() {
            let got = a.argmax(Some(axis as i32), keepdims).unwrap();
            prop_assert_eq!(got.dtype(), Dtype::U32);
            assert_close(&got, &x.reduce(&[axis], keepdims, argmax), 0.0, 0.0, "argmax");
            let got = a.argmin(Some(axis as i32 - x.shape.len() as i32), keepdims).unwrap();
            assert_close(&got, &x.reduce(&[axis], keepdims, argmin), 0.0, 0.0, "argmin");
        }
        let flat = Nd::new(&[x.data.len()], x.data.clone());
        let got = a.argmax(None, false).unwrap();
        prop_assert_eq!(got.item::<u32>().unwrap() as f64, argmax(&flat.data));
        let got = a.argmin(None, false).unwrap();
        prop_assert_eq!(got.item::<u32>().unwrap() as f64, argmin(&flat.data));
    }

    #[test]
    fn scans_along_every_axis(
        x in moderate(shape_min(1, 3, 5)),
        reverse in any::<bool>(),
        inclusive in any::<bool>(),
    ) {
        let a = x.to_array();
        let scan = |line: &[f64], init: f64, f: fn(f64, f64) -> f64| -> Vec<f64> {
            let n = line.len();
            let order: Vec<usize> = if reverse { (0..n).rev().collect() } else { (0..n).collect() };
            let mut out = vec![0.0; n];
            let mut acc = init;
            for &i in &order {
                if inclusive {
                    acc = f(acc, line[i]);
                    out[i] = acc;
                } else {
                    out[i] = acc;
                    acc = f(acc, line[i]);
                }
            }
            out
        };
        for axis in 0..x.shape.len() {
            let ax = axis as i32;
            let got = a.cumsum(ax, reverse, inclusive).unwrap();
            let want = x.map_lines(axis, |l| scan(l, 0.0, |p, v| p + v));
            assert_close(&got, &want, 1e-5, 1e-5, "cumsum");
            let got = a.cumprod(ax, reverse, inclusive).unwrap();
            let want = x.map_lines(axis, |l| scan(l, 1.0, |p, v| p * v));
            assert_close(&got, &want, 1e-5, 1e-6, "cumprod");
            if inclusive {
                // Exclusive max/min scans start from the dtype's lowest/highest value.
                let got = a.cummax(ax, reverse, true).unwrap();
                let want = x.map_lines(axis, |l| scan(l, f64::MIN, f64::max));
                assert_close(&got, &want, 0.0, 0.0, "cummax");
                let got = a.cummin(ax - x.shape.len() as i32, reverse, true).unwrap();
                let want = x.map_lines(axis, |l| scan(l, f64::MAX, f64::min));
                assert_close(&got, &want, 0.0, 0.0, "cummin");
                let got = a.logcumsumexp(ax, reverse, true).unwrap();
                let want = x.map_lines(axis, |l| {
                    scan(l, f64::NEG_INFINITY, common::logaddexp)
                });
                assert_close(&got, &want, 1e-5, 1e-5, "logcumsumexp");
            }
        }
    }

    #[test]
    fn softmax_and_log_softmax(x in nd_in(shape_min(1, 4, 5), -20.0, 20.0), precise in any::<bool>()) {
        let a = x.to_array();
        for axis in 0..x.shape.len() {
            let want = x.map_lines(axis, softmax);
            let got = a.softmax(axis as i32, precise).unwrap();
            assert_close(&got, &want, 1e-5, 1e-6, "softmax");
            let want_log = x.map_lines(axis, |l| {
                let lse = logsumexp(l);
                l.iter().map(|v| v - lse).collect()
            });
            let got = a.log_softmax(axis as i32 - x.shape.len() as i32, precise).unwrap();
            assert_close(&got, &want_log, 1e-5, 1e-5, "log_softmax");
        }
        // Over all axes at once: the whole array sums to one.
        let total: f32 = a.softmax(Axes::All, precise).unwrap().sum(Axes::All, false).unwrap().item().unwrap();
        prop_assert!((total - 1.0).abs() < 1e-5);
    }

    #[test]
    fn low_precision_reductions_accumulate_well(x in nd_in(shape_min(1, 1, 64), 0.0, 1.0)) {
        // bf16 inputs: the sum of up to 64 values in [0, 1) stays within bf16
        // rounding of the exact result.
        let got = x.to_array_as(Dtype::BF16).sum(0, false).unwrap();
        let exact: f64 = x.data.iter().map(|&v| f64::from(mlx_tensor::bf16::from_f64(v).to_f32())).sum();
        let v = got.item::<f32>().unwrap() as f64;
        prop_assert!((v - exact).abs() <= exact * 8e-3 + 1e-3, "bf16 sum {} vs {}", v, exact);
        // Precise softmax of bf16 logits matches the f32 one to bf16 precision.
        let lo = x.to_array_as(Dtype::BF16).mul_scalar(10.0).unwrap();
        let p = lo.softmax(0, true).unwrap();
        prop_assert_eq!(p.dtype(), Dtype::BF16);
        let q = lo.as_type(Dtype::F32).unwrap().softmax(0, false).unwrap();
        let (p, q) = (common::read(&p), common::read(&q));
        common::assert_values(&p, &q, 8e-3, 1e-4, "precise bf16 softmax");
    }
}

#[test]
fn all_and_any() {
    let x = Array::from_slice(&[true, false, true, true, true, true], &[2, 3]).unwrap();
    assert_eq!(
        x.all(1, false).unwrap().to_vec::<bool>().unwrap(),
        [false, true]
    );
    assert_eq!(
        x.any(0, false).unwrap().to_vec::<bool>().unwrap(),
        [true, true, true]
    );
    assert!(!x.all(Axes::All, false).unwrap().item::<bool>().unwrap());
    assert_eq!(x.all(Axes::All, true).unwrap().shape().dims(), [1, 1]);
}

#[test]
fn reductions_of_integers_and_empty_axes() {
    let x = Array::from_slice(&[1i32, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
    let s = x.sum(Axes::All, false).unwrap();
    assert_eq!(s.dtype(), Dtype::I32);
    assert_eq!(s.item::<i32>().unwrap(), 21);
    assert_eq!(x.max(0, false).unwrap().to_vec::<i32>().unwrap(), [4, 5, 6]);
    // The mean of integers is a float.
    assert!(x.mean(Axes::All, false).unwrap().dtype().is_float());
    // An empty axis list reduces nothing.
    let none = x.sum(Vec::<i32>::new(), false).unwrap();
    assert_eq!(none.to_vec::<i32>().unwrap(), [1, 2, 3, 4, 5, 6]);
    // Sum over a zero-size axis is zero.
    let e = Array::zeros(&[0, 3], Dtype::F32).unwrap();
    assert_eq!(e.sum(0, false).unwrap().to_vec::<f32>().unwrap(), [0.0; 3]);
}
