//! Adapters at the command line: `generate`, `score` and `grpo` with
//! `--adapter DIR`. Valid adapters (ours, and the checkpoint of a GRPO run
//! on adapters) run; broken adapter directories end with a non-zero exit
//! code and one `error: ...` line naming the file or module that is wrong
//! (as in `hostile_cli`).

#[allow(dead_code)]
#[path = "hostile_cli/fixtures.rs"]
mod fixtures;
#[allow(dead_code)]
#[path = "hostile_cli/runner.rs"]
mod runner;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fixtures::{case_dir, dataset, grpo_config, model_with_tokenizer, scratch};
use fixtures::{fails, succeeds};
use mlx_lm::loader::{
    AdapterFormat, LoraFactors, attach_lora, attached_adapters, block_count, load_model,
    save_adapters,
};
use mlx_nn::layers::{LayerSelection, LoraConfig, TargetModules};
use runner::os;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("scratch paths are UTF-8")
}

/// Adapters of rank 2 on `q_proj` and `v_proj` of the tiny model, written
/// in PEFT's layout to the case directory `name`; `edit` changes them
/// before they are written.
fn adapter_dir(name: &str, edit: impl FnOnce(&mut mlx_lm::loader::Adapters)) -> PathBuf {
    let mut model = load_model(model_with_tokenizer(), None).expect("the tiny model");
    attach_lora(
        &mut model,
        LoraConfig::new(2, 4.0),
        TargetModules::Names(vec!["q_proj".into(), "v_proj".into()]),
        LayerSelection::All,
        5,
    )
    .expect("attaching adapters");
    let mut adapters = attached_adapters(&model)
        .expect("reading the adapters")
        .expect("adapters attached");
    edit(&mut adapters);
    let dir = case_dir(name);
    save_adapters(&adapters, &dir, AdapterFormat::Peft, block_count(&model))
        .expect("saving adapters");
    dir
}

fn valid_adapter() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| adapter_dir("valid-adapter", |_| {}))
}

fn generate(adapter: &Path) -> Vec<OsString> {
    let m = path_str(model_with_tokenizer());
    let mut args = os(&["--model", m, "--prompt-tokens", "1,2", "--max-tokens", "2"]);
    args.extend(os(&["--adapter", path_str(adapter)]));
    args
}

fn score(adapter: &Path) -> Vec<OsString> {
    let m = path_str(model_with_tokenizer());
    os(&[
        "--model",
        m,
        "--tokens",
        "1,2,255",
        "--adapter",
        path_str(adapter),
    ])
}

fn grpo(case: &str, changes: &[(&str, &str)], extra: &[&str]) -> Vec<OsString> {
    let config = grpo_config(case, changes);
    let mut args = os(&["--model", path_str(model_with_tokenizer())]);
    args.extend(os(&["--dataset", path_str(dataset())]));
    args.extend(os(&["--config", path_str(&config)]));
    args.extend(os(extra));
    args
}

// ---- Controls. ----

#[test]
fn control_generate_and_score_with_an_adapter() {
    succeeds("generate", generate(valid_adapter()));
    succeeds("score", score(valid_adapter()));
}

#[test]
fn control_grpo_on_adapters_checkpoints_them_and_continues_from_them() {
    let args = grpo(
        "grpo-peft",
        &[
            ("use_peft", "true"),
            ("lora_r", "2"),
            ("gradient_checkpointing", "false"),
        ],
        &[],
    );
    succeeds("grpo", args);
    let checkpoint = case_dir("grpo-peft").join("run/checkpoint-1");
    assert!(checkpoint.join("adapter_model.safetensors").is_file());
    assert!(checkpoint.join("adapter_config.json").is_file());
    assert!(!checkpoint.join("model").exists());

    // The checkpoint is an adapter directory for every example.
    succeeds("generate", generate(&checkpoint));
    succeeds("score", score(&checkpoint));
    let merged = case_dir("grpo-continue").join("merged");
    let out = succeeds(
        "grpo",
        grpo(
            "grpo-continue",
            &[],
            &[
                "--adapter",
                path_str(&checkpoint),
                "--merged-output",
                path_str(&merged),
            ],
        ),
    );
    assert!(out.stdout.contains("merged model"), "{}", out.stdout);
    assert!(merged.join("config.json").is_file());
    assert!(merged.join("model.safetensors").is_file());
    let continued = case_dir("grpo-continue").join("run/checkpoint-1");
    assert!(continued.join("adapter_model.safetensors").is_file());
}

/// The tiny model quantized (4 bits, groups of 32) with the toy tokenizer.
fn quantized_model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dense = load_model(model_with_tokenizer(), None).expect("the tiny model");
        let dir = case_dir("quantized-model");
        let options = mlx_lm::loader::SaveOptions {
            source_dir: Some(model_with_tokenizer().to_path_buf()),
            ..Default::default()
        };
        let spec = mlx_lm::loader::QuantizationSpec {
            group_size: 32,
            bits: 4,
        };
        mlx_lm::loader::save_quantized_model(&dense, &dir, spec, &options)
            .expect("quantizing the tiny model");
        dir
    })
}

#[test]
fn control_qlora_run_writes_a_merged_model_requantized_or_dequantized() {
    let config = |case: &str| {
        grpo_config(
            case,
            &[
                ("use_peft", "true"),
                ("lora_r", "2"),
                ("gradient_checkpointing", "false"),
            ],
        )
    };
    for (format, quantized) in [("requantized", true), ("dequantized", false)] {
        let case = format!("qlora-merged-{format}");
        let merged = case_dir(&case).join("merged");
        let cfg = config(&case);
        let args = os(&[
            "--model",
            path_str(quantized_model()),
            "--dataset",
            path_str(dataset()),
            "--config",
            path_str(&cfg),
            "--merged-output",
            path_str(&merged),
            "--merged-format",
            format,
        ]);
        succeeds("grpo", args);
        let text = fs::read_to_string(merged.join("config.json")).expect("the merged config");
        let written: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            written.get("quantization").is_some(),
            quantized,
            "{format}: {text}"
        );
        // Both load, and generate.
        load_model(&merged, None).expect("the merged model loads");
        let m = path_str(&merged);
        succeeds(
            "generate",
            os(&["--model", m, "--prompt-tokens", "1,2", "--max-tokens", "2"]),
        );
    }
    let cfg = config("qlora-merged-bad-format");
    fails(
        "grpo",
        os(&[
            "--model",
            path_str(quantized_model()),
            "--dataset",
            path_str(dataset()),
            "--config",
            path_str(&cfg),
            "--merged-output",
            path_str(&scratch().join("never")),
            "--merged-format",
            "zipped",
        ]),
        &["merged-format"],
    );
}

// ---- Broken adapter directories. ----

#[test]
fn adapter_dir_missing() {
    let missing = scratch().join("no-such-adapter");
    fails("generate", generate(&missing), &["adapter_config.json"]);
    fails("score", score(&missing), &["adapter_config.json"]);
    fails(
        "grpo",
        grpo(
            "grpo-missing-adapter",
            &[],
            &["--adapter", path_str(&missing)],
        ),
        &["adapter_config.json"],
    );
}

#[test]
fn adapter_weights_missing() {
    let dir = adapter_dir("adapter-no-weights", |_| {});
    fs::remove_file(dir.join("adapter_model.safetensors")).unwrap();
    fails("generate", generate(&dir), &["adapter_model.safetensors"]);
}

#[test]
fn adapter_config_not_json() {
    let dir = adapter_dir("adapter-config-garbage", |_| {});
    fs::write(dir.join("adapter_config.json"), "{ not json").unwrap();
    fails("score", score(&dir), &["adapter_config.json"]);
}

#[test]
fn adapter_rank_disagrees_with_the_weights() {
    let dir = adapter_dir("adapter-rank", |_| {});
    let path = dir.join("adapter_config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    config["r"] = serde_json::json!(8);
    fs::write(&path, config.to_string()).unwrap();
    fails("generate", generate(&dir), &["lora_A.weight"]);
    fails(
        "grpo",
        grpo("grpo-adapter-rank", &[], &["--adapter", path_str(&dir)]),
        &["lora_A.weight"],
    );
}

#[test]
fn adapter_of_a_module_the_model_lacks() {
    let dir = adapter_dir("adapter-extra-module", |a| {
        let first = a.modules.values().next().cloned().expect("a module");
        a.modules.insert(
            "model.layers.99.self_attn.q_proj".into(),
            LoraFactors {
                a: first.a,
                b: first.b,
            },
        );
        a.target_modules = TargetModules::Names(a.modules.keys().cloned().collect());
    });
    fails("score", score(&dir), &["model.layers.99.self_attn.q_proj"]);
}

#[test]
fn adapter_factor_of_the_wrong_shape() {
    let dir = adapter_dir("adapter-shape", |a| {
        let f = a.modules.values_mut().next().expect("a module");
        // B of another output size: [out + 1, r].
        let shape = f.b.shape().0;
        f.b = mlx_tensor::Array::zeros(&[shape[0] + 1, shape[1]], f.b.dtype()).unwrap();
    });
    fails("generate", generate(&dir), &["lora_B"]);
}

#[test]
fn adapter_weights_garbage() {
    let dir = adapter_dir("adapter-weights-garbage", |_| {});
    fs::write(
        dir.join("adapter_model.safetensors"),
        b"\x08\0\0\0\0\0\0\0{}garbage",
    )
    .unwrap();
    fails("generate", generate(&dir), &["adapter_model.safetensors"]);
}
