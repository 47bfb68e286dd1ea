//! Gradient checks of every layer and loss against central finite
//! differences: in `f64` where MLX runs it (CPU), otherwise in `f32` with a
//! larger step and tolerance. Shapes and values are drawn by proptest.

mod common;

use common::{FdCheck, check_gradients, f64_supported, project, randn};
use mlx_nn::activations;
use mlx_nn::layers::{Dropout, LayerNorm, Linear, Mlp, RmsNorm, SwiGlu};
use mlx_nn::losses::{self, CrossEntropy, Reduction};
use mlx_nn::{Module, ModuleExt, Param};
use mlx_tensor::{Array, Dtype};
use proptest::prelude::*;

/// An activation function.
type UnaryFn = fn(&Array) -> mlx_nn::Result<Array>;

fn dtype() -> Dtype {
    if f64_supported() {
        Dtype::F64
    } else {
        Dtype::F32
    }
}

/// Six cases per property (fast on 2-core CI); `PROPTEST_CASES` overrides.
fn config() -> ProptestConfig {
    let base = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        base.cases
    } else {
        6
    };
    ProptestConfig {
        cases,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..base
    }
}

/// Values away from the kink of ReLU (|x| ≥ 0.1), so differences are smooth.
fn away_from_zero(x: &Array) -> Array {
    let sign = x.sign().unwrap();
    x.abs()
        .unwrap()
        .add_scalar(0.1)
        .unwrap()
        .multiply(&sign)
        .unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn activations_match_finite_differences(rows in 1i32..4, cols in 1i32..6, seed in 0u64..1000) {
        let dt = dtype();
        let check = FdCheck::for_dtype(dt);
        let x = randn(&[rows, cols], seed, dt).mul_scalar(2.0).unwrap();
        let unary: [(&str, UnaryFn); 5] = [
            ("silu", activations::silu),
            ("gelu", activations::gelu),
            ("gelu_approx", activations::gelu_approx),
            ("sigmoid", activations::sigmoid),
            ("relu", activations::relu),
        ];
        for (name, f) in unary {
            let input = if name == "relu" { away_from_zero(&x) } else { x.clone() };
            check_gradients(&|xs| project(&f(&xs[0])?, seed + 1), &[input], &[0], check, name);
        }
        check_gradients(&|xs| project(&activations::softmax(&xs[0], -1)?, seed + 2), std::slice::from_ref(&x), &[0], check, "softmax");
        check_gradients(&|xs| project(&activations::log_softmax(&xs[0], -1)?, seed + 3), std::slice::from_ref(&x), &[0], check, "log_softmax");
        check_gradients(&|xs| project(&activations::log_softmax(&xs[0], 0)?, seed + 4), &[x], &[0], check, "log_softmax axis 0");
    }

    #[test]
    fn linear_matches_finite_differences(batch in 1i32..4, din in 1i32..5, dout in 1i32..5, bias in any::<bool>(), seed in 0u64..1000) {
        let dt = dtype();
        let x = randn(&[batch, din], seed, dt);
        let w = randn(&[dout, din], seed + 1, dt);
        let b = randn(&[dout], seed + 2, dt);
        let f = |xs: &[Array]| -> mlx_nn::Result<Array> {
            let layer = Linear::from_arrays(xs[1].clone(), if bias { Some(xs[2].clone()) } else { None });
            project(&layer.forward(&xs[0])?, seed + 3)
        };
        let which: &[usize] = if bias { &[0, 1, 2] } else { &[0, 1] };
        check_gradients(&f, &[x, w, b], which, FdCheck::for_dtype(dt), "linear");
    }

    #[test]
    fn norms_match_finite_differences(rows in 1i32..4, dims in 3i32..8, seed in 0u64..1000) {
        let dt = dtype();
        // MLX's fused norm kernels compute f64 at about f32 accuracy (forward
        // and backward): they get the f32 step and tolerances.
        let check = FdCheck::f32();
        // Rows spread over [-2, 2] plus noise: no near-constant row, whose
        // normalisation would be too curved for finite differences.
        let spread = Array::linspace(-2.0, 2.0, dims, dt).unwrap();
        let x = randn(&[rows, dims], seed, dt).mul_scalar(0.5).unwrap().add(&spread).unwrap();
        let w = randn(&[dims], seed + 1, dt).add_scalar(1.0).unwrap();
        let b = randn(&[dims], seed + 2, dt);
        let rms = |xs: &[Array]| -> mlx_nn::Result<Array> {
            let layer = RmsNorm { weight: Param::new(xs[1].clone()), eps: 1e-5 };
            project(&layer.forward(&xs[0])?, seed + 3)
        };
        check_gradients(&rms, &[x.clone(), w.clone()], &[0, 1], check, "rms_norm");
        let ln = |xs: &[Array]| -> mlx_nn::Result<Array> {
            let layer = LayerNorm { weight: Some(Param::new(xs[1].clone())), bias: Some(Param::new(xs[2].clone())), eps: 1e-5 };
            project(&layer.forward(&xs[0])?, seed + 4)
        };
        check_gradients(&ln, &[x, w, b], &[0, 1, 2], check, "layer_norm");
    }

    #[test]
    fn embedding_matches_finite_differences(vocab in 2i32..8, dims in 1i32..5, seed in 0u64..1000) {
        let dt = dtype();
        let table = randn(&[vocab, dims], seed, dt);
        let ids = Array::from_slice(&[0u32, (vocab - 1) as u32, 0], &[3]).unwrap();
        let f = |xs: &[Array]| -> mlx_nn::Result<Array> {
            let e = mlx_nn::layers::Embedding { weight: Param::new(xs[0].clone()) };
            let tied = e.as_linear(&e.forward(&ids)?)?;
            project(&tied, seed + 1)
        };
        check_gradients(&f, &[table], &[0], FdCheck::for_dtype(dt), "embedding");
    }

    #[test]
    fn swiglu_and_mlp_match_finite_differences(batch in 1i32..3, hidden in 2i32..5, inter in 2i32..6, seed in 0u64..1000) {
        let dt = dtype();
        let vb = mlx_nn::VarBuilder::random(seed, dt);
        let block = SwiGlu::new(hidden, inter, &vb.pp("mlp")).unwrap();
        let names = block.parameter_names();
        let mut inputs = vec![randn(&[batch, hidden], seed, dt)];
        inputs.extend(names.iter().map(|n| block.parameters()[n].clone()));
        let f = |xs: &[Array]| -> mlx_nn::Result<Array> {
            let mut m = block.clone();
            m.update(&names.iter().cloned().zip(xs[1..].iter().cloned()).collect())?;
            project(&m.forward(&xs[0])?, seed + 1)
        };
        check_gradients(&f, &inputs, &[0, 1, 2, 3], FdCheck::for_dtype(dt), "swiglu");

        let mlp = Mlp::new(&[hidden, inter, 2], activations::Activation::Tanh, &vb).unwrap();
        let names = mlp.parameter_names();
        let mut inputs = vec![randn(&[batch, hidden], seed + 2, dt)];
        inputs.extend(names.iter().map(|n| mlp.parameters()[n].clone()));
        let f = |xs: &[Array]| -> mlx_nn::Result<Array> {
            let mut m = mlp.clone();
            m.update(&names.iter().cloned().zip(xs[1..].iter().cloned()).collect())?;
            project(&m.forward(&xs[0])?, seed + 3)
        };
        check_gradients(&f, &inputs, &[0, 1, 2, 3, 4], FdCheck::for_dtype(dt), "mlp");
    }

    #[test]
    fn dropout_matches_finite_differences(rows in 1i32..4, cols in 1i32..6, seed in 0u64..1000) {
        let dt = dtype();
        let x = randn(&[rows, cols], seed, dt);
        let key = mlx_tensor::random::key(seed).unwrap();
        let layer = Dropout::new(0.3).unwrap();
        // The same key gives the same mask, so the map is linear in x.
        let f = |xs: &[Array]| -> mlx_nn::Result<Array> { project(&layer.forward(&xs[0], &key)?, seed + 1) };
        check_gradients(&f, &[x], &[0], FdCheck::for_dtype(dt), "dropout");
    }

    #[test]
    fn cross_entropy_matches_finite_differences(batch in 1i32..5, classes in 2i32..7, smoothing in 0.0f32..0.5, seed in 0u64..1000) {
        let dt = dtype();
        let check = FdCheck::for_dtype(dt);
        let logits = randn(&[batch, classes], seed, dt).mul_scalar(2.0).unwrap();
        let targets: Vec<i32> = (0..batch).map(|i| (i * 7 + seed as i32) % classes).collect();
        let targets = Array::from_slice(&targets, &[batch]).unwrap();
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::WeightedMean] {
            let settings = CrossEntropy::new(reduction).label_smoothing(smoothing);
            check_gradients(&|xs| settings.loss(&xs[0], &targets, None), std::slice::from_ref(&logits), &[0], check, "cross_entropy");
        }
        let settings = CrossEntropy::new(Reduction::None).ignore_index(0);
        check_gradients(&|xs| project(&settings.loss(&xs[0], &targets, None)?, seed), std::slice::from_ref(&logits), &[0], check, "cross_entropy ignore");
        let probs = randn(&[batch, classes], seed + 5, dt).softmax(-1, false).unwrap();
        check_gradients(
            &|xs| losses::cross_entropy(&xs[0], &xs[1], Reduction::Mean),
            &[logits.clone(), probs],
            &[0, 1],
            check,
            "cross_entropy probabilities",
        );
        let log_probs = activations::log_softmax(&logits, -1).unwrap();
        check_gradients(&|xs| losses::nll(&xs[0], &targets, -1, Reduction::Mean), &[log_probs], &[0], check, "nll");
    }

    #[test]
    fn regression_and_divergence_losses_match_finite_differences(rows in 1i32..4, cols in 2i32..6, seed in 0u64..1000) {
        let dt = dtype();
        let check = FdCheck::for_dtype(dt);
        let p = randn(&[rows, cols], seed, dt);
        let y = randn(&[rows, cols], seed + 1, dt);
        check_gradients(&|xs| losses::mse(&xs[0], &xs[1], Reduction::Mean), &[p.clone(), y.clone()], &[0, 1], check, "mse");
        let lq = activations::log_softmax(&p, -1).unwrap();
        let lp = activations::log_softmax(&y, -1).unwrap();
        check_gradients(&|xs| losses::kl_div(&xs[0], &xs[1], -1, Reduction::Sum), &[lq, lp], &[0, 1], check, "kl_div");
        let targets = y.gt(&y.zeros_like().unwrap()).unwrap().as_type(dt).unwrap();
        let weights = randn(&[rows, cols], seed + 2, dt).abs().unwrap();
        check_gradients(
            &|xs| losses::binary_cross_entropy_with_logits(&xs[0], &targets, Some(&weights), Reduction::Mean),
            std::slice::from_ref(&p),
            &[0],
            check,
            "bce with logits",
        );
        let probs = p.sigmoid().unwrap().mul_scalar(0.9).unwrap().add_scalar(0.05).unwrap();
        check_gradients(
            &|xs| losses::binary_cross_entropy(&xs[0], &targets, None, Reduction::Sum),
            &[probs],
            &[0],
            check,
            "bce from probabilities",
        );
    }
}

#[test]
fn gradient_of_a_module_through_value_and_grad_matches_finite_differences() {
    let dt = dtype();
    let vb = mlx_nn::VarBuilder::random(3, dt);
    let model = Mlp::new(&[3, 4, 2], activations::Activation::Silu, &vb).unwrap();
    let x = randn(&[5, 3], 11, dt);
    let loss = |m: &Mlp| -> mlx_nn::Result<Array> { project(&m.forward(&x)?, 12) };
    let out = mlx_nn::value_and_grad(&model, |m| Ok(vec![loss(m)?])).unwrap();
    for (name, g) in &out.grads {
        let value = model.parameters()[name].clone();
        let check = FdCheck::for_dtype(dt);
        let f = |xs: &[Array]| -> mlx_nn::Result<Array> {
            let mut m = model.clone();
            m.update(&[(name.clone(), xs[0].clone())].into_iter().collect())?;
            loss(&m)
        };
        common::check_gradients(&f, &[value], &[0], check, name);
        assert_eq!(g.shape(), model.parameters()[name].shape());
    }
    // The module itself is a `Module` with the names the gradients carry.
    let names: Vec<String> = out.grads.keys().cloned().collect();
    let mut expected = model.parameter_names();
    expected.sort();
    assert_eq!(names, expected);
    let _ = model.num_parameters();
    fn is_module<M: Module>(_: &M) {}
    is_module(&model);
}
