//! LoRA adapters in mlx-lm's and PEFT's layouts against mlx-lm's logits
//! (`scripts/fixtures/gen_lora_quant_fixtures.py`), both directions, and
//! bad adapter files.

mod lm_support;

mod lora_quant_support;

use lora_quant_support::{dir as lora_dir, reference, tokens};
use std::path::Path;

use lm_support::{load, logits_of, max_abs, max_diff, temp_dir};
use mlx_lm::loader::{
    AdapterFormat, Adapters, LoraFactors, adapter_targets, block_count, load_adapters,
    merge_adapters, new_adapters, save_adapters, unmerge_adapters,
};
use mlx_nn::ModuleExt;
use mlx_nn::layers::{LayerSelection, LoraConfig, TargetModules};
use mlx_tensor::{Array, Dtype, io};

const BASE: &str = "qwen3_untied";

/// The base model with `adapters` merged, against mlx-lm's logits with the
/// adapters unfused.
fn assert_merged_logits(adapters: &Adapters, expected: &[f32], what: &str) {
    let mut model = load(BASE, Dtype::F32);
    merge_adapters(&mut model, adapters).unwrap();
    let got = logits_of(&model, &tokens());
    let diff = max_diff(&got, expected);
    assert!(
        diff < 1e-4 * max_abs(expected).max(1.0),
        "{what}: max diff {diff}"
    );
}

#[test]
fn mlx_lm_adapters_of_the_last_block_give_mlx_lm_logits() {
    let (adapters, format) = load_adapters(lora_dir("mlx_lora_last1")).unwrap();
    assert_eq!(format, AdapterFormat::MlxLm);
    assert_eq!(adapters.config.r, 4);
    assert!((adapters.config.scaling() - 2.0).abs() < 1e-6);
    assert_eq!(adapters.layers, LayerSelection::Last(1));
    assert_eq!(adapters.target_modules, TargetModules::AllLinear);
    assert_eq!(adapters.modules.len(), 7);
    // What the configuration selects is exactly what the file holds.
    let model = load(BASE, Dtype::F32);
    let selected = adapter_targets(&model, &adapters).unwrap();
    let held: Vec<String> = adapters.modules.keys().cloned().collect();
    let mut sorted = selected.clone();
    sorted.sort();
    assert_eq!(sorted, held);
    // Adapters change the logits (the fixture's B is not zero).
    let base = logits_of(&model, &tokens());
    assert!(max_diff(&base, &reference("mlx_lora_last1")) > 1e-3);
    assert_merged_logits(&adapters, &reference("mlx_lora_last1"), "mlx_lora_last1");
}

#[test]
fn mlx_lm_adapters_with_keys_on_every_block_give_mlx_lm_logits() {
    let (adapters, _) = load_adapters(lora_dir("mlx_lora_qv_all")).unwrap();
    assert_eq!(adapters.layers, LayerSelection::All);
    assert_eq!(
        adapters.target_modules,
        TargetModules::Names(vec!["self_attn.q_proj".into(), "self_attn.v_proj".into()])
    );
    assert_eq!(adapters.modules.len(), 4);
    assert_merged_logits(&adapters, &reference("mlx_lora_qv_all"), "mlx_lora_qv_all");
}

#[test]
fn peft_layout_adapters_give_the_same_logits() {
    let (adapters, format) = load_adapters(lora_dir("peft_lora_last1")).unwrap();
    assert_eq!(format, AdapterFormat::Peft);
    assert_eq!(adapters.layers, LayerSelection::Indices(vec![1]));
    assert_eq!(adapters.config.lora_alpha, 8.0);
    assert_merged_logits(&adapters, &reference("peft_lora_last1"), "peft_lora_last1");
}

#[test]
fn merge_then_unmerge_restores_the_base_weights() {
    let (adapters, _) = load_adapters(lora_dir("mlx_lora_last1")).unwrap();
    let mut model = load(BASE, Dtype::F32);
    let before = model.parameters();
    merge_adapters(&mut model, &adapters).unwrap();
    unmerge_adapters(&mut model, &adapters).unwrap();
    let after = model.parameters();
    for (name, w) in &before {
        let d = w
            .subtract(&after[name])
            .unwrap()
            .abs()
            .unwrap()
            .max(mlx_tensor::Axes::All, false)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()[0];
        assert!(d < 1e-5, "{name}: {d}");
    }
}

fn round_trip(from: &str, format: AdapterFormat) {
    let (adapters, _) = load_adapters(lora_dir(from)).unwrap();
    let out_tmp = temp_dir(&format!("adapters-{from}-{format:?}"));
    let out = out_tmp.path();
    let model = load(BASE, Dtype::F32);
    save_adapters(&adapters, out, format, block_count(&model)).unwrap();
    let (back, read_format) = load_adapters(out).unwrap();
    assert_eq!(read_format, format);
    assert_eq!(back.config.r, adapters.config.r);
    assert!((back.config.scaling() - adapters.config.scaling()).abs() < 1e-6);
    assert_eq!(
        back.modules.keys().collect::<Vec<_>>(),
        adapters.modules.keys().collect::<Vec<_>>()
    );
    // What the saved configuration selects matches the saved tensors.
    let mut selected = adapter_targets(&model, &back).unwrap();
    selected.sort();
    assert_eq!(selected, back.modules.keys().cloned().collect::<Vec<_>>());
    assert_merged_logits(&back, &reference(from), &format!("{from} via {format:?}"));
}

#[test]
fn adapters_round_trip_through_both_layouts() {
    round_trip("mlx_lora_last1", AdapterFormat::Peft);
    round_trip("mlx_lora_last1", AdapterFormat::MlxLm);
    round_trip("peft_lora_last1", AdapterFormat::MlxLm);
    round_trip("mlx_lora_qv_all", AdapterFormat::Peft);
}

#[test]
fn saved_mlx_lm_files_have_mlx_lm_keys_shapes_and_config() {
    let (adapters, _) = load_adapters(lora_dir("peft_lora_last1")).unwrap();
    let out_tmp = temp_dir("adapters-mlx-layout");
    let out = out_tmp.path();
    save_adapters(&adapters, out, AdapterFormat::MlxLm, 2).unwrap();
    let ours = io::load_safetensors(out.join("adapters.safetensors")).unwrap();
    let theirs =
        io::load_safetensors(lora_dir("mlx_lora_last1").join("adapters.safetensors")).unwrap();
    let mut keys: Vec<&String> = ours.tensors.keys().collect();
    let mut want: Vec<&String> = theirs.tensors.keys().collect();
    keys.sort();
    want.sort();
    assert_eq!(keys, want);
    for (k, v) in &theirs.tensors {
        assert_eq!(ours.tensors[k].shape(), v.shape(), "{k}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["num_layers"], 1);
    assert_eq!(config["lora_parameters"]["rank"], 4);
    assert_eq!(config["lora_parameters"]["scale"], 2.0);
}

#[test]
fn fresh_adapters_leave_the_logits_unchanged_and_target_as_asked() {
    let model = load(BASE, Dtype::F32);
    let adapters = new_adapters(
        &model,
        LoraConfig::new(8, 16.0),
        TargetModules::AllLinear,
        LayerSelection::All,
        3,
    )
    .unwrap();
    assert_eq!(adapters.modules.len(), 14);
    assert!(!adapters.modules.contains_key("lm_head"));
    let base = logits_of(&model, &tokens());
    let mut merged = model.clone();
    merge_adapters(&mut merged, &adapters).unwrap();
    assert_eq!(max_diff(&base, &logits_of(&merged, &tokens())), 0.0);
    let f = &adapters.modules["model.layers.0.mlp.down_proj"];
    assert_eq!(f.a.shape().0, vec![8, 128]);
    assert_eq!(f.b.shape().0, vec![64, 8]);
}

fn write_peft(dir: &Path, config: serde_json::Value, tensors: &[(&str, Array)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    io::save_safetensors(
        dir.join("adapter_model.safetensors"),
        tensors.iter().map(|(k, v)| (*k, v)),
        &Default::default(),
    )
    .unwrap();
}

fn peft_config(r: i32) -> serde_json::Value {
    serde_json::json!({"peft_type": "LORA", "r": r, "lora_alpha": 8, "target_modules": ["q_proj"]})
}

#[test]
fn bad_adapters_are_errors_naming_file_and_tensor() {
    let tmp = temp_dir("adapters-bad");
    let dir = tmp.path();
    let zeros = |s: &[i32]| Array::zeros(s, Dtype::F32).unwrap();
    let model = load(BASE, Dtype::F32);
    let q = "base_model.model.model.layers.0.self_attn.q_proj";

    // Rank disagreeing with the config.
    let a_key = format!("{q}.lora_A.weight");
    let b_key = format!("{q}.lora_B.weight");
    write_peft(
        dir,
        peft_config(4),
        &[(&a_key, zeros(&[2, 64])), (&b_key, zeros(&[64, 2]))],
    );
    let err = load_adapters(dir).unwrap_err().to_string();
    assert!(
        err.contains("adapter_model.safetensors") && err.contains(&a_key),
        "{err}"
    );

    // Factors that do not fit the module's weight.
    write_peft(
        dir,
        peft_config(2),
        &[(&a_key, zeros(&[2, 48])), (&b_key, zeros(&[64, 2]))],
    );
    let (adapters, _) = load_adapters(dir).unwrap();
    let mut m = model.clone();
    let err = merge_adapters(&mut m, &adapters).unwrap_err().to_string();
    assert!(
        err.contains("adapter_model.safetensors")
            && err.contains("q_proj")
            && err.contains("do not fit"),
        "{err}"
    );

    // A module the model does not have, and one that is not linear.
    let ghost = "base_model.model.model.layers.0.self_attn.qkv_proj";
    let norm = "base_model.model.model.layers.0.input_layernorm";
    write_peft(
        dir,
        peft_config(2),
        &[
            (&format!("{ghost}.lora_A.weight"), zeros(&[2, 64])),
            (&format!("{ghost}.lora_B.weight"), zeros(&[64, 2])),
            (&format!("{norm}.lora_A.weight"), zeros(&[2, 64])),
            (&format!("{norm}.lora_B.weight"), zeros(&[64, 2])),
        ],
    );
    let (adapters, _) = load_adapters(dir).unwrap();
    let err = merge_adapters(&mut model.clone(), &adapters)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("qkv_proj") && err.contains("no such module"),
        "{err}"
    );
    assert!(
        err.contains("input_layernorm") && err.contains("not a linear layer"),
        "{err}"
    );

    // A missing half, and a tensor that is no LoRA factor.
    write_peft(
        dir,
        peft_config(2),
        &[
            (&a_key, zeros(&[2, 64])),
            ("base_model.model.lm_head.weight", zeros(&[2, 2])),
        ],
    );
    let err = load_adapters(dir).unwrap_err().to_string();
    assert!(
        err.contains(&b_key) && err.contains("lm_head.weight"),
        "{err}"
    );

    // Unknown target names and unsupported settings in the config.
    write_peft(
        dir,
        serde_json::json!({"peft_type": "LORA", "r": 2, "lora_alpha": 8, "target_modules": ["qkv_proj"]}),
        &[(&a_key, zeros(&[2, 64])), (&b_key, zeros(&[64, 2]))],
    );
    let (adapters, _) = load_adapters(dir).unwrap();
    let err = adapter_targets(&model, &adapters).unwrap_err().to_string();
    assert!(err.contains("qkv_proj"), "{err}");
    write_peft(
        dir,
        serde_json::json!({"peft_type": "LORA", "r": 2, "use_dora": true, "target_modules": ["q_proj"]}),
        &[(&a_key, zeros(&[2, 64])), (&b_key, zeros(&[64, 2]))],
    );
    let err = load_adapters(dir).unwrap_err().to_string();
    assert!(
        err.contains("adapter_config.json") && err.contains("use_dora"),
        "{err}"
    );
    write_peft(
        dir,
        serde_json::json!({"peft_type": "IA3", "target_modules": ["q_proj"]}),
        &[],
    );
    let err = load_adapters(dir).unwrap_err().to_string();
    assert!(err.contains("peft_type"), "{err}");

    // mlx-lm adapters that do not cover the last blocks cannot be written.
    let (mut adapters, _) = load_adapters(lora_dir("mlx_lora_last1")).unwrap();
    let f = adapters.modules["model.layers.1.self_attn.q_proj"].clone();
    adapters.modules.insert(
        "model.layers.0.self_attn.q_proj".into(),
        LoraFactors { a: f.a, b: f.b },
    );
    let out_tmp = temp_dir("adapters-bad-mlx");
    let out = out_tmp.path();
    let err = save_adapters(&adapters, out, AdapterFormat::MlxLm, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("num_layers"), "{err}");
}
