//! Element-wise operations against naive `f64` implementations: unary math
//! functions over their domains, binary operations with NumPy broadcasting
//! over random broadcast-compatible shapes, comparisons, logic and bitwise
//! operations, `where_`, and the operator overloads.

mod common;

use common::{Nd, assert_close, broadcast_nds, cases, erf, logaddexp, nd_in, shape};
use mlx_tensor::{Array, Dtype, Result, where_};
use proptest::prelude::*;

type UnaryFn = fn(&Array) -> Result<Array>;

/// `(name, op, reference, domain low, domain high, rtol, atol)`.
type UnaryCase = (&'static str, UnaryFn, fn(f64) -> f64, f32, f32, f64, f64);

fn unary_cases() -> Vec<UnaryCase> {
    vec![
        ("abs", Array::abs, f64::abs, -5.0, 5.0, 0.0, 0.0),
        ("negative", Array::negative, |x| -x, -5.0, 5.0, 0.0, 0.0),
        (
            "sign",
            Array::sign,
            |x| if x == 0.0 { 0.0 } else { x.signum() },
            -5.0,
            5.0,
            0.0,
            0.0,
        ),
        (
            "reciprocal",
            Array::reciprocal,
            |x| 1.0 / x,
            0.1,
            5.0,
            1e-6,
            0.0,
        ),
        ("floor", Array::floor, f64::floor, -5.0, 5.0, 0.0, 0.0),
        ("ceil", Array::ceil, f64::ceil, -5.0, 5.0, 0.0, 0.0),
        ("square", Array::square, |x| x * x, -5.0, 5.0, 1e-6, 0.0),
        ("sqrt", Array::sqrt, f64::sqrt, 0.0, 9.0, 1e-6, 0.0),
        (
            "rsqrt",
            Array::rsqrt,
            |x| 1.0 / x.sqrt(),
            0.01,
            9.0,
            1e-5,
            0.0,
        ),
        ("exp", Array::exp, f64::exp, -10.0, 10.0, 1e-5, 0.0),
        ("expm1", Array::expm1, f64::exp_m1, -2.0, 2.0, 1e-5, 1e-7),
        ("log", Array::log, f64::ln, 0.01, 100.0, 1e-5, 1e-6),
        ("log2", Array::log2, f64::log2, 0.01, 100.0, 1e-5, 1e-6),
        ("log10", Array::log10, f64::log10, 0.01, 100.0, 1e-5, 1e-6),
        ("log1p", Array::log1p, f64::ln_1p, -0.9, 10.0, 1e-5, 1e-7),
        ("sin", Array::sin, f64::sin, -6.0, 6.0, 1e-5, 1e-6),
        ("cos", Array::cos, f64::cos, -6.0, 6.0, 1e-5, 1e-6),
        ("tan", Array::tan, f64::tan, -1.4, 1.4, 1e-5, 1e-6),
        ("tanh", Array::tanh, f64::tanh, -6.0, 6.0, 1e-5, 1e-6),
        ("sinh", Array::sinh, f64::sinh, -5.0, 5.0, 1e-5, 1e-6),
        ("cosh", Array::cosh, f64::cosh, -5.0, 5.0, 1e-5, 1e-6),
        ("arcsin", Array::arcsin, f64::asin, -0.99, 0.99, 1e-5, 1e-6),
        ("arccos", Array::arccos, f64::acos, -0.99, 0.99, 1e-5, 1e-6),
        ("arctan", Array::arctan, f64::atan, -10.0, 10.0, 1e-5, 1e-6),
        (
            "sigmoid",
            Array::sigmoid,
            |x| 1.0 / (1.0 + (-x).exp()),
            -10.0,
            10.0,
            1e-5,
            1e-7,
        ),
        ("erf", Array::erf, erf, -4.0, 4.0, 1e-5, 1e-6),
        (
            "silu",
            Array::silu,
            |x| x / (1.0 + (-x).exp()),
            -10.0,
            10.0,
            1e-5,
            1e-6,
        ),
    ]
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn unary_ops_match_reference(
        s in shape(3, 5),
        seed in prop::collection::vec(0.0f32..1.0, 125),
    ) {
        for (name, op, reference, lo, hi, rtol, atol) in unary_cases() {
            let n: usize = s.iter().product();
            let values: Vec<f32> = seed[..n].iter().map(|u| lo + (hi - lo) * u).collect();
            let x = Nd::from_f32(&s, &values);
            let got = op(&x.to_array()).unwrap();
            assert_close(&got, &x.map(reference), rtol, atol, name);
        }
    }

    #[test]
    fn erfinv_inverts_erf(x in nd_in(shape(2, 6), -0.99, 0.99)) {
        let y = x.to_array().erfinv().unwrap();
        let back = Nd::new(&x.shape, common::read(&y)).map(erf);
        common::assert_values(&back.data, &x.data, 1e-4, 1e-5, "erf(erfinv(x))");
    }

    #[test]
    fn binary_ops_broadcast((a, b) in broadcast_nds(-3.0, 3.0)) {
        let (xa, xb) = (a.to_array(), b.to_array());
        // Divisors away from zero: |b| + 0.5 with b's sign.
        let d = b.map(|v| if v < 0.0 { v - 0.5 } else { v + 0.5 }).f32_exact();
        let xd = d.to_array();
        let pos = a.map(|v| v.abs() + 0.1).f32_exact();
        let xpos = pos.to_array();
        let tol = (1e-5, 1e-6);
        let checks: Vec<(&str, Array, Nd)> = vec![
            ("add", xa.add(&xb).unwrap(), a.zip(&b, |x, y| x + y)),
            ("subtract", xa.subtract(&xb).unwrap(), a.zip(&b, |x, y| x - y)),
            ("multiply", xa.multiply(&xb).unwrap(), a.zip(&b, |x, y| x * y)),
            ("divide", xa.divide(&xd).unwrap(), a.zip(&d, |x, y| x / y)),
            ("maximum", xa.maximum(&xb).unwrap(), a.zip(&b, f64::max)),
            ("minimum", xa.minimum(&xb).unwrap(), a.zip(&b, f64::min)),
            ("power", xpos.power(&xb).unwrap(), pos.zip(&b, f64::powf)),
            ("logaddexp", xa.logaddexp(&xb).unwrap(), a.zip(&b, logaddexp)),
            ("arctan2", xa.arctan2(&xb).unwrap(), a.zip(&b, f64::atan2)),
            ("floor_divide", xa.floor_divide(&xd).unwrap(), a.zip(&d, |x, y| (x / y).floor())),
        ];
        for (name, got, want) in checks {
            assert_close(&got, &want, tol.0, tol.1, name);
        }
        // Python's remainder has the divisor's sign; near multiples of the
        // divisor the f32 result may land on either side, so compare modulo d.
        let rem = common::read(&xa.remainder(&xd).unwrap());
        let want = a.zip(&d, |x, y| x - (x / y).floor() * y);
        let dd = d.broadcast_to(&want.shape);
        for ((r, w), m) in rem.iter().zip(&want.data).zip(&dd.data) {
            let diff = (r - w).abs();
            prop_assert!(diff < 1e-5 || (diff - m.abs()).abs() < 1e-5, "remainder {r} vs {w} (mod {m})");
            prop_assert!(*r == 0.0 || r.signum() == m.signum() || r.abs() < 1e-6, "sign of remainder {r} mod {m}");
        }
    }

    #[test]
    fn comparisons_broadcast((a, b) in broadcast_nds(-2.0, 2.0)) {
        // Rounded values make ties frequent.
        let (a, b) = (a.map(f64::round), b.map(f64::round));
        let (xa, xb) = (a.to_array(), b.to_array());
        let as_f = |t: bool| if t { 1.0 } else { 0.0 };
        let checks: Vec<(&str, Array, Nd)> = vec![
            ("eq", xa.eq(&xb).unwrap(), a.zip(&b, |x, y| as_f(x == y))),
            ("ne", xa.ne(&xb).unwrap(), a.zip(&b, |x, y| as_f(x != y))),
            ("lt", xa.lt(&xb).unwrap(), a.zip(&b, |x, y| as_f(x < y))),
            ("le", xa.le(&xb).unwrap(), a.zip(&b, |x, y| as_f(x <= y))),
            ("gt", xa.gt(&xb).unwrap(), a.zip(&b, |x, y| as_f(x > y))),
            ("ge", xa.ge(&xb).unwrap(), a.zip(&b, |x, y| as_f(x >= y))),
        ];
        for (name, got, want) in checks {
            prop_assert_eq!(got.dtype(), Dtype::Bool, "{}", name);
            let bools: Vec<f64> = got.to_vec::<bool>().unwrap().into_iter().map(as_f).collect();
            prop_assert_eq!(&bools, &want.data, "{}", name);
            prop_assert_eq!(common::ushape(&got), want.shape.clone(), "{}", name);
        }
        // Logic on the comparison results.
        let p = xa.gt(&xb).unwrap();
        let q = xa.eq(&xb).unwrap();
        let pq = a.zip(&b, |x, y| as_f(x > y));
        let qq = a.zip(&b, |x, y| as_f(x == y));
        let and = p.logical_and(&q).unwrap().to_vec::<bool>().unwrap();
        let or = p.logical_or(&q).unwrap().to_vec::<bool>().unwrap();
        let not = p.logical_not().unwrap().to_vec::<bool>().unwrap();
        for i in 0..pq.data.len() {
            prop_assert_eq!(and[i], pq.data[i] == 1.0 && qq.data[i] == 1.0);
            prop_assert_eq!(or[i], pq.data[i] == 1.0 || qq.data[i] == 1.0);
            prop_assert_eq!(not[i], pq.data[i] != 1.0);
        }
    }

    #[test]
    fn where_broadcasts_three_ways(
        (c, x) in broadcast_nds(-1.0, 1.0),
        y in -5.0f32..5.0,
    ) {
        let cond = c.to_array().gt(&Array::scalar(0.0f32).unwrap()).unwrap();
        let yv = Array::scalar(y).unwrap();
        let got = where_(&cond, &x.to_array(), &yv).unwrap();
        let want = c.zip(&x, |c, x| if c > 0.0 { x } else { f64::from(y) });
        assert_close(&got, &want, 0.0, 0.0, "where");
    }

    #[test]
    fn bitwise_and_shifts(
        a in prop::collection::vec(any::<i32>(), 1..20),
        shift in 0i32..31,
    ) {
        let b: Vec<i32> = a.iter().rev().cloned().collect();
        let (xa, xb) = (Array::from_vec(a.clone()).unwrap(), Array::from_vec(b.clone()).unwrap());
        let and = xa.bitwise_and(&xb).unwrap().to_vec::<i32>().unwrap();
        let or = xa.bitwise_or(&xb).unwrap().to_vec::<i32>().unwrap();
        let xor = xa.bitwise_xor(&xb).unwrap().to_vec::<i32>().unwrap();
        let s = Array::scalar(shift).unwrap();
        let shl = xa.left_shift(&s).unwrap().to_vec::<i32>().unwrap();
        let shr = xa.right_shift(&s).unwrap().to_vec::<i32>().unwrap();
        for i in 0..a.len() {
            prop_assert_eq!(and[i], a[i] & b[i]);
            prop_assert_eq!(or[i], a[i] | b[i]);
            prop_assert_eq!(xor[i], a[i] ^ b[i]);
            prop_assert_eq!(shl[i], a[i].wrapping_shl(shift as u32));
            prop_assert_eq!(shr[i], a[i] >> shift);
        }
    }
}

#[test]
fn accurate_near_zero() {
    // log1p and expm1 keep full relative precision for tiny arguments, where
    // `log(1 + x)` and `exp(x) - 1` lose every digit.
    let xs = [1e-10f32, -3e-9, 1e-7, 2.5e-6, -1e-5];
    let x = Array::from_slice(&xs, &[5]).unwrap();
    let nd = Nd::from_f32(&[5], &xs);
    assert_close(&x.log1p().unwrap(), &nd.map(f64::ln_1p), 1e-6, 0.0, "log1p");
    assert_close(
        &x.expm1().unwrap(),
        &nd.map(f64::exp_m1),
        1e-6,
        0.0,
        "expm1",
    );
    // MLX's f32 erf is accurate in absolute terms only (about 2e-7): it
    // returns 0 below about 1e-6 and is 2% off at 1e-5.
    assert_close(&x.erf().unwrap(), &nd.map(erf), 0.0, 5e-7, "erf");
    // logaddexp of very different or very large arguments does not overflow.
    let a = Array::from_slice(&[1000.0f32, -1000.0, 0.0, f32::NEG_INFINITY], &[4]).unwrap();
    let b = Array::from_slice(&[1000.0f32, 0.0, -80.0, 1.0], &[4]).unwrap();
    let want = Nd::new(
        &[4],
        vec![
            1000.0 + 2f64.ln(),
            logaddexp(-1000.0, 0.0),
            logaddexp(0.0, -80.0),
            1.0,
        ],
    );
    assert_close(
        &a.logaddexp(&b).unwrap(),
        &want,
        1e-6,
        0.0,
        "logaddexp extremes",
    );
}

#[test]
fn special_values_and_clipping() {
    let x = Array::from_slice(
        &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.5, -2.5],
        &[5],
    )
    .unwrap();
    assert_eq!(
        x.is_nan().unwrap().to_vec::<bool>().unwrap(),
        [true, false, false, false, false]
    );
    assert_eq!(
        x.is_inf().unwrap().to_vec::<bool>().unwrap(),
        [false, true, true, false, false]
    );
    assert_eq!(
        x.is_finite().unwrap().to_vec::<bool>().unwrap(),
        [false, false, false, true, true]
    );
    let cleaned = x
        .nan_to_num(0.0, 9.0, -9.0)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(cleaned, [0.0, 9.0, -9.0, 1.5, -2.5]);
    let clipped = x
        .clip(Some(-1.0), Some(1.0))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(&clipped[1..], [1.0, -1.0, 1.0, -1.0]);
    let lower_only = x.clip(Some(0.0), None).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(&lower_only[1..], [f32::INFINITY, 0.0, 1.5, 0.0]);
    let y = Array::from_slice(&[0.125f32, 1.049, -2.551], &[3]).unwrap();
    let rounded = y.round(1).unwrap();
    assert_close(
        &rounded,
        &Nd::new(&[3], vec![0.1, 1.0, -2.6]),
        1e-6,
        0.0,
        "round",
    );
}

#[test]
fn operators_and_weak_scalars() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let b = Array::from_slice(&[10.0f32, 20.0, 30.0], &[1, 3]).unwrap();
    assert_eq!(
        (&a + &b).unwrap().to_vec::<f32>().unwrap(),
        [11.0, 22.0, 33.0]
    );
    assert_eq!(
        (&b - &a).unwrap().to_vec::<f32>().unwrap(),
        [9.0, 18.0, 27.0]
    );
    assert_eq!((&a * &b).unwrap().shape().dims(), [1, 3]);
    assert_eq!(
        (&b / &a).unwrap().to_vec::<f32>().unwrap(),
        [10.0, 10.0, 10.0]
    );
    assert_eq!((-&a).unwrap().to_vec::<f32>().unwrap(), [-1.0, -2.0, -3.0]);
    assert_eq!(
        (&a * 0.5).unwrap().to_vec::<f32>().unwrap(),
        [0.5, 1.0, 1.5]
    );
    // A scalar keeps a low-precision array in its dtype.
    let h = a.as_type(Dtype::BF16).unwrap();
    assert_eq!((&h * 0.5).unwrap().dtype(), Dtype::BF16);
    assert_eq!((&h + 1.0).unwrap().dtype(), Dtype::BF16);
    // Integers stay integers with integral scalars, and become f32 otherwise.
    let i = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    assert_eq!((&i + 1.0).unwrap().dtype(), Dtype::I32);
    assert_eq!((&i * 0.5).unwrap().dtype(), Dtype::F32);
    // A shape mismatch is an Err, not a panic.
    let c = Array::zeros(&[4], Dtype::F32).unwrap();
    assert!((&a + &c).is_err());
    // Zero-size arrays pass through element-wise operations.
    let empty = Array::zeros(&[0, 3], Dtype::F32).unwrap();
    let e = (&empty + &a).unwrap();
    assert_eq!(e.shape().dims(), [0, 3]);
    assert!(e.to_vec::<f32>().unwrap().is_empty());
}
