//! Errors: bad shapes, dtypes and axes are `Err` values naming the operation,
//! the inputs' dtypes and shapes and the caller's line, on any thread; the
//! process keeps working afterwards. Also what happens when an array built
//! on one thread is evaluated on another.

use std::sync::mpsc;
use std::thread;

use mlx_tensor::{Array, Axes, Dtype, Error, Result, concatenate, where_};

fn f32s(shape: &[i32]) -> Array {
    let n: i32 = shape.iter().product();
    Array::arange(0.0, f64::from(n), 1.0, Dtype::F32)
        .unwrap()
        .reshape(shape)
        .unwrap()
}

/// Asserts an MLX error for `op` with these input descriptions whose message
/// mentions every one of `words`, raised from this file.
#[track_caller]
fn assert_mlx_error(result: Result<Array>, op: &str, inputs: &str, words: &[&str]) {
    let err = result.expect_err("expected an error");
    let text = err.to_string();
    match &err {
        Error::Mlx {
            op: o,
            inputs: i,
            message,
            location,
        } => {
            assert_eq!(*o, op, "{text}");
            assert_eq!(i, inputs, "{text}");
            for w in words {
                assert!(message.contains(w), "`{message}` does not mention `{w}`");
            }
            assert!(
                location.file().ends_with("errors.rs"),
                "location {location}"
            );
        }
        other => panic!("expected Error::Mlx, got {other:?}"),
    }
    assert!(text.starts_with(&format!("{op}({inputs}): ")), "{text}");
}

/// Every kind of bad input, checked; returns how many were checked.
fn bad_inputs() -> usize {
    let a = f32s(&[2, 3]);
    let b = f32s(&[4, 5]);
    let v3 = f32s(&[3]);
    let v2 = f32s(&[2]);
    let i = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    let checks: Vec<(Result<Array>, &str, &str, &[&str])> = vec![
        // Shapes.
        (
            a.matmul(&b),
            "matmul",
            "f32[2, 3], f32[4, 5]",
            &["(2,3)", "(4,5)"],
        ),
        (v3.add(&v2), "add", "f32[3], f32[2]", &["broadcast"]),
        ((&v3 * &v2), "multiply", "f32[3], f32[2]", &["broadcast"]),
        (a.reshape(&[4]), "reshape", "f32[2, 3]", &["size 6", "(4)"]),
        (
            a.broadcast_to(&[3, 3]),
            "broadcast_to",
            "f32[2, 3]",
            &["(2,3)", "(3,3)"],
        ),
        (
            concatenate(&[&a, &b], 0),
            "concatenate",
            "f32[2, 3], f32[4, 5]",
            &["(2,3), (4,5)"],
        ),
        (
            where_(&v2.gt(&v2).unwrap(), &v3, &v3),
            "where",
            "bool[2], f32[3], f32[3]",
            &["broadcast"],
        ),
        (
            a.addmm(&a, &b, 1.0, 1.0),
            "addmm",
            "f32[2, 3], f32[2, 3], f32[4, 5]",
            &["(2,3)", "(4,5)"],
        ),
        // Dtypes.
        (
            i.matmul(&i),
            "matmul",
            "i32[3], i32[3]",
            &["int32", "floating point"],
        ),
        (
            a.bitwise_and(&a),
            "bitwise_and",
            "f32[2, 3], f32[2, 3]",
            &["integer", "float32"],
        ),
        (
            a.take(&a, Some(0)),
            "take",
            "f32[2, 3], f32[2, 3]",
            &["integral"],
        ),
        // Axes.
        (a.sum(2, false), "sum", "f32[2, 3]", &["Invalid axis 2"]),
        (a.sum(-3, true), "sum", "f32[2, 3]", &["Invalid axis -3"]),
        (
            a.max(vec![0, 0], false),
            "max",
            "f32[2, 3]",
            &["Duplicate axes"],
        ),
        (
            a.argmax(Some(5), false),
            "argmax",
            "f32[2, 3]",
            &["Invalid axis 5"],
        ),
        (
            a.softmax(4, false),
            "softmax",
            "f32[2, 3]",
            &["Invalid axis 4"],
        ),
        (
            a.cumsum(2, false, true),
            "cumsum",
            "f32[2, 3]",
            &["out of bounds"],
        ),
        (
            a.transpose(&[0, 0]),
            "transpose",
            "f32[2, 3]",
            &["Repeat axes"],
        ),
        (
            a.swapaxes(0, 2),
            "swapaxes",
            "f32[2, 3]",
            &["Invalid axis 2"],
        ),
        (a.sort(3), "sort", "f32[2, 3]", &["out of bounds"]),
        (
            a.expand_dims(&[4]),
            "expand_dims",
            "f32[2, 3]",
            &["out of bounds"],
        ),
        (a.squeeze(&[0]), "squeeze", "f32[2, 3]", &["Cannot squeeze"]),
        (a.topk(4, 1), "topk", "f32[2, 3]", &["k=4"]),
    ];
    let n = checks.len();
    for (result, op, inputs, words) in checks {
        assert_mlx_error(result, op, inputs, words);
    }
    // Errors this crate raises before calling MLX.
    match a.slice_axis(2, 0, None, 1) {
        Err(
            e @ Error::Invalid {
                op: "slice_axis", ..
            },
        ) => assert!(e.to_string().contains("f32[2, 3]"), "{e}"),
        other => panic!("slice_axis: {other:?}"),
    }
    match a.split(4, 1) {
        Err(e @ Error::Mlx { op: "split", .. }) => {
            assert!(e.to_string().contains("f32[2, 3]"), "{e}")
        }
        other => panic!("split: {other:?}"),
    }
    assert!(matches!(
        concatenate(&[], 0),
        Err(Error::Mlx { .. } | Error::Invalid { .. })
    ));
    n + 3
}

#[test]
fn bad_inputs_are_errors_naming_op_and_shapes() {
    assert!(bad_inputs() > 20);
    // The process keeps working.
    let s: f32 = f32s(&[2, 3]).sum(Axes::All, false).unwrap().item().unwrap();
    assert_eq!(s, 15.0);
}

#[test]
fn errors_on_a_spawned_thread() {
    let handle = thread::spawn(|| {
        let n = bad_inputs();
        let s: f32 = f32s(&[4]).sum(Axes::All, false).unwrap().item().unwrap();
        (n, s)
    });
    let (n, s) = handle.join().expect("the thread returned normally");
    assert!(n > 20);
    assert_eq!(s, 6.0);
    // And this thread still works.
    assert_eq!(
        f32s(&[2]).add_scalar(1.0).unwrap().to_vec::<f32>().unwrap(),
        [1.0, 2.0]
    );
}

#[test]
fn many_threads_at_once() {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                for _ in 0..20 {
                    bad_inputs();
                }
                let x = f32s(&[8, 8]).add_scalar(f64::from(t)).unwrap();
                x.matmul(&x)
                    .unwrap()
                    .sum(Axes::All, false)
                    .unwrap()
                    .item::<f32>()
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<f32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (t, r) in results.iter().enumerate() {
        let x: Vec<f64> = (0..64).map(|i| i as f64 + t as f64).collect();
        let mut total = 0.0;
        for i in 0..8 {
            for j in 0..8 {
                total += (0..8).map(|k| x[i * 8 + k] * x[k * 8 + j]).sum::<f64>();
            }
        }
        assert!(
            (f64::from(*r) - total).abs() < 1e-4 * total,
            "thread {t}: {r} vs {total}"
        );
    }
}

/// An unevaluated array built on one thread and evaluated on another: MLX
/// 0.32 gives each thread its own default stream, so the other thread does
/// not know the array's stream and evaluation fails with an error (no crash).
/// The array stays usable on its own thread. Evaluated arrays can be read
/// anywhere.
#[test]
fn unevaluated_array_on_another_thread_is_an_error() {
    let x = f32s(&[2, 2]);
    x.eval().unwrap();
    let lazy = x.mul_scalar(2.0).unwrap();
    let (tx, rx) = mpsc::channel();
    let sent = lazy.clone();
    let evaluated = x.clone();
    thread::spawn(move || {
        let lazy_result = sent.to_vec::<f32>();
        let eval_result = sent.eval();
        let evaluated_result = evaluated.to_vec::<f32>();
        tx.send((
            lazy_result.map_err(|e| e.to_string()),
            eval_result.map_err(|e| e.to_string()),
            evaluated_result.map_err(|e| e.to_string()),
        ))
        .unwrap();
    })
    .join()
    .unwrap();
    let (lazy_result, eval_result, evaluated_result) = rx.recv().unwrap();
    let message = lazy_result.expect_err("reading an unevaluated array on another thread fails");
    assert!(message.contains("Stream"), "{message}");
    assert!(message.contains("to_vec"), "{message}");
    assert!(eval_result.is_err());
    assert_eq!(evaluated_result.unwrap(), [0.0, 1.0, 2.0, 3.0]);
    // Back on the thread that built it, the same array evaluates.
    assert_eq!(lazy.to_vec::<f32>().unwrap(), [0.0, 2.0, 4.0, 6.0]);

    // Built on a thread that has exited: evaluating here fails the same way.
    let orphan = thread::spawn(|| f32s(&[3]).add_scalar(1.0).unwrap())
        .join()
        .unwrap();
    let err = orphan
        .eval()
        .expect_err("its stream belongs to the exited thread");
    assert!(err.to_string().contains("Stream"), "{err}");
    // Evaluating before sending is the fix.
    let ready = thread::spawn(|| {
        let a = f32s(&[3]).add_scalar(1.0).unwrap();
        a.eval().unwrap();
        a
    })
    .join()
    .unwrap();
    assert_eq!(ready.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0]);
    // And operations on it here work.
    assert_eq!(
        ready.mul_scalar(2.0).unwrap().to_vec::<f32>().unwrap(),
        [2.0, 4.0, 6.0]
    );
}
