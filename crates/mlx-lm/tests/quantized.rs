//! mlx-lm's quantized checkpoints (`scripts/fixtures/gen_lora_quant_fixtures.py`):
//! loading them gives mlx-lm's logits, our quantizer writes mlx-lm's
//! tensors and config, QLoRA adapters over a quantized base give mlx-lm's
//! logits, mlx-lm's quantized Qwen3-MoE (`scripts/fixtures/
//! gen_quant_moe_fixtures.py`) gives its logits, and bad quantized
//! checkpoints are errors naming file and tensor.

mod lm_support;

mod lora_quant_support;

use lora_quant_support::{dir, reference, tokens};
use std::path::Path;

use lm_support::{copy_fixture, load, logits_of, max_abs, max_diff, temp_dir};
use mlx_lm::SaveOptions;
use mlx_lm::loader::{
    QuantizationSpec, load_adapters, load_model, merge_adapters, quantization_config, save_model,
    save_quantized_model,
};
use mlx_nn::ModuleExt;
use mlx_tensor::{Dtype, io};
use tempfile::TempDir;

const CASES: [(&str, i32, i32); 3] = [
    ("quant_b4_g64", 4, 64),
    ("quant_b8_g32", 8, 32),
    ("quant_b4_g128", 4, 128),
];

#[test]
fn mlx_lm_quantized_checkpoints_give_mlx_lm_logits() {
    let dense = logits_of(&load("qwen3_untied", Dtype::F32), &tokens());
    for (name, bits, group) in CASES {
        let q = quantization_config(dir(name)).unwrap().unwrap();
        assert_eq!(
            q.default,
            QuantizationSpec {
                group_size: group,
                bits
            }
        );
        let model = load_model(dir(name), None).unwrap();
        let got = logits_of(&model, &tokens());
        let expected = reference(name);
        let diff = max_diff(&got, &expected);
        assert!(
            diff < 1e-4 * max_abs(&expected).max(1.0),
            "{name}: max diff {diff}"
        );
        // Quantization did change the model (4-bit more than 8-bit).
        assert!(max_diff(&dense, &expected) > 1e-4, "{name}: same as dense");
    }
}

/// mlx-lm's 4-bit Qwen3-MoE (`scripts/fixtures/gen_quant_moe_fixtures.py`):
/// every linear layer is quantized, the stacked routed experts and the
/// tied embedding included, and the router at 8 bits by a per-module entry.
#[test]
fn mlx_lm_quantized_moe_checkpoint_gives_mlx_lm_logits() {
    let name = "quant_moe_b4_g32";
    let q = quantization_config(dir(name)).unwrap().unwrap();
    let expected_spec = |group_size, bits| Some(QuantizationSpec { group_size, bits });
    assert_eq!(
        q.spec_for("model.layers.1.mlp.switch_mlp.down_proj"),
        expected_spec(32, 4)
    );
    assert_eq!(q.spec_for("model.layers.1.mlp.gate"), expected_spec(64, 8));
    let packed = io::load_safetensors(dir(name).join("model.safetensors")).unwrap();
    for module in [
        "model.embed_tokens",
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.mlp.down_proj",
        "model.layers.1.mlp.gate",
        "model.layers.1.mlp.switch_mlp.gate_proj",
        "model.layers.1.mlp.switch_mlp.down_proj",
    ] {
        let weight = &packed.tensors[&format!("{module}.weight")];
        assert_eq!(weight.dtype(), Dtype::U32, "{module} is not packed");
    }

    let model = load_model(dir(name), None).unwrap();
    // The routed experts stay packed (applied with `gather_qmm`).
    let mut params = std::collections::HashMap::new();
    model.for_each_param(|n, p| {
        params.insert(n.to_string(), (p.value.dtype(), p.frozen));
    });
    for proj in ["gate_proj", "up_proj", "down_proj"] {
        let module = format!("model.layers.1.mlp.switch_mlp.{proj}");
        assert_eq!(params[&format!("{module}.weight")], (Dtype::U32, true));
        assert_eq!(params[&format!("{module}.scales")], (Dtype::F32, true));
        assert_eq!(params[&format!("{module}.biases")], (Dtype::F32, true));
    }
    let got = logits_of(&model, &tokens());
    let expected = reference(name);
    let diff = max_diff(&got, &expected);
    assert!(diff < 1e-4 * max_abs(&expected).max(1.0), "max diff {diff}");
    // Saved, the packed experts keep mlx-lm's stacked layout and values.
    let saved_tmp = temp_dir("quant-moe-save");
    save_model(&model, saved_tmp.path(), &SaveOptions::default()).unwrap();
    let saved = io::load_safetensors(saved_tmp.path().join("model.safetensors")).unwrap();
    for (k, v) in packed
        .tensors
        .iter()
        .filter(|(k, _)| k.contains("switch_mlp"))
    {
        let same = saved.tensors[k]
            .array_equal(v, false)
            .unwrap()
            .to_vec::<bool>()
            .unwrap()[0];
        assert!(same, "{k} saved differs from mlx-lm's");
    }
    // Quantization did change the model.
    let dense = logits_of(&load("qwen3_moe", Dtype::F32), &tokens());
    assert!(max_diff(&dense, &expected) > 1e-3, "same as dense");
}

#[test]
fn our_quantizer_writes_mlx_lm_tensors_and_config() {
    let model = load("qwen3_untied", Dtype::F32);
    for (name, bits, group) in CASES {
        let out_tmp = temp_dir(&format!("quantize-{name}"));
        let out = out_tmp.path();
        let spec = QuantizationSpec {
            group_size: group,
            bits,
        };
        save_quantized_model(&model, out, spec, &SaveOptions::default()).unwrap();
        let ours = io::load_safetensors(out.join("model.safetensors")).unwrap();
        let theirs = io::load_safetensors(dir(name).join("model.safetensors")).unwrap();
        let mut keys: Vec<&String> = ours.tensors.keys().collect();
        let mut want: Vec<&String> = theirs.tensors.keys().collect();
        keys.sort();
        want.sort();
        assert_eq!(keys, want, "{name}: keys");
        for (k, v) in &theirs.tensors {
            let o = &ours.tensors[k];
            assert_eq!(o.dtype(), v.dtype(), "{name}: {k} dtype");
            assert_eq!(o.shape(), v.shape(), "{name}: {k} shape");
            let same = o.array_equal(v, false).unwrap().to_vec::<bool>().unwrap()[0];
            assert!(same, "{name}: {k} differs from mlx-lm's");
        }
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        for field in ["quantization", "quantization_config"] {
            assert_eq!(config[field]["bits"], bits, "{name}: {field}");
            assert_eq!(config[field]["group_size"], group, "{name}: {field}");
            assert_eq!(config[field]["mode"], "affine", "{name}: {field}");
        }
        // And it loads back to mlx-lm's logits.
        let back = logits_of(&load_model(out, None).unwrap(), &tokens());
        let expected = reference(name);
        assert!(
            max_diff(&back, &expected) < 1e-4 * max_abs(&expected).max(1.0),
            "{name}: reload"
        );
    }
}

#[test]
fn qlora_adapters_over_the_quantized_base_give_mlx_lm_logits() {
    let (adapters, _) = load_adapters(dir("qlora_b4_g64")).unwrap();
    let mut model = load_model(dir("quant_b4_g64"), None).unwrap();
    merge_adapters(&mut model, &adapters).unwrap();
    let got = logits_of(&model, &tokens());
    let expected = reference("qlora_b4_g64");
    let diff = max_diff(&got, &expected);
    assert!(diff < 1e-4 * max_abs(&expected).max(1.0), "max diff {diff}");
    assert!(max_diff(&expected, &reference("quant_b4_g64")) > 1e-3);
}

fn edit_config(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

/// A copy of the quantized fixture `name`, removed when dropped.
fn copy_quantized(name: &str, tag: &str) -> TempDir {
    let out = temp_dir(tag);
    for f in [
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
    ] {
        std::fs::copy(dir(name).join(f), out.path().join(f)).unwrap();
    }
    out
}

#[test]
fn unsupported_settings_and_mis_shaped_parts_are_errors_naming_them() {
    let out_tmp = copy_quantized("quant_b4_g64", "quant-bad-mode");
    let out = out_tmp.path();
    edit_config(&out.join("config.json"), |v| {
        v["quantization"]["mode"] = "mxfp4".into()
    });
    let err = load_model(out, None).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("mxfp4"),
        "{err}"
    );
    edit_config(&out.join("config.json"), |v| {
        v["quantization"]["mode"] = "affine".into();
        v["quantization"]["group_size"] = 48.into();
    });
    let err = load_model(out, None).unwrap_err().to_string();
    assert!(err.contains("group_size") && err.contains("48"), "{err}");
    // The config says 8 bits, the packed weights hold 4.
    edit_config(&out.join("config.json"), |v| {
        v["quantization"]["group_size"] = 64.into();
        v["quantization"]["bits"] = 8.into();
    });
    let err = load_model(out, None).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains(".scales") && err.contains("shape"),
        "{err}"
    );

    // Packed experts whose widths do not fit the config (experts of width
    // 48, stored with 32): an error naming the experts' tensors.
    let moe_tmp = copy_quantized("quant_moe_b4_g32", "quant-moe-bad-width");
    let moe = moe_tmp.path();
    edit_config(&moe.join("config.json"), |v| {
        v["moe_intermediate_size"] = 48.into()
    });
    let err = load_model(moe, None).unwrap_err().to_string();
    assert!(
        err.contains("model.layers.1.mlp.switch_mlp.down_proj.scales") && err.contains("48"),
        "{err}"
    );

    // A dense checkpoint is still loaded by the ordinary path.
    let plain_tmp = temp_dir("quant-plain");
    let plain = plain_tmp.path();
    copy_fixture("qwen3_untied", plain);
    assert!(quantization_config(plain).unwrap().is_none());
    load_model(plain, None).unwrap();
}
