//! LoRA over dense and quantized linear layers: initialisation as PEFT,
//! the forward pass and gradients against closed forms computed on the
//! host, merge/unmerge, and the quantized embedding.

mod common;

use std::collections::BTreeSet;

use common::{assert_close, f64s, randn};
use mlx_nn::layers::{
    Embedding, Linear, LinearBase, LoraConfig, LoraLinear, QuantizedEmbedding, QuantizedLinear,
};
use mlx_nn::{ModuleExt, value_and_grad};
use mlx_tensor::{Array, Dtype, random};

const IN: i32 = 64;
const OUT: i32 = 32;
const R: i32 = 4;

/// `[rows, cols]` row-major product `a [rows, k] · bᵀ` with `b [cols, k]`.
fn host_abt(a: &[f64], b: &[f64], rows: usize, k: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            out[i * cols + j] = (0..k).map(|t| a[i * k + t] * b[j * k + t]).sum();
        }
    }
    out
}

fn transpose(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = a[i * cols + j];
        }
    }
    out
}

fn host(values: Vec<f64>, shape: &[i32]) -> Array {
    Array::from_slice(&values, shape)
        .and_then(|a| a.as_type(Dtype::F32))
        .unwrap()
}

fn dense(seed: u64) -> Linear {
    Linear::from_arrays(
        randn(&[OUT, IN], seed, Dtype::F32).mul_scalar(0.1).unwrap(),
        Some(randn(&[OUT], seed + 1, Dtype::F32)),
    )
}

/// An adapter with non-zero `B`, so the update is visible.
fn adapted(base: LinearBase, config: LoraConfig) -> LoraLinear {
    let a = randn(&[config.r, IN], 11, Dtype::F32)
        .mul_scalar(0.2)
        .unwrap();
    let b = randn(&[OUT, config.r], 12, Dtype::F32)
        .mul_scalar(0.2)
        .unwrap();
    LoraLinear::from_parts(base, a, b, config).unwrap()
}

/// `x Wᵀ + bias + s · (x Aᵀ) Bᵀ` on the host.
fn host_forward(x: &Array, w: &Array, bias: &Array, a: &Array, b: &Array, s: f64) -> Vec<f64> {
    let rows = x.shape()[0] as usize;
    let (xs, ws, bs) = (f64s(x), f64s(w), f64s(bias));
    let base = host_abt(&xs, &ws, rows, IN as usize, OUT as usize);
    let xa = host_abt(&xs, &f64s(a), rows, IN as usize, R as usize);
    let xab = host_abt(&xa, &f64s(b), rows, R as usize, OUT as usize);
    (0..rows * OUT as usize)
        .map(|i| base[i] + bs[i % OUT as usize] + s * xab[i])
        .collect()
}

#[test]
fn scaling_is_alpha_over_r_or_over_sqrt_r_with_rslora() {
    let plain = LoraConfig::new(4, 16.0);
    assert_eq!(plain.scaling(), 4.0);
    let rs = LoraConfig {
        use_rslora: true,
        ..plain
    };
    assert_eq!(rs.scaling(), 8.0);
}

#[test]
fn fresh_adapter_is_peft_initialised_and_leaves_the_output_unchanged() {
    let base = dense(1);
    let key = random::key(7).unwrap();
    let lora = LoraLinear::new(
        LinearBase::Dense(base.clone()),
        LoraConfig::new(8, 16.0),
        &key,
    )
    .unwrap();
    assert_eq!(lora.lora_a.value.shape().0, vec![8, IN]);
    assert_eq!(lora.lora_b.value.shape().0, vec![OUT, 8]);
    // PEFT: kaiming_uniform_(a = sqrt(5)) is U(±1/sqrt(in)); B = 0.
    let a = f64s(&lora.lora_a.value);
    let bound = 1.0 / f64::from(IN).sqrt();
    assert!(a.iter().all(|v| v.abs() <= bound), "A outside ±{bound}");
    let var = a.iter().map(|v| v * v).sum::<f64>() / a.len() as f64;
    let expected_var = bound * bound / 3.0;
    assert!(
        (var - expected_var).abs() < 0.2 * expected_var,
        "variance {var} vs {expected_var}"
    );
    assert!(f64s(&lora.lora_b.value).iter().all(|&v| v == 0.0));
    let x = randn(&[3, IN], 2, Dtype::F32);
    assert_close(
        &lora.forward(&x).unwrap(),
        &base.forward(&x).unwrap(),
        0.0,
        0.0,
        "fresh adapter",
    );
}

#[test]
fn forward_matches_the_closed_form_plain_and_rslora() {
    for use_rslora in [false, true] {
        let base = dense(3);
        let config = LoraConfig {
            r: R,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            use_rslora,
        };
        let lora = adapted(LinearBase::Dense(base.clone()), config);
        let s = if use_rslora { 8.0 } else { 4.0 };
        let x = randn(&[5, IN], 4, Dtype::F32);
        let bias = base.bias.as_ref().unwrap().value.clone();
        let expected = host_forward(&x, &base.weight, &bias, &lora.lora_a, &lora.lora_b, s);
        assert_close(
            &lora.forward(&x).unwrap(),
            &host(expected, &[5, OUT]),
            1e-4,
            1e-4,
            "LoRA forward",
        );
    }
}

#[test]
fn base_is_frozen_and_only_adapter_parameters_are_trainable() {
    let lora = adapted(LinearBase::Dense(dense(5)), LoraConfig::new(R, 8.0));
    let names = lora.parameter_names();
    assert_eq!(names, ["weight", "bias", "lora_A.weight", "lora_B.weight"]);
    let trainable: Vec<String> = lora.trainable_parameters().into_keys().collect();
    assert_eq!(trainable, ["lora_A.weight", "lora_B.weight"]);
    let q = QuantizedLinear::from_linear(&dense(5), 32, 4).unwrap();
    let qlora = adapted(LinearBase::Quantized(q), LoraConfig::new(R, 8.0));
    assert_eq!(
        qlora.parameter_names(),
        [
            "weight",
            "scales",
            "biases",
            "bias",
            "lora_A.weight",
            "lora_B.weight"
        ]
    );
}

/// `loss = Σ c ⊙ y`: `∂/∂B = s · cᵀ (x Aᵀ)`, `∂/∂A = s · (c B)ᵀ x`.
fn check_adapter_gradients(lora: &LoraLinear, what: &str) {
    let rows = 3usize;
    let x = randn(&[rows as i32, IN], 21, Dtype::F32);
    let c = randn(&[rows as i32, OUT], 22, Dtype::F32);
    let out = value_and_grad(lora, |m| {
        Ok(vec![
            m.forward(&x)?
                .multiply(&c)?
                .sum(mlx_tensor::Axes::All, false)?,
        ])
    })
    .unwrap();
    let names: BTreeSet<&str> = out.grads.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["lora_A.weight", "lora_B.weight"]),
        "{what}: gradients"
    );
    let s = f64::from(lora.scaling());
    let (xs, cs) = (f64s(&x), f64s(&c));
    let (a, b) = (f64s(&lora.lora_a), f64s(&lora.lora_b));
    let (r, inp, outp) = (R as usize, IN as usize, OUT as usize);
    let xa = host_abt(&xs, &a, rows, inp, r); // [rows, r]
    // ∂/∂B[o, k] = s Σ_i c[i, o] xa[i, k]
    let grad_b = host_abt(
        &transpose(&cs, rows, outp),
        &transpose(&xa, rows, r),
        outp,
        rows,
        r,
    )
    .into_iter()
    .map(|v| s * v)
    .collect();
    // cb = c B: [rows, r]; ∂/∂A[k, j] = s Σ_i cb[i, k] x[i, j]
    let cb = host_abt(&cs, &transpose(&b, outp, r), rows, outp, r);
    let grad_a = host_abt(
        &transpose(&cb, rows, r),
        &transpose(&xs, rows, inp),
        r,
        rows,
        inp,
    )
    .into_iter()
    .map(|v| s * v)
    .collect();
    assert_close(
        &out.grads["lora_B.weight"],
        &host(grad_b, &[OUT, R]),
        1e-3,
        1e-3,
        &format!("{what}: dB"),
    );
    assert_close(
        &out.grads["lora_A.weight"],
        &host(grad_a, &[R, IN]),
        1e-3,
        1e-3,
        &format!("{what}: dA"),
    );
}

#[test]
fn gradients_reach_only_the_adapter_over_a_dense_base() {
    let lora = adapted(LinearBase::Dense(dense(6)), LoraConfig::new(R, 8.0));
    check_adapter_gradients(&lora, "LoRA");
}

#[test]
fn gradients_reach_only_the_adapter_over_a_quantized_base() {
    let q = QuantizedLinear::from_linear(&dense(7), 64, 4).unwrap();
    let lora = adapted(LinearBase::Quantized(q), LoraConfig::new(R, 8.0));
    check_adapter_gradients(&lora, "QLoRA");
}

#[test]
fn merged_equals_unmerged_and_unmerge_restores_the_base() {
    for (dtype, tol) in [(Dtype::F32, 1e-5), (Dtype::BF16, 3e-2)] {
        let base = dense(8);
        let mut lora = adapted(LinearBase::Dense(base.clone()), LoraConfig::new(R, 16.0));
        lora.cast(dtype).unwrap();
        let x = randn(&[4, IN], 9, dtype);
        let unmerged = lora.forward(&x).unwrap();
        lora.merge().unwrap();
        assert!(lora.is_merged());
        let merged = lora.forward(&x).unwrap();
        assert_close(&merged, &unmerged, tol, tol, "merged vs unmerged");
        let fused = lora.fused().unwrap().forward(&x).unwrap();
        assert_close(&fused, &unmerged, tol, tol, "fused vs unmerged");
        lora.unmerge().unwrap();
        let LinearBase::Dense(restored) = &lora.base else {
            panic!("dense base expected")
        };
        let original = base.weight.value.as_type(dtype).unwrap();
        assert_close(&restored.weight, &original, tol, tol, "unmerged weight");
        assert_close(
            &lora.forward(&x).unwrap(),
            &unmerged,
            tol,
            tol,
            "after unmerge",
        );
    }
}

#[test]
fn quantized_base_fuses_to_dequantized_weight_plus_update_and_refuses_in_place_merge() {
    let q = QuantizedLinear::from_linear(&dense(10), 32, 8).unwrap();
    let mut lora = adapted(LinearBase::Quantized(q.clone()), LoraConfig::new(R, 16.0));
    let x = randn(&[4, IN], 11, Dtype::F32);
    let fused = lora.fused().unwrap();
    let expected = q
        .dequantized_weight()
        .unwrap()
        .add(&lora.delta_weight().unwrap())
        .unwrap();
    assert_close(&fused.weight, &expected, 0.0, 0.0, "fused weight");
    assert_close(
        &fused.forward(&x).unwrap(),
        &lora.forward(&x).unwrap(),
        1e-4,
        1e-4,
        "fused vs QLoRA forward",
    );
    let err = lora.merge().unwrap_err().to_string();
    assert!(err.contains("quantized"), "{err}");
}

#[test]
fn disabled_adapter_is_exactly_its_base_dense_quantized_or_merged() {
    let dense_base = dense(14);
    let q = QuantizedLinear::from_linear(&dense(15), 32, 8).unwrap();
    let x = randn(&[4, IN], 16, Dtype::F32);
    let config = LoraConfig {
        lora_dropout: 0.5,
        ..LoraConfig::new(R, 16.0)
    };
    let cases = [
        (LinearBase::Dense(dense_base.clone()), "dense"),
        (LinearBase::Quantized(q.clone()), "quantized"),
    ];
    for (base, what) in cases {
        let mut lora = adapted(base.clone(), config);
        lora.set_enabled(false).unwrap();
        assert!(!lora.is_enabled());
        // Dropout in training mode does not matter either: the adapter
        // path is skipped.
        assert_close(
            &lora.forward(&x).unwrap(),
            &base.forward(&x).unwrap(),
            0.0,
            0.0,
            what,
        );
        lora.set_enabled(true).unwrap();
        lora.set_training(false);
        let back = lora.forward(&x).unwrap();
        let diff: f64 = f64s(&back.subtract(&base.forward(&x).unwrap()).unwrap())
            .iter()
            .map(|v| v.abs())
            .sum();
        assert!(diff > 1e-3, "{what}: re-enabled adapter changes nothing");
    }
    // A merged adapter is taken out of the weight when disabled; a
    // disabled one cannot be merged.
    let mut lora = adapted(
        LinearBase::Dense(dense_base.clone()),
        LoraConfig::new(R, 16.0),
    );
    lora.merge().unwrap();
    lora.set_enabled(false).unwrap();
    assert!(!lora.is_merged());
    assert_close(
        &lora.forward(&x).unwrap(),
        &dense_base.forward(&x).unwrap(),
        1e-5,
        1e-5,
        "disabled after merge",
    );
    let err = lora.merge().unwrap_err().to_string();
    assert!(err.contains("disabled"), "{err}");
}

#[test]
fn dropout_in_training_mode_touches_only_the_adapter_path() {
    let config = LoraConfig {
        lora_dropout: 0.5,
        ..LoraConfig::new(R, 16.0)
    };
    let mut lora = adapted(LinearBase::Dense(dense(12)), config);
    let x = randn(&[4, IN], 13, Dtype::F32);
    let key = random::key(3).unwrap();
    let train = lora.forward_with_key(&x, Some(&key)).unwrap();
    lora.set_training(false);
    let eval = lora.forward_with_key(&x, Some(&key)).unwrap();
    let diff: f64 = f64s(&train.subtract(&eval).unwrap())
        .iter()
        .map(|v| v.abs())
        .sum();
    assert!(diff > 1e-3, "dropout changed nothing");
    // With B = 0 the adapter path is zero, dropout or not.
    let zero_b = Array::zeros(&[OUT, R], Dtype::F32).unwrap();
    let mut silent = LoraLinear::from_parts(
        LinearBase::Dense(dense(12)),
        lora.lora_a.value.clone(),
        zero_b,
        config,
    )
    .unwrap();
    silent.set_training(true);
    assert_close(
        &silent.forward_with_key(&x, Some(&key)).unwrap(),
        &dense(12).forward(&x).unwrap(),
        0.0,
        0.0,
        "zero B under dropout",
    );
}

#[test]
fn bad_rank_dropout_or_factor_shapes_are_errors() {
    let key = random::key(0).unwrap();
    let base = || LinearBase::Dense(dense(1));
    assert!(LoraLinear::new(base(), LoraConfig::new(0, 8.0), &key).is_err());
    let bad_dropout = LoraConfig {
        lora_dropout: 1.0,
        ..LoraConfig::new(4, 8.0)
    };
    assert!(LoraLinear::new(base(), bad_dropout, &key).is_err());
    let a = Array::zeros(&[R, IN + 1], Dtype::F32).unwrap();
    let b = Array::zeros(&[OUT, R], Dtype::F32).unwrap();
    let err = LoraLinear::from_parts(base(), a, b, LoraConfig::new(R, 8.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lora_A.weight"), "{err}");
    let a = Array::zeros(&[R, IN], Dtype::F32).unwrap();
    let b = Array::zeros(&[OUT, R + 1], Dtype::F32).unwrap();
    let err = LoraLinear::from_parts(base(), a, b, LoraConfig::new(R, 8.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lora_B.weight"), "{err}");
}

#[test]
fn quantized_embedding_looks_up_and_projects_with_the_dequantized_table() {
    let table = randn(&[50, IN], 30, Dtype::F32);
    let e = Embedding {
        weight: table.into(),
    };
    let q = QuantizedEmbedding::from_embedding(&e, 32, 4).unwrap();
    let dense_table = table_of(&q);
    let ids = Array::from_slice(&[3u32, 0, 49, 3], &[2, 2]).unwrap();
    let expected = dense_table.take(&ids, Some(0)).unwrap();
    assert_close(&q.forward(&ids).unwrap(), &expected, 0.0, 0.0, "lookup");
    let x = randn(&[3, IN], 31, Dtype::F32);
    let expected = x.matmul(&dense_table.t().unwrap()).unwrap();
    assert_close(
        &q.as_linear(&x).unwrap(),
        &expected,
        1e-4,
        1e-4,
        "as_linear",
    );
    assert!(q.trainable_parameters().is_empty());
}

fn table_of(q: &QuantizedEmbedding) -> Array {
    mlx_tensor::Quantized {
        weight: q.weight.value.clone(),
        scales: q.scales.value.clone(),
        biases: q.biases.value.clone(),
        group_size: q.group_size,
        bits: q.bits,
    }
    .dequantize()
    .unwrap()
}
