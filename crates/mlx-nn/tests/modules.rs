//! Parameter trees, checkpoints, freezing, autograd error handling, layers
//! (dropout, quantized, sequential), manual backward passes against closed
//! forms, gradient checkpointing and compilation.

mod common;

use std::collections::HashMap;

use common::transformer::{TinyConfig, TinyLm};
use common::{array, assert_bits_eq, assert_close, f32s, randn};
use mlx_nn::activations::{self, Activation, Relu, Silu};
use mlx_nn::backward;
use mlx_nn::layers::{
    Dropout, Forward, Linear, LinearConfig, Mlp, QuantizedLinear, RmsNorm, Sequential, SwiGlu,
};
use mlx_nn::losses::{CrossEntropy, Reduction};
use mlx_nn::{Error, Module, ModuleExt, Param, VarBuilder, value_and_grad};
use mlx_tensor::{Array, Axes, Dtype};

fn tiny_cfg() -> TinyConfig {
    TinyConfig {
        vocab: 10,
        hidden: 8,
        heads: 2,
        intermediate: 12,
        layers: 2,
    }
}

/// A fresh directory for one test, removed when the guard is dropped.
fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("mlx-nn-{tag}-"))
        .tempdir()
        .unwrap()
}

#[test]
fn nested_parameter_names_are_the_checkpoint_keys() {
    let model = TinyLm::new(&tiny_cfg(), &VarBuilder::random(0, Dtype::F32)).unwrap();
    let mut expected = vec!["model.embed_tokens.weight".to_string()];
    for i in 0..2 {
        for name in [
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.o_proj.weight",
            "self_attn.q_norm.weight",
            "self_attn.k_norm.weight",
            "mlp.gate_proj.weight",
            "mlp.up_proj.weight",
            "mlp.down_proj.weight",
            "input_layernorm.weight",
            "post_attention_layernorm.weight",
        ] {
            expected.push(format!("model.layers.{i}.{name}"));
        }
    }
    expected.push("model.norm.weight".into());
    expected.push("lm_head.weight".into());
    assert_eq!(model.parameter_names(), expected);

    // Saved keys are the same names.
    let tmp = temp_dir("names");
    let dir = tmp.path();
    let path = dir.join("model.safetensors");
    model.save_weights(&path).unwrap();
    let (header, _) = mlx_tensor::io::read_safetensors_header(&path).unwrap();
    let mut saved: Vec<String> = header.keys().cloned().collect();
    saved.sort();
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(saved, sorted);
}

#[test]
fn save_then_load_round_trips_bit_exactly() {
    let tmp = temp_dir("roundtrip");
    let dir = tmp.path();
    let path = dir.join("model.safetensors");
    let a = TinyLm::new(&tiny_cfg(), &VarBuilder::random(1, Dtype::F32)).unwrap();
    a.save_weights(&path).unwrap();

    // Into an existing module …
    let mut b = TinyLm::new(&tiny_cfg(), &VarBuilder::random(2, Dtype::F32)).unwrap();
    let report = b.load_weights(&path, true).unwrap();
    assert!(report.is_clean());
    // … and through a VarBuilder.
    let file = mlx_tensor::io::load_safetensors(&path).unwrap();
    let vb = VarBuilder::from_tensors_at(file.tensors, Dtype::F32, path.clone());
    let c = TinyLm::new(&tiny_cfg(), &vb).unwrap();
    assert!(vb.finish(true).unwrap().is_clean());

    let pa = a.parameters();
    for (name, value) in &pa {
        assert_bits_eq(&b.parameters()[name], value, name);
        assert_bits_eq(&c.parameters()[name], value, name);
    }
    // bf16 round trip keeps bf16 bits too.
    let mut half = a.clone();
    half.cast(Dtype::BF16).unwrap();
    let hpath = dir.join("half.safetensors");
    half.save_weights(&hpath).unwrap();
    let mut back = a.clone();
    back.cast(Dtype::BF16).unwrap();
    back.load_weights(&hpath, true).unwrap();
    for (name, value) in half.parameters() {
        let (x, y) = (
            back.parameters()[&name].to_bytes().unwrap(),
            value.to_bytes().unwrap(),
        );
        assert_eq!(x, y, "{name}");
    }
}

#[test]
fn a_misshaped_tensor_names_the_key_and_both_shapes() {
    let tmp = temp_dir("misshaped");
    let dir = tmp.path();
    let path = dir.join("bad.safetensors");
    let a = TinyLm::new(&tiny_cfg(), &VarBuilder::random(1, Dtype::F32)).unwrap();
    let mut params = a.parameters();
    params.insert(
        "model.layers.1.mlp.up_proj.weight".into(),
        Array::zeros(&[12, 9], Dtype::F32).unwrap(),
    );
    mlx_tensor::io::save_safetensors(
        &path,
        params.iter().map(|(k, v)| (k.as_str(), v)),
        &HashMap::new(),
    )
    .unwrap();

    let mut b = a.clone();
    let err = b.load_weights(&path, false).unwrap_err().to_string();
    assert!(err.contains("model.layers.1.mlp.up_proj.weight"), "{err}");
    assert!(err.contains("[12, 9]") && err.contains("[12, 8]"), "{err}");
    assert!(err.contains("bad.safetensors"), "{err}");

    let file = mlx_tensor::io::load_safetensors(&path).unwrap();
    let vb = VarBuilder::from_tensors_at(file.tensors, Dtype::F32, path.clone());
    let _ = TinyLm::new(&tiny_cfg(), &vb).unwrap();
    let err = vb.finish(false).unwrap_err().to_string();
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight")
            && err.contains("[12, 9]")
            && err.contains("[12, 8]"),
        "{err}"
    );

    // Missing and unexpected keys in strict mode are listed too.
    let mut params = a.parameters();
    params.remove("lm_head.weight");
    params.insert(
        "extra.weight".into(),
        Array::zeros(&[1], Dtype::F32).unwrap(),
    );
    let mut tensors: HashMap<String, Array> = params.into_iter().collect();
    let err = b.load_tensors(&tensors, true).unwrap_err().to_string();
    assert!(
        err.contains("missing tensor `lm_head.weight`")
            && err.contains("unexpected tensor `extra.weight`"),
        "{err}"
    );
    let report = b.load_tensors(&tensors, false).unwrap();
    assert_eq!(report.missing, ["lm_head.weight"]);
    assert_eq!(report.unexpected, ["extra.weight"]);
    tensors.clear();
}

#[test]
fn freeze_and_unfreeze_select_the_trainable_parameters() {
    let mut model = TinyLm::new(&tiny_cfg(), &VarBuilder::random(0, Dtype::F32)).unwrap();
    let all = model.parameter_names().len();
    model.freeze();
    assert!(model.trainable_parameters().is_empty());
    model.unfreeze();
    assert_eq!(model.trainable_parameters().len(), all);
    model.freeze_path("model.layers.0");
    model.freeze_path("model.embed_tokens");
    let trainable = model.trainable_parameters();
    assert_eq!(trainable.len(), all - 12);
    assert!(
        trainable
            .keys()
            .all(|k| !k.starts_with("model.layers.0.") && !k.starts_with("model.embed_tokens"))
    );
    // `model.layers.1` is not caught by a prefix `model.layers.1` of `model.layers.10`-style names.
    model.set_frozen_where(false, |n| n.ends_with("norm.weight"));
    assert!(
        model
            .trainable_parameters()
            .contains_key("model.layers.0.input_layernorm.weight")
    );

    // Gradients come only for trainable parameters.
    let ids = Array::from_slice(&[1u32, 2, 3], &[1, 3]).unwrap();
    let out = value_and_grad(&model, |m| {
        Ok(vec![m.forward(&ids)?.sum(Axes::All, false)?])
    })
    .unwrap();
    let grad_names: Vec<&String> = out.grads.keys().collect();
    let trainable = model.trainable_parameters();
    assert_eq!(grad_names, trainable.keys().collect::<Vec<_>>());
}

#[test]
fn a_failing_or_panicking_loss_gives_err_and_the_process_keeps_working() {
    let vb = VarBuilder::random(0, Dtype::F32);
    let model = Mlp::new(&[3, 4, 2], Activation::Relu, &vb).unwrap();
    let x = randn(&[2, 3], 1, Dtype::F32);

    let err = value_and_grad(&model, |_m| Err(Error::Config("custom failure".into()))).unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m == "custom failure"),
        "{err:?}"
    );

    let err = value_and_grad(&model, |m| -> mlx_nn::Result<Vec<Array>> {
        let y = m.forward(&x)?;
        if y.ndim() == 2 {
            panic!("boom in the loss");
        }
        Ok(vec![y])
    })
    .unwrap_err();
    assert!(err.to_string().contains("boom in the loss"), "{err}");

    // A shape error inside the closure is an array error.
    let err = value_and_grad(&model, |m| {
        Ok(vec![m.forward(&randn(&[2, 5], 2, Dtype::F32))?])
    })
    .unwrap_err();
    assert!(matches!(err, Error::Tensor(_)), "{err:?}");

    // Frozen model: no parameters to differentiate, panics still come back.
    let mut frozen = model.clone();
    frozen.freeze();
    let err = value_and_grad(&frozen, |_| -> mlx_nn::Result<Vec<Array>> {
        panic!("frozen boom")
    })
    .unwrap_err();
    assert!(err.to_string().contains("frozen boom"), "{err}");

    // And the next call works normally.
    let out = value_and_grad(&model, |m| {
        Ok(vec![
            m.forward(&x)?.square()?.sum(Axes::All, false)?,
            x.clone(),
        ])
    })
    .unwrap();
    assert!(out.loss.item::<f32>().unwrap().is_finite());
    assert_eq!(out.aux.len(), 1);
    assert_eq!(out.grads.len(), 4);
}

#[test]
fn dropout_keeps_expectation_and_is_the_identity_in_eval_mode() {
    let x = Array::ones(&[200, 50], Dtype::F32).unwrap();
    let key = mlx_tensor::random::key(9).unwrap();
    let layer = Dropout::new(0.25).unwrap();
    let y = f32s(&layer.forward(&x, &key).unwrap());
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((zeros - 0.25).abs() < 0.02, "dropped fraction {zeros}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    let mean: f64 = y.iter().map(|&v| f64::from(v)).sum::<f64>() / y.len() as f64;
    assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
    // Same key, same mask; eval mode is the identity.
    assert_eq!(f32s(&layer.forward(&x, &key).unwrap()), y);
    assert_eq!(f32s(&layer.eval().forward(&x, &key).unwrap()), f32s(&x));
    assert!(Dropout::new(1.0).is_err());
    let mut l = Dropout::new(0.5).unwrap();
    l.set_training(false);
    assert!(!l.is_training());
}

#[test]
fn quantized_linear_tracks_its_dense_layer() {
    let vb = VarBuilder::random(4, Dtype::F32);
    let dense = LinearConfig::new(128, 16, true)
        .init(&vb.pp("proj"))
        .unwrap();
    let x = randn(&[3, 128], 5, Dtype::F32);
    let reference = dense.forward(&x).unwrap();
    let scale = f32s(&reference).iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    for (bits, tol) in [(8, 0.02), (4, 0.15)] {
        let q = QuantizedLinear::from_linear(&dense, 64, bits).unwrap();
        assert_eq!(q.parameter_names(), ["weight", "scales", "biases", "bias"]);
        assert!(
            q.trainable_parameters().is_empty(),
            "quantized parameters start frozen"
        );
        assert_eq!(q.weight.value.dtype(), Dtype::U32);
        assert_eq!(q.weight.value.shape().0, vec![16, 128 * bits / 32]);
        let y = q.forward(&x).unwrap();
        assert_close(&y, &reference, 0.0, tol * scale, &format!("{bits}-bit"));
        // Exactly the dequantized dense layer.
        let back = q.to_linear().unwrap().forward(&x).unwrap();
        assert_close(&y, &back, 1e-4, 1e-4, "dequantized");
    }
    // Loading a quantized checkpoint through a VarBuilder.
    let q = QuantizedLinear::from_linear(&dense, 64, 4).unwrap();
    let mut tensors = HashMap::new();
    for (k, v) in q.parameters() {
        tensors.insert(format!("proj.{k}"), v);
    }
    let vb = VarBuilder::from_tensors(tensors, Dtype::F32);
    let loaded =
        QuantizedLinear::new(LinearConfig::new(128, 16, true), 64, 4, &vb.pp("proj")).unwrap();
    vb.finish(true).unwrap();
    assert_bits_eq(
        &loaded.forward(&x).unwrap(),
        &q.forward(&x).unwrap(),
        "loaded",
    );
    assert!(QuantizedLinear::from_linear(&dense, 64, 7).is_err());
    assert!(
        QuantizedLinear::from_linear(&LinearConfig::new(100, 4, false).init(&vb).unwrap(), 64, 4)
            .is_err()
    );
}

#[test]
fn sequential_and_unit_activations_compose() {
    let vb = VarBuilder::random(8, Dtype::F32);
    let l0 = LinearConfig::new(3, 5, true).init(&vb.pp("a")).unwrap();
    let l2 = LinearConfig::new(5, 2, false).init(&vb.pp("b")).unwrap();
    let seq = Sequential::new()
        .add(l0.clone())
        .add(Silu)
        .add(l2.clone())
        .add(Relu);
    assert_eq!(seq.len(), 4);
    assert_eq!(
        seq.parameter_names(),
        ["layers.0.weight", "layers.0.bias", "layers.2.weight"]
    );
    let x = randn(&[4, 3], 1, Dtype::F32);
    let expected = activations::relu(
        &l2.forward(&activations::silu(&l0.forward(&x).unwrap()).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_bits_eq(&seq.forward(&x).unwrap(), &expected, "sequential");
    let out = value_and_grad(&seq, |m| Ok(vec![m.forward(&x)?.sum(Axes::All, false)?])).unwrap();
    assert_eq!(out.grads.len(), 3);
    let boxed: Box<dyn Forward> = Box::new(Activation::GeluApprox);
    assert_eq!(boxed.forward(&x).unwrap().shape(), x.shape());
}

#[test]
fn swiglu_is_down_of_silu_gate_times_up() {
    let block = SwiGlu::new(4, 6, &VarBuilder::random(2, Dtype::F32)).unwrap();
    assert_eq!(
        block.parameter_names(),
        ["gate_proj.weight", "up_proj.weight", "down_proj.weight"]
    );
    let x = randn(&[2, 4], 3, Dtype::F32);
    let g = block.gate_proj.forward(&x).unwrap();
    let manual = block
        .down_proj
        .forward(
            &g.multiply(&g.sigmoid().unwrap())
                .unwrap()
                .multiply(&block.up_proj.forward(&x).unwrap())
                .unwrap(),
        )
        .unwrap();
    assert_close(&block.forward(&x).unwrap(), &manual, 1e-6, 1e-7, "swiglu");
}

#[test]
fn manual_backward_passes_match_closed_forms() {
    let x = randn(&[3, 5], 1, Dtype::F32);
    let g = randn(&[3, 5], 2, Dtype::F32);
    let xs = f32s(&x);
    let gs = f32s(&g);
    let sig = |v: f32| 1.0 / (1.0 + (-v).exp());

    let expect_silu: Vec<f64> = xs
        .iter()
        .zip(&gs)
        .map(|(&v, &gv)| f64::from(gv * sig(v) * (1.0 + v * (1.0 - sig(v)))))
        .collect();
    assert_close(
        &backward::silu_backward(&x, &g).unwrap(),
        &array(&expect_silu, &[3, 5], Dtype::F32),
        1e-5,
        1e-6,
        "silu",
    );
    let expect_relu: Vec<f64> = xs
        .iter()
        .zip(&gs)
        .map(|(&v, &gv)| if v > 0.0 { f64::from(gv) } else { 0.0 })
        .collect();
    assert_close(
        &backward::relu_backward(&x, &g).unwrap(),
        &array(&expect_relu, &[3, 5], Dtype::F32),
        0.0,
        0.0,
        "relu",
    );
    let expect_sig: Vec<f64> = xs
        .iter()
        .zip(&gs)
        .map(|(&v, &gv)| f64::from(gv * sig(v) * (1.0 - sig(v))))
        .collect();
    assert_close(
        &backward::sigmoid_backward(&x, &g).unwrap(),
        &array(&expect_sig, &[3, 5], Dtype::F32),
        1e-5,
        1e-7,
        "sigmoid",
    );

    // MSE (mean): 2 (p - y) / N · g.
    let y = randn(&[3, 5], 3, Dtype::F32);
    let go = Array::scalar(0.7f32).unwrap();
    let d = backward::mse_backward(&x, &y, Reduction::Mean, &go).unwrap();
    let expected = x
        .subtract(&y)
        .unwrap()
        .mul_scalar(2.0 * 0.7 / 15.0)
        .unwrap();
    assert_close(&d, &expected, 1e-5, 1e-7, "mse");

    // Cross-entropy (mean): (softmax(z) - onehot(t)) / N · g; with smoothing
    // s: softmax(z) - (1 - s)·onehot - s / C.
    let targets = Array::from_slice(&[1i32, 4, 0], &[3]).unwrap();
    let onehot = array(
        &[0., 1., 0., 0., 0., 0., 0., 0., 0., 1., 1., 0., 0., 0., 0.],
        &[3, 5],
        Dtype::F32,
    );
    for s in [0.0f32, 0.2] {
        let settings = CrossEntropy::new(Reduction::Mean).label_smoothing(s);
        let d = backward::cross_entropy_backward(&x, &targets, &settings, &go).unwrap();
        let sm = x.softmax(-1, true).unwrap();
        let s = f64::from(s);
        let expected = sm
            .subtract(&onehot.mul_scalar(1.0 - s).unwrap())
            .unwrap()
            .sub_scalar(s / 5.0)
            .unwrap()
            .mul_scalar(0.7 / 3.0)
            .unwrap();
        assert_close(&d, &expected, 1e-5, 1e-6, "cross_entropy");
    }

    // Linear: dx = g W, dW = gᵀ x, db = Σ g.
    let layer = LinearConfig::new(5, 2, true)
        .init(&VarBuilder::random(4, Dtype::F32))
        .unwrap();
    let gy = randn(&[3, 2], 5, Dtype::F32);
    let grads = backward::linear_backward(&layer, &x, &gy).unwrap();
    assert_close(
        &grads.input,
        &gy.matmul(&layer.weight.value).unwrap(),
        1e-5,
        1e-6,
        "linear dx",
    );
    assert_close(
        &grads.weight,
        &gy.t().unwrap().matmul(&x).unwrap(),
        1e-5,
        1e-6,
        "linear dW",
    );
    assert_close(
        grads.bias.as_ref().unwrap(),
        &gy.sum(0, false).unwrap(),
        1e-5,
        1e-6,
        "linear db",
    );

    // RMSNorm: with r = rsqrt(mean(x²) + eps) and n = x·r,
    // dw = Σ_rows g·n and dx = r·(g·w - n·mean(g·w·n)).
    let w = randn(&[5], 6, Dtype::F32).add_scalar(1.0).unwrap();
    let norm = RmsNorm {
        weight: Param::new(w.clone()),
        eps: 1e-5,
    };
    let (dx, dw) = backward::rms_norm_backward(&norm, &x, &g).unwrap();
    let r = x
        .square()
        .unwrap()
        .mean(-1, true)
        .unwrap()
        .add_scalar(1e-5)
        .unwrap()
        .rsqrt()
        .unwrap();
    let n = x.multiply(&r).unwrap();
    let gw = g.multiply(&w).unwrap();
    let expected_dx = r
        .multiply(
            &gw.subtract(
                &n.multiply(&gw.multiply(&n).unwrap().mean(-1, true).unwrap())
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
    assert_close(&dx, &expected_dx, 1e-4, 1e-5, "rms_norm dx");
    assert_close(
        &dw,
        &g.multiply(&n).unwrap().sum(0, false).unwrap(),
        1e-4,
        1e-5,
        "rms_norm dw",
    );
}

#[test]
fn gradient_checkpointing_keeps_values_and_gradients() {
    let cfg = TinyConfig {
        vocab: 12,
        hidden: 8,
        heads: 2,
        intermediate: 16,
        layers: 2,
    };
    let model = TinyLm::new(&cfg, &VarBuilder::random(5, Dtype::F32)).unwrap();
    let ids = Array::from_slice(&[1u32, 5, 7, 2, 3, 4], &[2, 3]).unwrap();
    let plain = value_and_grad(&model, |m| {
        Ok(vec![m.forward(&ids)?.square()?.mean(Axes::All, false)?])
    })
    .unwrap();

    // Each block checkpointed.
    let checkpointed = value_and_grad(&model, |m| {
        let mut h = m.model.embed_tokens.forward(&ids)?;
        for layer in &m.model.layers {
            h = mlx_nn::grad_checkpoint(layer, &[h], |l, xs| Ok(vec![l.forward(&xs[0])?]))?
                .remove(0);
        }
        let logits = m.lm_head.forward(&m.model.norm.forward(&h)?)?;
        Ok(vec![logits.square()?.mean(Axes::All, false)?])
    })
    .unwrap();
    assert_close(
        &checkpointed.loss,
        &plain.loss,
        1e-6,
        0.0,
        "checkpointed loss",
    );
    for (name, g) in &plain.grads {
        assert_close(&checkpointed.grads[name], g, 1e-4, 1e-6, name);
    }

    // Errors inside the checkpointed function come back.
    let layer: Linear = LinearConfig::new(2, 2, false)
        .init(&VarBuilder::random(0, Dtype::F32))
        .unwrap();
    let err = mlx_nn::grad_checkpoint(&layer, &[randn(&[1, 3], 0, Dtype::F32)], |l, xs| {
        Ok(vec![l.forward(&xs[0])?])
    })
    .unwrap_err();
    assert!(matches!(err, Error::Tensor(_)), "{err:?}");
}

/// Compilation on the CPU builds fused kernels with the system compiler the
/// first time: keep the compiled graph small (an MLP has little to fuse).
#[test]
fn compiled_functions_match_and_see_parameter_updates() {
    let model = Mlp::new(
        &[3, 5, 2],
        Activation::Relu,
        &VarBuilder::random(6, Dtype::F32),
    )
    .unwrap();
    let x = randn(&[4, 3], 7, Dtype::F32);
    let plain = value_and_grad(&model, |m| {
        Ok(vec![m.forward(&x)?.square()?.mean(Axes::All, false)?])
    })
    .unwrap();

    let compiled =
        mlx_nn::compile(&model, |m: &Mlp, xs| Ok(vec![m.forward(&xs[0])?]), false).unwrap();
    let direct = model.forward(&x).unwrap();
    assert_close(
        &compiled.call(&model, std::slice::from_ref(&x)).unwrap()[0],
        &direct,
        1e-6,
        1e-7,
        "compiled",
    );
    // Gradients flow through the compiled function to the parameters.
    let through = value_and_grad(&model, |m| {
        Ok(vec![
            compiled.call(m, std::slice::from_ref(&x))?[0]
                .square()?
                .mean(Axes::All, false)?,
        ])
    })
    .unwrap();
    for (name, g) in &plain.grads {
        assert_close(&through.grads[name], g, 1e-5, 1e-7, name);
    }
    // New parameter values are used without re-tracing.
    let mut changed = model.clone();
    let last = changed.layers.len() - 1;
    changed.layers[last].weight.value = changed.layers[last].weight.value.mul_scalar(2.0).unwrap();
    changed.layers[last].bias.as_mut().unwrap().value = changed.layers[last]
        .bias
        .as_ref()
        .unwrap()
        .value
        .mul_scalar(2.0)
        .unwrap();
    assert_close(
        &compiled.call(&changed, std::slice::from_ref(&x)).unwrap()[0],
        &direct.mul_scalar(2.0).unwrap(),
        1e-5,
        1e-6,
        "updated",
    );
    // A module with other parameter names is refused.
    let other = Mlp::new(
        &[3, 5, 5, 2],
        Activation::Relu,
        &VarBuilder::random(6, Dtype::F32),
    )
    .unwrap();
    let other_compiled =
        mlx_nn::compile(&other, |m: &Mlp, xs| Ok(vec![m.forward(&xs[0])?]), false).unwrap();
    assert!(other_compiled.call(&model, &[x]).is_err());
    fn is_module<M: Module>(_: &M) {}
    is_module(&model);
}

#[test]
fn cross_entropy_ignore_index_masks_and_weighted_mean_counts_valid_targets() {
    let logits = randn(&[4, 5], 21, Dtype::F32);
    let targets = Array::from_slice(&[2i32, -100, 4, -100], &[4]).unwrap();
    let per = CrossEntropy::new(Reduction::None)
        .ignore_index(-100)
        .loss(&logits, &targets, None)
        .unwrap();
    let per = f32s(&per);
    assert_eq!((per[1], per[3]), (0.0, 0.0));
    // The kept rows equal the loss of the same rows alone.
    let kept = Array::from_slice(&[2i32, 4], &[2]).unwrap();
    let rows = mlx_tensor::concatenate(
        &[
            &logits.narrow(0, 0, 1).unwrap(),
            &logits.narrow(0, 2, 1).unwrap(),
        ],
        0,
    )
    .unwrap();
    let alone = f32s(
        &CrossEntropy::new(Reduction::None)
            .loss(&rows, &kept, None)
            .unwrap(),
    );
    assert_eq!((per[0], per[2]), (alone[0], alone[1]));
    // Mean counts all rows, WeightedMean only the valid ones.
    let mean = CrossEntropy::new(Reduction::Mean)
        .ignore_index(-100)
        .loss(&logits, &targets, None)
        .unwrap();
    let valid = CrossEntropy::new(Reduction::WeightedMean)
        .ignore_index(-100)
        .loss(&logits, &targets, None)
        .unwrap();
    let sum = f64::from(alone[0]) + f64::from(alone[1]);
    assert!((f64::from(mean.item::<f32>().unwrap()) - sum / 4.0).abs() < 1e-6);
    assert!((f64::from(valid.item::<f32>().unwrap()) - sum / 2.0).abs() < 1e-6);
    // An explicit mask does the same as the ignored index.
    let mask = Array::from_slice(&[true, false, true, false], &[4]).unwrap();
    let safe = Array::from_slice(&[2i32, 0, 4, 0], &[4]).unwrap();
    let masked = CrossEntropy::new(Reduction::WeightedMean)
        .loss(&logits, &safe, Some(&mask))
        .unwrap();
    assert_eq!(masked.item::<f32>().unwrap(), valid.item::<f32>().unwrap());
    // Mis-shaped targets are refused with both shapes.
    let err = CrossEntropy::default()
        .loss(&logits, &Array::zeros(&[3], Dtype::I32).unwrap(), None)
        .unwrap_err();
    assert!(
        err.to_string().contains("[3]") && err.to_string().contains("[4, 5]"),
        "{err}"
    );
}
