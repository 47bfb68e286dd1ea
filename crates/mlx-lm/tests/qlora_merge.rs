//! A model with adapters over a quantized base (QLoRA) written merged, as
//! mlx-lm's `fuse` writes it (`scripts/fixtures/gen_qlora_fuse_fixtures.py`):
//! re-quantized (the same tensors, the same quantization config, mlx-lm's
//! logits on reload) and dequantized (the fused layers, no packed tensor,
//! no quantization config, mlx-lm's logits). The adapters are mlx-lm's,
//! read in PEFT's layout (`peft_lora_last1`).
//!
//! Tolerance: the low-rank product `B·A` of this MLX build and of the
//! reference's wheel differ in the last bit of some elements (the
//! dequantization agrees bit for bit), so the fused float weights, and
//! the scales and biases quantized from them, are compared within
//! `FLOAT_REL` (a few float32 ulps) of each tensor's largest magnitude;
//! the packed integers must be identical.

mod lm_support;

mod lora_quant_support;

use std::path::Path;

use lm_support::{fixture_dir, load, logits_of, max_abs, max_diff, temp_dir};
use lora_quant_support::{assert_close_tensors, dir, read_tensors, reference, tokens};
use mlx_lm::LanguageModel;
use mlx_lm::SaveOptions;
use mlx_lm::loader::{
    MergedFormat, QuantizationSpec, attach_lora, fuse_attached_adapters_requantized, has_adapters,
    load_and_attach_adapters, load_model, save_merged_model, save_quantized_model,
};
use mlx_lm::models::{Model, Projection};
use mlx_nn::layers::{LayerSelection, LoraConfig, TargetModules};
use mlx_tensor::Dtype;

/// A few float32 ulps (`2⁻²¹`), relative to a tensor's largest magnitude.
const FLOAT_REL: f32 = 4.8e-7;

fn adapted_quantized_base() -> Model {
    let mut model = load_model(dir("quant_b4_g64"), None).unwrap();
    load_and_attach_adapters(&mut model, dir("peft_lora_last1")).unwrap();
    model
}

fn config_of(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn assert_logits(dir: &Path, name: &str) {
    let got = logits_of(&load_model(dir, None).unwrap(), &tokens());
    let expected = reference(name);
    let diff = max_diff(&got, &expected);
    assert!(
        diff < 1e-4 * max_abs(&expected).max(1.0),
        "{name}: max diff {diff}"
    );
}

#[test]
fn requantized_merge_writes_mlx_lm_fused_checkpoint() {
    let model = adapted_quantized_base();
    let out_tmp = temp_dir("qlora-merge-requantized");
    let out = out_tmp.path();
    save_merged_model(
        &model,
        out,
        MergedFormat::Requantized,
        &SaveOptions::default(),
    )
    .unwrap();
    assert!(has_adapters(&model), "the model keeps its adapters");
    let name = "qlora_fused_b4_g64";
    assert_close_tensors(out, &dir(name), FLOAT_REL);
    let (ours, theirs) = (config_of(out), config_of(&dir(name)));
    for field in ["quantization", "quantization_config"] {
        assert_eq!(ours[field], theirs[field], "{field}");
    }
    assert_logits(out, name);
    // Re-quantizing moved the output off the unfused adapters'.
    assert!(max_diff(&reference(name), &reference("qlora_b4_g64")) > 1e-5);
}

#[test]
fn dequantized_merge_writes_mlx_lm_fused_dense_weights() {
    let model = adapted_quantized_base();
    let out_tmp = temp_dir("qlora-merge-dequantized");
    let out = out_tmp.path();
    save_merged_model(
        &model,
        out,
        MergedFormat::Dequantized,
        &SaveOptions::default(),
    )
    .unwrap();
    let name = "qlora_fused_dequant_b4_g64";
    let ours = read_tensors(out);
    assert!(
        ours.keys()
            .all(|k| !k.ends_with(".scales") && !k.ends_with(".biases")),
        "packed tensors left: {:?}",
        ours.keys().collect::<Vec<_>>()
    );
    // Hugging Face's dense layout: the names (and dtypes) of the float
    // checkpoint the quantized base was made from.
    let float = read_tensors(&fixture_dir("qwen3_untied"));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        float.keys().collect::<Vec<_>>()
    );
    for (k, v) in &float {
        assert_eq!(
            (ours[k].dtype(), ours[k].shape()),
            (v.dtype(), v.shape()),
            "{k}"
        );
    }
    let fused = read_tensors(&dir(name));
    assert_eq!(fused.len(), 7, "the last block's seven projections");
    for (k, want) in &fused {
        let got = &ours[k];
        assert_eq!(got.dtype(), want.dtype(), "{k}");
        let (g, w) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
        let diff = max_diff(&g, &w);
        assert!(diff <= FLOAT_REL * max_abs(&w), "{k} differs by {diff}");
    }
    let config = config_of(out);
    assert!(config.get("quantization").is_none(), "{config}");
    assert!(config.get("quantization_config").is_none(), "{config}");
    assert_eq!(config_of(&dir(name)).get("quantization"), None);
    assert_logits(out, name);
}

/// A source directory's `quantization` entry is not carried into the
/// dequantized output's config.
#[test]
fn dequantized_merge_drops_the_source_quantization_entry() {
    let model = adapted_quantized_base();
    let out_tmp = temp_dir("qlora-merge-dequantized-source");
    let options = SaveOptions {
        source_dir: Some(dir("quant_b4_g64")),
        ..SaveOptions::default()
    };
    save_merged_model(&model, out_tmp.path(), MergedFormat::Dequantized, &options).unwrap();
    let config = config_of(out_tmp.path());
    assert!(config.get("quantization").is_none(), "{config}");
    assert!(
        config_of(&dir("quant_b4_g64"))
            .get("quantization")
            .is_some()
    );
}

/// Fused in memory (`fuse_attached_adapters_requantized`): over the
/// quantized base every projection stays packed with the base's setting and
/// gives mlx-lm's fused logits; over a dense base the fused layers are dense
/// and give mlx-lm's adapted logits.
#[test]
fn in_memory_fuse_keeps_each_base_kind() {
    let mut model = adapted_quantized_base();
    fuse_attached_adapters_requantized(&mut model).unwrap();
    assert!(!has_adapters(&model));
    let t = model.transformer().unwrap();
    for (path, p) in t.projections() {
        let Projection::Quantized(q) = p else {
            panic!("{path} is not packed after fusing");
        };
        assert_eq!((q.group_size, q.bits), (64, 4), "{path}");
    }
    let got = logits_of(&model, &tokens());
    let expected = reference("qlora_fused_b4_g64");
    let diff = max_diff(&got, &expected);
    assert!(diff < 1e-4 * max_abs(&expected).max(1.0), "max diff {diff}");

    let mut dense = load("qwen3_untied", Dtype::F32);
    load_and_attach_adapters(&mut dense, dir("peft_lora_last1")).unwrap();
    fuse_attached_adapters_requantized(&mut dense).unwrap();
    let t = dense.transformer().unwrap();
    assert!(
        t.projections()
            .iter()
            .all(|(_, p)| matches!(p, Projection::Dense(_)))
    );
    let got = logits_of(&dense, &tokens());
    let expected = reference("peft_lora_last1");
    let diff = max_diff(&got, &expected);
    assert!(
        diff < 1e-4 * max_abs(&expected).max(1.0),
        "dense: max diff {diff}"
    );
}

/// Qwen3-MoE over mlx-lm's 4-bit checkpoint, with fresh adapters (`B = 0`,
/// so the merged model is the base): dequantized, the experts are written
/// one tensor per expert (Hugging Face's layout) and give mlx-lm's logits;
/// re-quantized, they stay stacked and packed (mlx-lm's layout).
#[test]
fn merged_moe_over_a_quantized_base_in_both_formats() {
    let name = "quant_moe_b4_g32";
    let mut model = load_model(dir(name), None).unwrap();
    let lora = LoraConfig::new(2, 4.0);
    attach_lora(
        &mut model,
        lora,
        TargetModules::Names(vec!["q_proj".into(), "v_proj".into()]),
        LayerSelection::All,
        3,
    )
    .unwrap();
    let expected = reference(name);

    let dense_tmp = temp_dir("qlora-merge-moe-dense");
    let dense = dense_tmp.path();
    save_merged_model(
        &model,
        dense,
        MergedFormat::Dequantized,
        &SaveOptions::default(),
    )
    .unwrap();
    let tensors = read_tensors(dense);
    assert!(tensors.contains_key("model.layers.1.mlp.experts.7.down_proj.weight"));
    assert!(
        tensors
            .keys()
            .all(|k| !k.contains("switch_mlp") && !k.ends_with(".scales"))
    );
    let got = logits_of(&load_model(dense, None).unwrap(), &tokens());
    let diff = max_diff(&got, &expected);
    assert!(
        diff < 1e-4 * max_abs(&expected).max(1.0),
        "dequantized: {diff}"
    );

    let packed_tmp = temp_dir("qlora-merge-moe-packed");
    let packed = packed_tmp.path();
    save_merged_model(
        &model,
        packed,
        MergedFormat::Requantized,
        &SaveOptions::default(),
    )
    .unwrap();
    let tensors = read_tensors(packed);
    let experts = "model.layers.1.mlp.switch_mlp.down_proj";
    assert_eq!(tensors[&format!("{experts}.weight")].dtype(), Dtype::U32);
    assert!(tensors.contains_key(&format!("{experts}.scales")));
    assert_eq!(
        config_of(packed)["quantization"],
        config_of(&dir(name))["quantization"]
    );
    // The routed experts are not adapted: mlx-lm's bytes.
    let theirs = read_tensors(&dir(name));
    for part in ["weight", "scales", "biases"] {
        let key = format!("{experts}.{part}");
        let same = tensors[&key].array_equal(&theirs[&key], false).unwrap();
        assert!(same.to_vec::<bool>().unwrap()[0], "{key}");
    }
    // Reloaded, it is the model fused in memory, up to the router, which
    // is quantized anew from its dequantized values (see
    // `quantized_moe_save.rs`), hence the wider tolerance. (Quantizing the
    // fused q/v projections again moves the model off its base, as in
    // mlx-lm.)
    let mut fused = model.clone();
    fuse_attached_adapters_requantized(&mut fused).unwrap();
    let want = logits_of(&fused, &tokens());
    let got = logits_of(&load_model(packed, None).unwrap(), &tokens());
    let diff = max_diff(&got, &want);
    assert!(
        diff < 2e-3 * max_abs(&want).max(1.0),
        "re-quantized: {diff}"
    );
}

/// Quantizing a model with adapters attached would quantize the factors as
/// weights: it is an error pointing at the merged output.
#[test]
fn quantizing_a_model_with_adapters_is_an_error() {
    let model = adapted_quantized_base();
    let out_tmp = temp_dir("qlora-quantize-adapted");
    let spec = QuantizationSpec {
        group_size: 64,
        bits: 4,
    };
    let err = save_quantized_model(&model, out_tmp.path(), spec, &SaveOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("adapters") && err.contains("save_merged_model"),
        "{err}"
    );
    assert!(!out_tmp.path().join("model.safetensors").exists());
}
