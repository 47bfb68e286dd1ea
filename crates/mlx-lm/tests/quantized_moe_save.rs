//! Our quantizer on Qwen3-MoE writes what mlx-lm's `quantize_model` +
//! `save_model` + `save_config` write (`scripts/fixtures/
//! gen_quant_moe_fixtures.py`): the same tensors (stacked routed experts,
//! the router at 8 bits / group 64), the same `quantization` config with
//! the router's per-module entries, and the saved directory reloads to
//! mlx-lm's logits.

mod lm_support;

mod lora_quant_support;

use std::path::Path;

use lm_support::{load, logits_of, max_abs, max_diff, temp_dir};
use lora_quant_support::{assert_same_tensors, dir, read_tensors, reference, tokens};
use mlx_lm::SaveOptions;
use mlx_lm::loader::{
    MOE_ROUTER_SPEC, QuantizationSpec, load_model, random_model, save_quantized_model,
    tiny_qwen3_moe_config,
};
use mlx_lm::models::Model;
use mlx_tensor::Dtype;
use mlx_tensor::{Array, Quantized};
use tempfile::TempDir;

/// mlx-lm's quantized MoE fixtures: (directory, bits, group size).
const CASES: [(&str, i32, i32); 2] = [("quant_moe_b4_g32", 4, 32), ("quant_moe_b8_g64", 8, 64)];

fn config_of(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// Saves `model` quantized as case `name` and checks the result against
/// mlx-lm's files: every tensor bit for bit (those `skip` accepts only by
/// name), the quantization config, and the reloaded model's logits
/// (within `logits_tol` relative to their largest magnitude).
fn check_saved_as_mlx_lm(
    model: &Model,
    name: &str,
    bits: i32,
    group: i32,
    skip: impl Fn(&str) -> bool,
    logits_tol: f32,
) -> TempDir {
    let out_tmp = temp_dir(&format!("moe-quantize-{name}"));
    let out = out_tmp.path();
    let spec = QuantizationSpec {
        group_size: group,
        bits,
    };
    save_quantized_model(model, out, spec, &SaveOptions::default()).unwrap();
    assert_same_tensors(out, &dir(name), skip);
    let (ours, theirs) = (config_of(out), config_of(&dir(name)));
    for field in ["quantization", "quantization_config"] {
        assert_eq!(ours[field], theirs[field], "{name}: {field}");
    }
    let back = logits_of(&load_model(out, None).unwrap(), &tokens());
    let expected = reference(name);
    let diff = max_diff(&back, &expected);
    assert!(
        diff < logits_tol * max_abs(&expected).max(1.0),
        "{name}: reload max diff {diff}"
    );
    out_tmp
}

#[test]
fn dense_moe_quantized_by_us_matches_mlx_lm_bit_for_bit() {
    let model = load("qwen3_moe", Dtype::F32);
    for (name, bits, group) in CASES {
        check_saved_as_mlx_lm(&model, name, bits, group, |_| false, 1e-4);
    }
}

/// An already quantized MoE (mlx-lm's checkpoint loaded): packed layers are
/// written as they are. Loading dequantizes the router into a dense layer,
/// so saving quantizes those values again: its packed values may move by
/// one quantization step, so it is compared dequantized, within one step.
#[test]
fn quantized_moe_saved_again_keeps_mlx_lm_tensors() {
    let is_router = |k: &str| k.contains(".mlp.gate.");
    for (name, bits, group) in CASES {
        let model = load_model(dir(name), None).unwrap();
        let out = check_saved_as_mlx_lm(&model, name, bits, group, is_router, 2e-3);
        let (ours, theirs) = (read_tensors(out.path()), read_tensors(&dir(name)));
        let router = "model.layers.1.mlp.gate";
        let dense = |t: &std::collections::BTreeMap<String, Array>| {
            let part = |p: &str| t[&format!("{router}.{p}")].clone();
            let q = Quantized {
                weight: part("weight"),
                scales: part("scales"),
                biases: part("biases"),
                group_size: MOE_ROUTER_SPEC.group_size,
                bits: MOE_ROUTER_SPEC.bits,
            };
            q.dequantize().unwrap().to_vec::<f32>().unwrap()
        };
        let step = max_abs(&theirs[&format!("{router}.scales")].to_vec::<f32>().unwrap());
        let diff = max_diff(&dense(&ours), &dense(&theirs));
        assert!(
            diff <= step * 1.001,
            "{name}: router moved {diff} (step {step})"
        );
    }
}

#[test]
fn router_width_not_a_multiple_of_its_group_size_is_an_error_naming_it() {
    // Hidden width 96 is a multiple of the default group size 32, but not
    // of the router's 64: mlx-lm cannot quantize that router either.
    let mut config = tiny_qwen3_moe_config();
    config.base_mut().hidden_size = 96;
    let model = random_model(&config, 7, Dtype::F32).unwrap();
    let out_tmp = temp_dir("moe-quantize-router-width");
    let spec = QuantizationSpec {
        group_size: 32,
        bits: 4,
    };
    let err = save_quantized_model(&model, out_tmp.path(), spec, &SaveOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.layers.1.mlp.gate"), "{err}");
    assert!(err.contains("group size 64"), "{err}");
}
