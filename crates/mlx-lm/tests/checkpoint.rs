//! Loading and saving checkpoint directories: round trips, sharding, the
//! layout transformers reads, and typed errors for damaged checkpoints.

mod lm_support;

use std::collections::HashMap;
use std::path::Path;

use lm_support::*;
use mlx_lm::loader::{
    CheckpointProblem, SaveOptions, load_config, load_model, save_model, tiny_qwen3_config,
    write_random_checkpoint,
};
use mlx_lm::{Error, LanguageModel, Model};
use mlx_nn::ModuleExt;
use mlx_tensor::{Array, Dtype, io};

/// The config a save writes: the rotary base is also given flat.
fn saved_config(model: &Model) -> mlx_lm::ModelConfig {
    let mut config = model.config();
    let theta = config.base().resolved_rope_theta();
    config.base_mut().rope_theta = Some(theta);
    config
}

fn assert_same_parameters(a: &Model, b: &Model) {
    let (pa, pb) = (a.parameters(), b.parameters());
    assert_eq!(pa.keys().collect::<Vec<_>>(), pb.keys().collect::<Vec<_>>());
    for (name, x) in &pa {
        let y = &pb[name];
        assert_eq!(x.dtype(), y.dtype(), "{name}");
        assert_eq!(
            x.to_bytes().unwrap(),
            y.to_bytes().unwrap(),
            "{name} differs"
        );
    }
}

#[test]
fn save_then_load_is_bit_exact() {
    for name in FIXTURES {
        let model = load(name, Dtype::F32);
        let tmp = temp_dir(&format!("roundtrip-{name}"));
        let dir = tmp.path();
        save_model(
            &model,
            dir,
            &SaveOptions {
                source_dir: Some(fixture_dir(name)),
                ..SaveOptions::default()
            },
        )
        .unwrap();
        assert!(dir.join("model.safetensors").exists());
        assert!(
            dir.join("generation_config.json").exists(),
            "companion files are copied"
        );
        let back = load_model(dir, None).unwrap();
        assert_eq!(back.dtype(), Dtype::F32);
        assert_eq!(back.config(), saved_config(&model));
        assert_same_parameters(&model, &back);
    }
}

#[test]
fn sharded_saves_write_an_index_and_load_back() {
    let model = load("qwen3_moe", Dtype::F32);
    let tmp = temp_dir("sharded");
    let dir = tmp.path();
    save_model(
        &model,
        dir,
        &SaveOptions {
            max_shard_bytes: 200_000,
            ..SaveOptions::default()
        },
    )
    .unwrap();
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let weight_map = index["weight_map"].as_object().unwrap();
    assert!(
        weight_map.contains_key("model.layers.1.mlp.experts.7.down_proj.weight"),
        "experts are unstacked"
    );
    assert!(!weight_map.keys().any(|k| k.contains("switch_mlp")));
    let total: u64 = model
        .checkpoint_tensors()
        .unwrap()
        .values()
        .map(|a| a.nbytes() as u64)
        .sum();
    assert_eq!(index["metadata"]["total_size"].as_u64().unwrap(), total);
    let shards: std::collections::BTreeSet<&str> =
        weight_map.values().map(|v| v.as_str().unwrap()).collect();
    assert!(shards.len() > 1);
    assert!(
        shards
            .iter()
            .all(|s| s.starts_with("model-") && s.contains("-of-"))
    );
    assert!(!dir.join("model.safetensors").exists());
    assert_same_parameters(&model, &load_model(dir, None).unwrap());
    // Saving again as one file removes the old shards and index.
    save_model(&model, dir, &SaveOptions::default()).unwrap();
    assert!(!dir.join("model.safetensors.index.json").exists());
    assert_same_parameters(&model, &load_model(dir, None).unwrap());
}

#[test]
fn loads_the_sharded_transformers_fixture_and_casts_at_load() {
    let f32 = load("qwen3_untied", Dtype::F32);
    let bf16 = load("qwen3_untied", Dtype::BF16);
    assert_eq!(bf16.dtype(), Dtype::BF16);
    for (name, p) in bf16.parameters() {
        assert_eq!(p.dtype(), Dtype::BF16, "{name}");
    }
    // Without a dtype, the config's `dtype` (float32 here) is used.
    assert_eq!(
        load_model(fixture_dir("qwen3_untied"), None)
            .unwrap()
            .dtype(),
        Dtype::F32
    );
    assert!(f32.parameters().contains_key("lm_head.weight"));
    assert!(
        !load("qwen3_tied", Dtype::F32)
            .parameters()
            .contains_key("lm_head.weight")
    );
}

/// Saves every fixture, loaded with our loader, with our saver under
/// `$TMPDIR/mlx-lm-saved/<name>` (the first sharded), for
/// `scripts/fixtures/gen_lm_fixtures.py --check-saved` to load with transformers.
#[test]
fn saved_checkpoints_for_transformers() {
    let root = std::env::temp_dir().join("mlx-lm-saved");
    for (i, name) in FIXTURES.iter().enumerate() {
        let model = load(name, Dtype::F32);
        let dir = root.join(name);
        let max_shard_bytes = if i == 0 {
            150_000
        } else {
            SaveOptions::default().max_shard_bytes
        };
        save_model(
            &model,
            &dir,
            &SaveOptions {
                max_shard_bytes,
                source_dir: Some(fixture_dir(name)),
                dtype: None,
            },
        )
        .unwrap();
        let config = load_config(&dir).unwrap();
        assert_eq!(config, saved_config(&model));
    }
}

#[test]
fn random_checkpoints_load_back() {
    let tmp = temp_dir("random");
    let dir = tmp.path();
    let written = write_random_checkpoint(dir, &tiny_qwen3_config(), 3, Dtype::BF16).unwrap();
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(text.contains("\"dtype\": \"bfloat16\""), "{text}");
    let back = load_model(dir, None).unwrap();
    assert_eq!(back.dtype(), Dtype::BF16);
    assert_same_parameters(&written, &back);
}

// --- damaged checkpoints ------------------------------------------------------

/// Rewrites `model.safetensors` of `dir` after `edit` changed its tensors.
fn rewrite(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Array>)) {
    let path = dir.join("model.safetensors");
    let mut tensors = io::load_safetensors(&path).unwrap().tensors;
    for t in tensors.values() {
        t.eval().unwrap();
    }
    edit(&mut tensors);
    io::save_safetensors(
        &path,
        tensors.iter().map(|(k, v)| (k.as_str(), v)),
        &HashMap::new(),
    )
    .unwrap();
}

fn problems(dir: &Path) -> Vec<CheckpointProblem> {
    match load_model(dir, None) {
        Err(Error::InvalidCheckpoint { dir: d, problems }) => {
            assert_eq!(d, dir);
            problems
        }
        Err(other) => panic!("expected InvalidCheckpoint, got {other}"),
        Ok(_) => panic!("a damaged checkpoint loaded"),
    }
}

#[test]
fn all_problems_are_reported_together_naming_file_and_key() {
    let tmp = temp_dir("two-problems");
    let dir = tmp.path();
    copy_fixture("qwen3_tied", dir);
    rewrite(dir, |t| {
        t.remove("model.layers.1.self_attn.k_norm.weight");
        t.insert(
            "model.norm.weight".into(),
            Array::ones(&[32], Dtype::F32).unwrap(),
        );
        t.insert(
            "model.layers.0.mlp.gate_proj.bias".into(),
            Array::ones(&[128], Dtype::F32).unwrap(),
        );
        t.insert(
            "model.layers.0.input_layernorm.weight".into(),
            Array::ones(&[64], Dtype::I32).unwrap(),
        );
    });
    let found = problems(dir);
    let file = dir.join("model.safetensors");
    assert!(found.contains(&CheckpointProblem::MissingTensor {
        key: "model.layers.1.self_attn.k_norm.weight".into(),
        expected: vec![16]
    }));
    assert!(found.contains(&CheckpointProblem::WrongShape {
        file: file.clone(),
        key: "model.norm.weight".into(),
        expected: vec![64],
        found: vec![32]
    }));
    assert!(found.contains(&CheckpointProblem::UnexpectedTensor {
        file: file.clone(),
        key: "model.layers.0.mlp.gate_proj.bias".into()
    }));
    assert!(found.contains(&CheckpointProblem::WrongDtype {
        file: file.clone(),
        key: "model.layers.0.input_layernorm.weight".into(),
        found: "I32".into()
    }));
    assert_eq!(found.len(), 4, "{found:?}");
    let message = load_model(dir, None).err().unwrap().to_string();
    assert!(
        message.contains("4 problem(s)") && message.contains("model.safetensors"),
        "{message}"
    );
}

#[test]
fn truncated_and_garbage_files_are_named() {
    let tmp = temp_dir("truncated");
    let dir = tmp.path();
    copy_fixture("qwen3_tied", dir);
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let found = problems(dir);
    assert_eq!(found.len(), 1, "{found:?}");
    let CheckpointProblem::BadFile { file, message } = &found[0] else {
        panic!("{found:?}")
    };
    assert_eq!(file, &path);
    assert!(message.contains("truncated"), "{message}");

    let mut garbage = 12345u64.to_le_bytes().to_vec();
    garbage.extend(std::iter::repeat_n(b'x', 20000));
    std::fs::write(&path, garbage).unwrap();
    let found = problems(dir);
    let CheckpointProblem::BadFile { message, .. } = &found[0] else {
        panic!("{found:?}")
    };
    assert!(message.contains("garbage"), "{message}");
}

#[test]
fn a_missing_shard_is_named() {
    let tmp = temp_dir("missing-shard");
    let dir = tmp.path();
    copy_fixture("qwen3_untied", dir);
    let shard = dir.join("model-00002-of-00003.safetensors");
    std::fs::remove_file(&shard).unwrap();
    let found = problems(dir);
    assert_eq!(
        found,
        vec![CheckpointProblem::BadFile {
            file: shard,
            message: "named by the shard index but not present".into()
        }]
    );
}

#[test]
fn config_and_weights_that_disagree_are_reported() {
    let tmp = temp_dir("mismatch");
    let dir = tmp.path();
    copy_fixture("qwen3_tied", dir);
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["num_hidden_layers"] = 3.into();
    config["vocab_size"] = 1200.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let found = problems(dir);
    assert!(found.iter().any(|p| matches!(p, CheckpointProblem::MissingTensor { key, .. } if key == "model.layers.2.self_attn.q_proj.weight")));
    assert!(found.iter().any(|p| matches!(p, CheckpointProblem::WrongShape { key, expected, found, .. }
        if key == "model.embed_tokens.weight" && expected == &vec![1200, 64] && found == &vec![1000, 64])));
}

#[test]
fn a_missing_expert_is_named() {
    let tmp = temp_dir("missing-expert");
    let dir = tmp.path();
    copy_fixture("qwen3_moe", dir);
    rewrite(dir, |t| {
        t.remove("model.layers.1.mlp.experts.5.up_proj.weight");
    });
    let found = problems(dir);
    assert!(
        found.contains(&CheckpointProblem::MissingTensor {
            key: "model.layers.1.mlp.experts.5.up_proj.weight".into(),
            expected: vec![32, 64]
        }),
        "{found:?}"
    );
}

#[test]
fn config_problems_name_the_field() {
    let tmp = temp_dir("bad-config");
    let dir = tmp.path();
    copy_fixture("qwen3_tied", dir);
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["rope_parameters"] =
        serde_json::json!({"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    match load_model(dir, None) {
        Err(Error::InvalidConfig {
            path,
            field,
            message,
        }) => {
            assert_eq!(path, dir.join("config.json"));
            assert_eq!(field, "rope_parameters.rope_type");
            assert!(message.contains("yarn"), "{message}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    config["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 1e4});
    config["model_type"] = "llama".into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let err = load_model(dir, None).err().unwrap().to_string();
    assert!(
        err.contains("llama") && err.contains("config.json"),
        "{err}"
    );
    config["model_type"] = "qwen3".into();
    config["use_sliding_window"] = true.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let err = load_model(dir, None).err().unwrap().to_string();
    assert!(err.contains("use_sliding_window"), "{err}");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(matches!(
        load_model(dir, None),
        Err(Error::MissingFile { .. })
    ));
}
