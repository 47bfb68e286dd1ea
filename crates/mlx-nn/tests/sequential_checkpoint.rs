//! `sequential_checkpoint`: chained, checkpointed chunks give the values and
//! gradients of the plain computation and report errors (the memory bound
//! is tested in `sequential_checkpoint_memory.rs`).

mod common;

use common::{assert_close, randn};
use mlx_nn::layers::{Linear, LinearConfig};
use mlx_nn::{Error, VarBuilder, sequential_checkpoint, value_and_grad};
use mlx_tensor::{Array, Axes, Dtype, concatenate};

/// Per chunk: the log-sum-exp of a linear head's outputs (scaled by the
/// chunk index + 1, so that chunks are told apart) and the head outputs'
/// mean square.
fn chunk_math(head: &Linear, i: usize, h: &Array) -> mlx_nn::Result<Vec<Array>> {
    let logits = head.forward(h)?;
    let lse = logits.logsumexp(-1, false)?.mul_scalar((i + 1) as f64)?;
    Ok(vec![lse, logits.square()?.mean(Axes::All, false)?])
}

fn head(inputs: i32, outputs: i32, seed: u64) -> Linear {
    LinearConfig::new(inputs, outputs, true)
        .init(&VarBuilder::random(seed, Dtype::F32))
        .unwrap()
}

/// A scalar loss of every chunk's outputs.
fn loss_of(outputs: &[Vec<Array>]) -> mlx_nn::Result<Array> {
    let mut total = Array::scalar(0.0f32)?;
    for (i, outs) in outputs.iter().enumerate() {
        let w = 0.5 + i as f64;
        total = total
            .add(&outs[0].sum(Axes::All, false)?.mul_scalar(w)?)?
            .add(&outs[1].mul_scalar(w * 0.1)?)?;
    }
    Ok(total)
}

#[test]
fn chained_chunks_match_the_plain_computation() {
    let model = head(6, 40, 3);
    let x = randn(&[2, 7, 6], 11, Dtype::F32);
    // Uneven chunks along the sequence: 3 + 3 + 1 positions.
    let bounds = [(0, 3), (3, 6), (6, 7)];
    let chunks = |x: &Array| -> Vec<Array> {
        bounds
            .iter()
            .map(|&(a, b)| x.slice_axis(1, a, Some(b), 1).unwrap())
            .collect()
    };
    let run = |checkpointed: bool| {
        value_and_grad(&model, |m| {
            let pieces = chunks(&x);
            let outs = if checkpointed {
                sequential_checkpoint(m, &pieces, chunk_math)?
            } else {
                pieces
                    .iter()
                    .enumerate()
                    .map(|(i, h)| chunk_math(m, i, h))
                    .collect::<mlx_nn::Result<Vec<_>>>()?
            };
            Ok(vec![loss_of(&outs)?])
        })
        .unwrap()
    };
    let (plain, chained) = (run(false), run(true));
    assert_close(&chained.loss, &plain.loss, 1e-6, 1e-6, "loss");
    assert_eq!(plain.grads.len(), 2);
    for (name, g) in &plain.grads {
        assert_close(&chained.grads[name], g, 1e-5, 1e-6, name);
    }

    // Gradients to the chunks themselves, through a function of x.
    let grad_x = |checkpointed: bool| {
        let f = |xs: &[Array]| -> mlx_tensor::Result<Vec<Array>> {
            let pieces = chunks(&xs[0].tanh()?);
            let outs = if checkpointed {
                sequential_checkpoint(&model, &pieces, chunk_math)
            } else {
                pieces
                    .iter()
                    .enumerate()
                    .map(|(i, h)| chunk_math(&model, i, h))
                    .collect()
            }
            .map_err(|e| mlx_tensor::Error::Invalid {
                op: "test",
                message: e.to_string(),
            })?;
            let loss = loss_of(&outs).map_err(|e| mlx_tensor::Error::Invalid {
                op: "test",
                message: e.to_string(),
            })?;
            Ok(vec![loss])
        };
        let (_, g) =
            mlx_tensor::transforms::value_and_grad(f, std::slice::from_ref(&x), &[0]).unwrap();
        g.into_iter().next().unwrap()
    };
    assert_close(&grad_x(true), &grad_x(false), 1e-5, 1e-6, "input gradient");

    // Values outside a gradient computation too.
    let outs = sequential_checkpoint(&model, &chunks(&x), chunk_math).unwrap();
    let plain_outs: Vec<Vec<Array>> = chunks(&x)
        .iter()
        .enumerate()
        .map(|(i, h)| chunk_math(&model, i, h).unwrap())
        .collect();
    for (a, b) in outs.iter().zip(&plain_outs) {
        assert_eq!(a.len(), 2);
        for (u, v) in a.iter().zip(b) {
            assert_close(u, v, 1e-6, 1e-6, "chunk output");
        }
    }
    let joined = concatenate(&[&outs[0][0], &outs[1][0], &outs[2][0]], 1).unwrap();
    assert_eq!(joined.shape().dims(), &[2, 7]);
    assert!(
        sequential_checkpoint(&model, &[], chunk_math)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn errors_inside_a_chunk_come_back_typed() {
    let model = head(4, 8, 1);
    let x = randn(&[1, 4, 4], 2, Dtype::F32);
    let pieces = vec![x.clone(), x];
    let err = sequential_checkpoint(&model, &pieces, |m, i, h| {
        if i == 1 {
            return Err(Error::Closure(format!("chunk {i} refused")));
        }
        Ok(vec![m.forward(h)?])
    })
    .unwrap_err();
    assert!(
        matches!(&err, Error::Closure(m) if m == "chunk 1 refused"),
        "{err:?}"
    );
    // A shape error inside a chunk is the tensor error, naming the op.
    let wrong = randn(&[1, 4, 5], 3, Dtype::F32);
    let err =
        sequential_checkpoint(&model, &[wrong], |m, _, h| Ok(vec![m.forward(h)?])).unwrap_err();
    assert!(matches!(err, Error::Tensor(_)), "{err:?}");
}
