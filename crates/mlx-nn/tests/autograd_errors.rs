//! A loss closure's own error comes back from `value_and_grad_with` as that
//! error, not as a message; gradients are those of `value_and_grad`.

use mlx_nn::layers::{Linear, LinearConfig};
use mlx_nn::{VarBuilder, value_and_grad, value_and_grad_with};
use mlx_tensor::{Array, Axes, Dtype};

/// A caller's own error type: what a trainer's loss would return.
#[derive(Debug, PartialEq)]
enum LossError {
    EmptyBatch { rows: usize },
    Nn(String),
}

impl From<mlx_nn::Error> for LossError {
    fn from(e: mlx_nn::Error) -> Self {
        LossError::Nn(e.to_string())
    }
}

fn model() -> Linear {
    let vb = VarBuilder::random(5, Dtype::F32);
    LinearConfig::new(3, 2, true)
        .init(&vb.pp("l"))
        .expect("a small linear layer")
}

#[test]
fn the_closures_error_keeps_its_type_and_fields() {
    let m = model();
    let err = value_and_grad_with(&m, |_| -> Result<Vec<Array>, LossError> {
        Err(LossError::EmptyBatch { rows: 0 })
    })
    .expect_err("the closure failed");
    assert_eq!(err, LossError::EmptyBatch { rows: 0 });
}

#[test]
fn array_errors_inside_the_closure_come_back_through_from() {
    let m = model();
    let err = value_and_grad_with(&m, |_| -> Result<Vec<Array>, LossError> {
        let a = Array::zeros(&[2, 3], Dtype::F32).map_err(mlx_nn::Error::from)?;
        let b = Array::zeros(&[4, 5], Dtype::F32).map_err(mlx_nn::Error::from)?;
        Ok(vec![a.matmul(&b).map_err(mlx_nn::Error::from)?])
    })
    .expect_err("mismatched shapes");
    assert!(
        matches!(err, LossError::Nn(ref m) if m.contains("matmul")),
        "{err:?}"
    );
}

#[test]
fn gradients_equal_those_of_value_and_grad() -> Result<(), Box<dyn std::error::Error>> {
    let m = model();
    let x = Array::from_slice(&[0.5f32, -1.0, 2.0, 1.5, 0.25, -0.75], &[2, 3])?;
    let loss = |l: &Linear| -> mlx_nn::Result<Vec<Array>> {
        Ok(vec![l.forward(&x)?.square()?.sum(Axes::All, false)?])
    };
    let plain = value_and_grad(&m, loss)?;
    let typed = value_and_grad_with(&m, |l| -> Result<Vec<Array>, LossError> {
        loss(l).map_err(LossError::from)
    })
    .map_err(|e| format!("{e:?}"))?;
    assert_eq!(plain.loss.item::<f32>()?, typed.loss.item::<f32>()?);
    for (name, g) in &plain.grads {
        assert_eq!(
            g.to_vec::<f32>()?,
            typed.grads[name].to_vec::<f32>()?,
            "{name}"
        );
    }
    Ok(())
}
