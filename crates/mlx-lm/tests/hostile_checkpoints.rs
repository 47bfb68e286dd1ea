//! Hostile checkpoint directories: weights of the wrong shape or dtype,
//! missing and unknown tensors, shard indexes that name absent files,
//! tensors in the wrong shard or paths outside the directory, and weight
//! files whose bytes lie. Each is a typed error naming the file and the
//! tensor (or the index field), never a crash or a silently wrong model.

mod lm_support;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use lm_support::{copy_fixture, temp_dir};
use mlx_lm::Error;
use mlx_lm::loader::{CheckpointProblem, load_model};
use mlx_tensor::{Array, Dtype, io};
use serde_json::Value;
use tempfile::TempDir;

const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";
const SHARD_1: &str = "model-00001-of-00003.safetensors";
const SHARD_2: &str = "model-00002-of-00003.safetensors";

/// A copy of the single-file fixture, removed when dropped.
fn single_file_checkpoint(tag: &str) -> TempDir {
    let dir = temp_dir(&format!("hostile-{tag}"));
    copy_fixture("qwen3_tied", dir.path());
    dir
}

/// A copy of the three-shard fixture, removed when dropped.
fn sharded_checkpoint(tag: &str) -> TempDir {
    let dir = temp_dir(&format!("hostile-{tag}"));
    copy_fixture("qwen3_untied", dir.path());
    dir
}

/// Rewrites the weight file `name` of `dir` after `edit` changed its tensors.
fn rewrite(dir: &Path, name: &str, edit: impl FnOnce(&mut HashMap<String, Array>)) {
    let path = dir.join(name);
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

/// Rewrites the shard index's `weight_map` after `edit`.
fn edit_index(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join(INDEX);
    let mut index: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(index["weight_map"].as_object_mut().unwrap());
    fs::write(&path, serde_json::to_string_pretty(&index).unwrap()).unwrap();
}

/// The one problem loading `dir` reports; the shown error names `dir`.
#[track_caller]
fn only_problem(dir: &Path) -> CheckpointProblem {
    let mut found = problems(dir);
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

/// Every problem loading `dir` reports.
#[track_caller]
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

/// Asserts a `BadFile` problem for `file` whose message holds `words`.
#[track_caller]
fn assert_bad_file(problem: &CheckpointProblem, file: &Path, words: &[&str]) {
    let CheckpointProblem::BadFile { file: f, message } = problem else {
        panic!("expected BadFile, got {problem:?}")
    };
    assert_eq!(f, file);
    for w in words {
        assert!(message.contains(w), "`{message}` lacks `{w}`");
    }
    assert!(problem.to_string().contains(&file.display().to_string()));
}

/// Asserts that loading `dir` fails on the index field `weight_map.<key>`.
#[track_caller]
fn assert_index_field_refused(dir: &Path, key: &str, words: &[&str]) {
    match load_model(dir, None) {
        Err(Error::InvalidConfig {
            path,
            field,
            message,
        }) => {
            assert_eq!(path, dir.join(INDEX));
            assert_eq!(field, format!("weight_map.{key}"));
            for w in words {
                assert!(message.contains(w), "`{message}` lacks `{w}`");
            }
        }
        Err(other) => panic!("expected InvalidConfig, got {other}"),
        Ok(_) => panic!("a hostile index loaded"),
    }
}

// Tensors that do not fit the model.

#[test]
fn a_tensor_of_the_wrong_shape_is_named_with_its_file() {
    let tmp = single_file_checkpoint("shape");
    let dir = tmp.path();
    rewrite(dir, SINGLE, |t| {
        t.insert(
            "model.layers.0.self_attn.q_norm.weight".into(),
            Array::ones(&[17], Dtype::F32).unwrap(),
        );
    });
    let problem = only_problem(dir);
    assert_eq!(
        problem,
        CheckpointProblem::WrongShape {
            file: dir.join(SINGLE),
            key: "model.layers.0.self_attn.q_norm.weight".into(),
            // head_dim of the fixture's config.json
            expected: vec![16],
            found: vec![17],
        }
    );
}

#[test]
fn a_transposed_matrix_is_a_wrong_shape() {
    let tmp = single_file_checkpoint("transposed");
    let dir = tmp.path();
    let key = "model.layers.1.mlp.down_proj.weight";
    let original = io::load_safetensors(dir.join(SINGLE)).unwrap().tensors[key]
        .shape()
        .0;
    rewrite(dir, SINGLE, |t| {
        let flipped = t[key].transpose(&[1, 0]).unwrap();
        t.insert(key.into(), flipped);
    });
    let CheckpointProblem::WrongShape {
        file,
        key: k,
        expected,
        found,
    } = only_problem(dir)
    else {
        panic!("expected WrongShape")
    };
    assert_eq!((file, k.as_str()), (dir.join(SINGLE), key));
    let original: Vec<i64> = original.iter().map(|&d| i64::from(d)).collect();
    assert_eq!(expected, original);
    assert_eq!(found, [original[1], original[0]]);
}

#[test]
fn an_integer_tensor_is_a_wrong_dtype() {
    let tmp = single_file_checkpoint("dtype-i32");
    let dir = tmp.path();
    rewrite(dir, SINGLE, |t| {
        t.insert(
            "model.norm.weight".into(),
            Array::ones(&[64], Dtype::I32).unwrap(),
        );
    });
    assert_eq!(
        only_problem(dir),
        CheckpointProblem::WrongDtype {
            file: dir.join(SINGLE),
            key: "model.norm.weight".into(),
            found: "I32".into(),
        }
    );
}

#[test]
fn a_boolean_tensor_is_a_wrong_dtype() {
    let tmp = single_file_checkpoint("dtype-bool");
    let dir = tmp.path();
    rewrite(dir, SINGLE, |t| {
        t.insert(
            "model.layers.1.post_attention_layernorm.weight".into(),
            Array::ones(&[64], Dtype::Bool).unwrap(),
        );
    });
    let problem = only_problem(dir);
    assert_eq!(
        problem,
        CheckpointProblem::WrongDtype {
            file: dir.join(SINGLE),
            key: "model.layers.1.post_attention_layernorm.weight".into(),
            found: "BOOL".into(),
        }
    );
    assert!(problem.to_string().contains("BOOL"));
}

#[test]
fn a_missing_tensor_is_named_with_its_shape() {
    let tmp = single_file_checkpoint("missing");
    let dir = tmp.path();
    rewrite(dir, SINGLE, |t| {
        t.remove("model.layers.0.input_layernorm.weight");
    });
    assert_eq!(
        only_problem(dir),
        CheckpointProblem::MissingTensor {
            key: "model.layers.0.input_layernorm.weight".into(),
            expected: vec![64],
        }
    );
}

#[test]
fn an_unknown_tensor_is_named_with_its_file() {
    let tmp = single_file_checkpoint("unknown");
    let dir = tmp.path();
    rewrite(dir, SINGLE, |t| {
        t.insert(
            "model.layers.7.self_attn.q_proj.weight".into(),
            Array::ones(&[4, 4], Dtype::F32).unwrap(),
        );
    });
    assert_eq!(
        only_problem(dir),
        CheckpointProblem::UnexpectedTensor {
            file: dir.join(SINGLE),
            key: "model.layers.7.self_attn.q_proj.weight".into(),
        }
    );
}

#[test]
fn a_tensor_in_two_shards_is_named_with_both_files() {
    let tmp = sharded_checkpoint("duplicate");
    let dir = tmp.path();
    let key = "model.embed_tokens.weight";
    let copy = io::load_safetensors(dir.join(SHARD_1)).unwrap().tensors[key].clone();
    rewrite(dir, SHARD_2, |t| {
        t.insert(key.into(), copy);
    });
    let found = problems(dir);
    assert!(
        found.contains(&CheckpointProblem::DuplicateTensor {
            key: key.into(),
            first: dir.join(SHARD_1),
            second: dir.join(SHARD_2),
        }),
        "{found:?}"
    );
}

// Weight files that are not what they claim.

#[test]
fn a_weight_file_with_overlapping_tensors_is_named() {
    let tmp = single_file_checkpoint("overlap");
    let dir = tmp.path();
    let path = dir.join(SINGLE);
    let bytes = fs::read(&path).unwrap();
    let (infos, _) = io::read_safetensors_header(&path).unwrap();
    // Point the second tensor (by offset) at the first one's bytes.
    let mut by_offset: Vec<(&String, _)> = infos.iter().collect();
    by_offset.sort_by_key(|(_, i)| i.data_offsets.0);
    let (first, second) = (by_offset[0], by_offset[1]);
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let size = second.1.data_offsets.1 - second.1.data_offsets.0;
    let start = first.1.data_offsets.0;
    assert!(
        size <= first.1.data_offsets.1 - start,
        "fixture layout changed"
    );
    header[second.0.as_str()]["data_offsets"] = serde_json::json!([start, start + size]);
    let mut text = serde_json::to_vec(&header).unwrap();
    text.resize(header_len.max(text.len()), b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + header_len..]);
    fs::write(&path, out).unwrap();
    assert_bad_file(
        &only_problem(dir),
        &path,
        &[
            "overlaps",
            &format!("`{}`", first.0),
            &format!("`{}`", second.0),
        ],
    );
}

#[test]
fn an_empty_weight_file_is_named() {
    let tmp = single_file_checkpoint("empty-file");
    let dir = tmp.path();
    let path = dir.join(SINGLE);
    fs::write(&path, []).unwrap();
    assert_bad_file(&only_problem(dir), &path, &["0 bytes"]);
}

#[test]
fn a_directory_in_place_of_the_weight_file_is_named() {
    let tmp = single_file_checkpoint("dir-file");
    let dir = tmp.path();
    let path = dir.join(SINGLE);
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    assert_bad_file(&only_problem(dir), &path, &["not a regular file"]);
}

// Shard indexes that lie.

#[test]
fn an_index_naming_an_absent_file_is_named() {
    let tmp = sharded_checkpoint("absent-shard");
    let dir = tmp.path();
    edit_index(dir, |map| {
        map.insert(
            "model.norm.weight".into(),
            "model-00009-of-00009.safetensors".into(),
        );
    });
    let found = problems(dir);
    let absent = dir.join("model-00009-of-00009.safetensors");
    assert!(
        found.contains(&CheckpointProblem::BadFile {
            file: absent,
            message: "named by the shard index but not present".into(),
        }),
        "{found:?}"
    );
}

#[test]
fn an_index_naming_the_wrong_shard_for_a_tensor_is_named() {
    let tmp = sharded_checkpoint("wrong-shard");
    let dir = tmp.path();
    let key = "model.embed_tokens.weight"; // lives in shard 1
    edit_index(dir, |map| {
        map.insert(key.into(), SHARD_2.into());
    });
    let found = problems(dir);
    let hit = found.iter().find(|p| {
        matches!(p, CheckpointProblem::IndexMismatch { key: k, message }
            if k == key && message.contains(SHARD_2) && message.contains(SHARD_1))
    });
    assert!(hit.is_some(), "{found:?}");
}

#[test]
fn an_index_naming_a_tensor_no_shard_holds_is_named() {
    let tmp = sharded_checkpoint("phantom");
    let dir = tmp.path();
    edit_index(dir, |map| {
        map.insert("model.layers.9.mlp.up_proj.weight".into(), SHARD_2.into());
    });
    let found = problems(dir);
    let hit = found.iter().find(|p| {
        matches!(p, CheckpointProblem::IndexMismatch { key, message }
            if key == "model.layers.9.mlp.up_proj.weight" && message.contains("no such tensor"))
    });
    assert!(hit.is_some(), "{found:?}");
}

#[test]
fn an_index_path_with_dot_dot_is_refused() {
    let tmp = sharded_checkpoint("dotdot");
    let dir = tmp.path();
    // A real safetensors file just outside the checkpoint: it must not be read.
    let outside = dir
        .parent()
        .unwrap()
        .join(format!("outside-{}.safetensors", std::process::id()));
    fs::copy(dir.join(SHARD_1), &outside).unwrap();
    let name = format!("../{}", outside.file_name().unwrap().to_string_lossy());
    edit_index(dir, |map| {
        map.insert("model.embed_tokens.weight".into(), name.clone().into());
    });
    assert_index_field_refused(dir, "model.embed_tokens.weight", &[&name, "inside"]);
    fs::remove_file(&outside).ok();
}

#[test]
fn an_absolute_index_path_is_refused() {
    let tmp = sharded_checkpoint("absolute");
    let dir = tmp.path();
    let absolute = dir.join(SHARD_1).display().to_string();
    edit_index(dir, |map| {
        map.insert("model.embed_tokens.weight".into(), absolute.clone().into());
    });
    assert_index_field_refused(dir, "model.embed_tokens.weight", &[&absolute]);
}

#[test]
fn an_index_path_into_a_subdirectory_is_refused() {
    let tmp = sharded_checkpoint("subdir");
    let dir = tmp.path();
    edit_index(dir, |map| {
        map.insert(
            "model.norm.weight".into(),
            format!("shards/{SHARD_2}").into(),
        );
    });
    assert_index_field_refused(dir, "model.norm.weight", &["shards/"]);
}

#[test]
fn an_empty_index_file_name_is_refused() {
    let tmp = sharded_checkpoint("empty-name");
    let dir = tmp.path();
    edit_index(dir, |map| {
        map.insert("model.norm.weight".into(), "".into());
    });
    assert_index_field_refused(dir, "model.norm.weight", &["not a file name"]);
}

#[test]
fn an_index_file_name_that_is_not_a_string_is_refused() {
    let tmp = sharded_checkpoint("number-name");
    let dir = tmp.path();
    edit_index(dir, |map| {
        map.insert("model.norm.weight".into(), 3.into());
    });
    assert_index_field_refused(dir, "model.norm.weight", &["not a file name"]);
}

#[test]
fn an_index_that_is_not_json_names_the_file() {
    let tmp = sharded_checkpoint("index-json");
    let dir = tmp.path();
    fs::write(dir.join(INDEX), "{\"weight_map\": {\"a\": ").unwrap();
    match load_model(dir, None) {
        Err(e @ Error::Json { .. }) => {
            let Error::Json { path, .. } = &e else {
                unreachable!()
            };
            assert_eq!(path, &dir.join(INDEX));
        }
        Err(other) => panic!("expected Json, got {other}"),
        Ok(_) => panic!("a broken index loaded"),
    }
}

#[test]
fn an_index_without_a_weight_map_object_is_refused() {
    let tmp = sharded_checkpoint("no-map");
    let dir = tmp.path();
    fs::write(dir.join(INDEX), r#"{"weight_map": ["a"]}"#).unwrap();
    match load_model(dir, None) {
        Err(Error::InvalidConfig { path, field, .. }) => {
            assert_eq!((path, field.as_str()), (dir.join(INDEX), "weight_map"));
        }
        Err(other) => panic!("expected InvalidConfig, got {other}"),
        Ok(_) => panic!("an index without a map loaded"),
    }
}
