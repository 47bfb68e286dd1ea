//! Function transformations of Rust closures: gradients against closed forms
//! and central finite differences, vjp/jvp, compile, checkpoint, and failing
//! or panicking closures (an `Err`, never an abort; the process stays usable).

mod common;

use common::{Nd, assert_close, nd_in, shape};
use mlx_tensor::transforms::{
    checkpoint, compile, custom_vjp, depends, grad, jvp, value_and_grad, vjp,
};
use mlx_tensor::{Array, Axes, Dtype, Error, Result};
use proptest::prelude::*;

fn sum_of_squares(x: &Array) -> Result<Array> {
    x.square()?.sum(Axes::All, false)
}

/// Sizes of the test MLP: batch, inputs, hidden units.
const B: usize = 4;
const D: usize = 3;
const H: usize = 5;

/// The MLP loss `mean((tanh(x W1 + b1) W2 - y)^2)` in MLX.
fn mlp_loss(params: &[Array], x: &Array, y: &Array) -> Result<Array> {
    let h = x.matmul(&params[0])?.add(&params[1])?.tanh()?;
    let out = h.matmul(&params[2])?;
    out.subtract(y)?.square()?.mean(Axes::All, false)
}

/// The same loss in `f64`, for finite differences.
fn mlp_loss_f64(w1: &[f64], b1: &[f64], w2: &[f64], x: &[f64], y: &[f64]) -> f64 {
    let mut total = 0.0;
    for r in 0..B {
        let mut out = 0.0;
        for j in 0..H {
            let pre: f64 = (0..D).map(|i| x[r * D + i] * w1[i * H + j]).sum::<f64>() + b1[j];
            out += pre.tanh() * w2[j];
        }
        total += (out - y[r]).powi(2);
    }
    total / B as f64
}

proptest! {
    #![proptest_config(common::cases(24))]

    #[test]
    fn grad_of_sum_of_squares_is_twice_x(x in nd_in(shape(3, 4), -5.0, 5.0)) {
        let g = grad(sum_of_squares, &x.to_array()).unwrap();
        assert_close(&g, &x.map(|v| 2.0 * v), 0.0, 0.0, "grad sum x^2");
    }

    #[test]
    fn mlp_gradients_match_finite_differences(
        w1 in prop::collection::vec(-1.0f32..1.0, D * H),
        b1 in prop::collection::vec(-0.5f32..0.5, H),
        w2 in prop::collection::vec(-1.0f32..1.0, H),
        x in prop::collection::vec(-1.0f32..1.0, B * D),
        y in prop::collection::vec(-1.0f32..1.0, B),
    ) {
        let params = vec![
            Array::from_slice(&w1, &[D as i32, H as i32]).unwrap(),
            Array::from_slice(&b1, &[H as i32]).unwrap(),
            Array::from_slice(&w2, &[H as i32, 1]).unwrap(),
        ];
        let xa = Array::from_slice(&x, &[B as i32, D as i32]).unwrap();
        let ya = Array::from_slice(&y, &[B as i32, 1]).unwrap();
        let calls = std::cell::Cell::new(0);
        let (values, grads) = value_and_grad(
            |p: &[Array]| {
                calls.set(calls.get() + 1);
                Ok(vec![mlp_loss(p, &xa, &ya)?])
            },
            &params,
            &[0, 1, 2],
        ).unwrap();
        prop_assert_eq!(calls.get(), 1, "the closure runs once per call");
        prop_assert_eq!(grads.len(), 3);
        let f64s = |v: &[f32]| v.iter().map(|&t| f64::from(t)).collect::<Vec<f64>>();
        let mut p64 = [f64s(&w1), f64s(&b1), f64s(&w2)];
        let (x64, y64) = (f64s(&x), f64s(&y));
        let loss = mlp_loss_f64(&p64[0], &p64[1], &p64[2], &x64, &y64);
        prop_assert!((f64::from(values[0].item::<f32>().unwrap()) - loss).abs() < 1e-5 * (1.0 + loss));
        let eps = 1e-5;
        for which in 0..3 {
            let got = common::read(&grads[which]);
            for i in 0..p64[which].len() {
                let orig = p64[which][i];
                p64[which][i] = orig + eps;
                let up = mlp_loss_f64(&p64[0], &p64[1], &p64[2], &x64, &y64);
                p64[which][i] = orig - eps;
                let down = mlp_loss_f64(&p64[0], &p64[1], &p64[2], &x64, &y64);
                p64[which][i] = orig;
                let fd = (up - down) / (2.0 * eps);
                prop_assert!((got[i] - fd).abs() <= 1e-4 + 1e-3 * fd.abs(), "param {} [{}]: {} vs {}", which, i, got[i], fd);
            }
        }
    }

    #[test]
    fn vjp_and_jvp_match_closed_forms(
        x in nd_in(shape(2, 4), -3.0, 3.0),
        seeds in prop::collection::vec(-2.0f32..2.0, 64),
    ) {
        let n = x.data.len();
        let y = Nd::from_f32(&x.shape, &seeds[..n]);
        let c1 = Nd::from_f32(&x.shape, &seeds[16..16 + n]);
        let c2 = Nd::from_f32(&x.shape, &seeds[32..32 + n]);
        // f(x, y) = (x * y, sin x)
        let f = |p: &[Array]| Ok(vec![p[0].multiply(&p[1])?, p[0].sin()?]);
        let primals = [x.to_array(), y.to_array()];
        let (outs, grads) = vjp(f, &primals, &[c1.to_array(), c2.to_array()]).unwrap();
        assert_close(&outs[0], &x.zip(&y, |a, b| a * b).f32_exact(), 1e-6, 0.0, "vjp output");
        let gx = Nd::from_fn(&x.shape, |i| c1.at(i) * y.at(i) + c2.at(i) * x.at(i).cos());
        let gy = Nd::from_fn(&x.shape, |i| c1.at(i) * x.at(i));
        assert_close(&grads[0], &gx, 1e-5, 1e-5, "vjp dx");
        assert_close(&grads[1], &gy, 1e-5, 1e-6, "vjp dy");
        let (outs, tangents) = jvp(f, &primals, &[c1.to_array(), c2.to_array()]).unwrap();
        assert_close(&outs[1], &x.map(f64::sin), 1e-5, 1e-6, "jvp output");
        let t0 = Nd::from_fn(&x.shape, |i| c1.at(i) * y.at(i) + x.at(i) * c2.at(i));
        let t1 = Nd::from_fn(&x.shape, |i| x.at(i).cos() * c1.at(i));
        assert_close(&tangents[0], &t0, 1e-5, 1e-5, "jvp 0");
        assert_close(&tangents[1], &t1, 1e-5, 1e-5, "jvp 1");
    }
}

type ArrayFn<'a> = dyn Fn(&[Array]) -> Result<Vec<Array>> + 'a;

/// `sum(f(inputs)[0]^2)`, a scalar loss over the first output of `f`.
fn scalar_loss<'a>(f: &'a ArrayFn<'a>) -> impl Fn(&[Array]) -> Result<Vec<Array>> + 'a {
    move |p| Ok(vec![f(p)?[0].square()?.sum(Axes::All, false)?])
}

fn fused(xs: &[Array]) -> Result<Vec<Array>> {
    let (x, y) = (&xs[0], &xs[1]);
    Ok(vec![
        x.exp()?.multiply(y)?.add(&x.sin()?)?.mul_scalar(0.5)?,
        x.tanh()?.sum(Axes::All, false)?,
    ])
}

#[test]
fn compile_gives_identical_results_and_gradients() {
    let compiled = compile(fused, false).unwrap();
    let shapeless = compile(fused, true).unwrap();
    for (round, n) in [3, 3, 3, 3, 5, 5, 2].into_iter().enumerate() {
        let x = Array::linspace(-2.0, 2.0 + round as f64, n * 4, Dtype::F32)
            .unwrap()
            .reshape(&[n, 4])
            .unwrap();
        let y = Array::linspace(1.0, -1.0, n * 4, Dtype::F32)
            .unwrap()
            .reshape(&[n, 4])
            .unwrap();
        let plain = fused(&[x.clone(), y.clone()]).unwrap();
        for f in [&compiled, &shapeless] {
            let got = f.call(&[x.clone(), y.clone()]).unwrap();
            assert_eq!(got.len(), 2);
            for (g, p) in got.iter().zip(&plain) {
                let (g, p) = (common::read(g), common::read(p));
                common::assert_values(&g, &p, 0.0, 0.0, "compiled vs plain");
            }
        }
        // Gradients through the compiled function equal the plain ones.
        let c = compiled.as_closure();
        let (_, g1) = value_and_grad(scalar_loss(&c), &[x.clone(), y.clone()], &[0, 1]).unwrap();
        let (_, g2) =
            value_and_grad(scalar_loss(&fused), &[x.clone(), y.clone()], &[0, 1]).unwrap();
        for (a, b) in g1.iter().zip(&g2) {
            common::assert_values(
                &common::read(a),
                &common::read(b),
                0.0,
                0.0,
                "compiled grads",
            );
        }
    }
}

#[test]
fn compile_traces_then_replays() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let traces = Arc::new(AtomicUsize::new(0));
    let counter = traces.clone();
    let f = compile(
        move |xs: &[Array]| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(vec![xs[0].square()?.add_scalar(1.0)?])
        },
        false,
    )
    .unwrap();
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    for _ in 0..5 {
        assert_eq!(
            f.call(std::slice::from_ref(&x)).unwrap()[0]
                .to_vec::<f32>()
                .unwrap(),
            [2.0, 5.0]
        );
    }
    let after_same_shape = traces.load(Ordering::SeqCst);
    assert!(
        after_same_shape <= 2,
        "traced {after_same_shape} times for one shape"
    );
    let z = Array::from_slice(&[3.0f32, 0.0, 1.0], &[3]).unwrap();
    assert_eq!(
        f.call(&[z]).unwrap()[0].to_vec::<f32>().unwrap(),
        [10.0, 1.0, 2.0]
    );
    assert!(
        traces.load(Ordering::SeqCst) > after_same_shape,
        "a new shape retraces"
    );
}

#[test]
fn custom_vjp_uses_the_given_product() {
    // f(x, y) = x * y with a vjp that reports 3 * cot for x and the true
    // product for y: the gradient must be the custom one, the value f's.
    let f = custom_vjp(
        |xs: &[Array]| Ok(vec![xs[0].multiply(&xs[1])?]),
        |primals: &[Array], cot: &[Array], outputs: &[Array]| {
            assert_eq!((primals.len(), cot.len(), outputs.len()), (2, 1, 1));
            Ok(vec![cot[0].mul_scalar(3.0)?, cot[0].multiply(&primals[0])?])
        },
    )
    .unwrap();
    let x = Array::from_slice(&[1.0f32, 2.0, -4.0], &[3]).unwrap();
    let y = Array::from_slice(&[0.5f32, -1.0, 2.0], &[3]).unwrap();
    let summed =
        |xs: &[Array]| -> Result<Vec<Array>> { Ok(vec![f.call(xs)?[0].sum(Axes::All, false)?]) };
    let (v, g) = value_and_grad(summed, &[x.clone(), y.clone()], &[0, 1]).unwrap();
    let direct = x.multiply(&y).unwrap().sum(Axes::All, false).unwrap();
    assert_eq!(v[0].item::<f32>().unwrap(), direct.item::<f32>().unwrap());
    assert_eq!(g[0].to_vec::<f32>().unwrap(), vec![3.0; 3]);
    assert_eq!(g[1].to_vec::<f32>().unwrap(), x.to_vec::<f32>().unwrap());

    // A vjp that returns the wrong number of arrays is an error, not a crash.
    let bad = custom_vjp(
        |xs: &[Array]| Ok(vec![xs[0].square()?]),
        |_p: &[Array], cot: &[Array], _o: &[Array]| Ok(vec![cot[0].clone(), cot[0].clone()]),
    )
    .unwrap();
    let summed =
        |xs: &[Array]| -> Result<Vec<Array>> { Ok(vec![bad.call(xs)?[0].sum(Axes::All, false)?]) };
    let err = value_and_grad(summed, std::slice::from_ref(&x), &[0]).unwrap_err();
    assert!(err.to_string().contains("2 arrays for 1 primals"), "{err}");
}

#[test]
fn depends_keeps_values_and_passes_no_gradient() {
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let d = Array::from_slice(&[10.0f32], &[1]).unwrap();
    let out = depends(std::slice::from_ref(&x), std::slice::from_ref(&d)).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    // d/dx sum((x after d)^2) = 2x; nothing flows to d.
    let f = |xs: &[Array]| -> Result<Vec<Array>> {
        let y = depends(&xs[..1], &xs[1..])?.remove(0);
        Ok(vec![
            y.square()?
                .sum(Axes::All, false)?
                .add(&xs[1].sum(Axes::All, false)?.mul_scalar(0.0)?)?,
        ])
    };
    let (_, g) = value_and_grad(f, &[x, d], &[0, 1]).unwrap();
    assert_eq!(g[0].to_vec::<f32>().unwrap(), vec![2.0, 4.0]);
    assert_eq!(g[1].to_vec::<f32>().unwrap(), vec![0.0]);
}

#[test]
fn checkpoint_gives_the_same_gradients() {
    let block = |xs: &[Array]| -> Result<Vec<Array>> {
        let h = xs[0].matmul(&xs[1])?.tanh()?;
        Ok(vec![h.matmul(&xs[1].t()?)?.sin()?])
    };
    let ck = checkpoint(block).unwrap();
    let key = mlx_tensor::random::key(5).unwrap();
    let x = mlx_tensor::random::normal(&[3, 4], Dtype::F32, 0.0, 1.0, Some(&key)).unwrap();
    let w = mlx_tensor::random::normal(
        &[4, 4],
        Dtype::F32,
        0.0,
        0.5,
        Some(&mlx_tensor::random::key(6).unwrap()),
    )
    .unwrap();
    let ckf = ck.as_closure();
    let (v1, g1) = value_and_grad(scalar_loss(&ckf), &[x.clone(), w.clone()], &[0, 1]).unwrap();
    let (v2, g2) = value_and_grad(scalar_loss(&block), &[x, w], &[0, 1]).unwrap();
    assert_eq!(v1[0].item::<f32>().unwrap(), v2[0].item::<f32>().unwrap());
    for (a, b) in g1.iter().zip(&g2) {
        common::assert_values(
            &common::read(a),
            &common::read(b),
            0.0,
            0.0,
            "checkpointed grads",
        );
    }
}

#[test]
fn value_and_grad_returns_aux_outputs_and_selected_gradients() {
    let x = Array::from_slice(&[1.0f32, -2.0, 3.0], &[3]).unwrap();
    let y = Array::from_slice(&[0.5f32, 0.5, 0.5], &[3]).unwrap();
    let (values, grads) = value_and_grad(
        |p: &[Array]| {
            Ok(vec![
                p[0].multiply(&p[1])?.sum(Axes::All, false)?,
                p[0].add(&p[1])?,
            ])
        },
        &[x.clone(), y.clone()],
        &[1],
    )
    .unwrap();
    assert_eq!(values.len(), 2);
    assert_eq!(values[0].item::<f32>().unwrap(), 1.0);
    assert_eq!(values[1].to_vec::<f32>().unwrap(), [1.5, -1.5, 3.5]);
    assert_eq!(grads.len(), 1);
    assert_eq!(grads[0].to_vec::<f32>().unwrap(), [1.0, -2.0, 3.0]);
    // The exact figures of FFI-NOTES: grad(sum x^2) at [1, -2, 3] is [2, -4, 6], value 14.
    let (v, g) =
        value_and_grad(|p: &[Array]| Ok(vec![sum_of_squares(&p[0])?]), &[x], &[0]).unwrap();
    assert_eq!(v[0].item::<f32>().unwrap(), 14.0);
    assert_eq!(g[0].to_vec::<f32>().unwrap(), [2.0, -4.0, 6.0]);
    // stop_gradient blocks the gradient.
    let g = grad(
        |x| x.stop_gradient()?.multiply(x)?.sum(Axes::All, false),
        &y,
    )
    .unwrap();
    assert_eq!(g.to_vec::<f32>().unwrap(), [0.5, 0.5, 0.5]);
}

#[test]
fn non_scalar_output_is_an_error() {
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let err = grad(|x| x.square(), &x).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("value_and_grad"), "{msg}");
    assert!(msg.contains("shape"), "{msg}");
}

/// The typed error a failing closure returns.
fn closure_error() -> Error {
    Error::Invalid {
        op: "my_loss",
        message: "labels are missing".into(),
    }
}

fn check_failures_are_errors(label: &str, call: &dyn Fn(bool) -> Result<Vec<Array>>) {
    // A closure's own Err comes back as itself.
    match call(false) {
        Err(Error::Invalid {
            op: "my_loss",
            message,
        }) => assert_eq!(message, "labels are missing", "{label}"),
        other => panic!("{label}: expected the closure's error, got {other:?}"),
    }
    // A panic comes back as Error::Closure with the panic message.
    match call(true) {
        Err(e @ Error::Closure { .. }) => {
            assert!(e.to_string().contains("boom in closure"), "{label}: {e}")
        }
        other => panic!("{label}: expected Error::Closure, got {other:?}"),
    }
}

#[test]
fn failing_and_panicking_closures_give_errors() {
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let body = |panic: bool| -> Result<Vec<Array>> {
        if panic {
            panic!("boom in closure");
        }
        Err(closure_error())
    };
    check_failures_are_errors("value_and_grad", &|p| {
        value_and_grad(|_: &[Array]| body(p), std::slice::from_ref(&x), &[0]).map(|r| r.1)
    });
    check_failures_are_errors("grad", &|p| {
        grad(|_| body(p).map(|mut v| v.remove(0)), &x).map(|g| vec![g])
    });
    check_failures_are_errors("vjp", &|p| {
        vjp(
            |_: &[Array]| body(p),
            std::slice::from_ref(&x),
            std::slice::from_ref(&x),
        )
        .map(|r| r.1)
    });
    check_failures_are_errors("jvp", &|p| {
        jvp(
            |_: &[Array]| body(p),
            std::slice::from_ref(&x),
            std::slice::from_ref(&x),
        )
        .map(|r| r.1)
    });
    check_failures_are_errors("compile", &|p| {
        let f = compile(move |_: &[Array]| body(p), false)?;
        f.call(std::slice::from_ref(&x))
    });
    check_failures_are_errors("checkpoint", &|p| {
        let f = checkpoint(move |_: &[Array]| body(p))?;
        f.call(std::slice::from_ref(&x))
    });
    // An MLX error inside the closure comes back as that error.
    let err = grad(
        |x| {
            x.matmul(&Array::zeros(&[5, 5], Dtype::F32)?)?
                .sum(Axes::All, false)
        },
        &x,
    )
    .unwrap_err();
    assert!(err.to_string().contains("matmul"), "{err}");
    // The next normal call on this thread works.
    let g = grad(sum_of_squares, &x).unwrap();
    assert_eq!(g.to_vec::<f32>().unwrap(), [2.0, 4.0]);
    let f = compile(|xs: &[Array]| Ok(vec![xs[0].add_scalar(1.0)?]), false).unwrap();
    assert_eq!(
        f.call(&[x]).unwrap()[0].to_vec::<f32>().unwrap(),
        [2.0, 3.0]
    );
}
