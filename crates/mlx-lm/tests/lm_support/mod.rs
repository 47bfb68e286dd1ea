//! Shared helpers of the model, checkpoint and scoring tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mlx_lm::{LanguageModel, Model, load_model};
use mlx_tensor::{Array, Dtype, io};

/// The fixtures `scripts/fixtures/gen_lm_fixtures.py` writes.
pub const FIXTURES: [&str; 4] = ["qwen3_tied", "qwen3_untied", "qwen3_moe", "qwen3_moe_tie"];

pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lm")
        .join(name)
}

pub fn fixture_inputs(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir(name).join("inputs.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture's token ids (one row).
pub fn fixture_tokens(name: &str) -> Vec<u32> {
    fixture_inputs(name)["tokens"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

pub fn load(name: &str, dtype: Dtype) -> Model {
    load_model(fixture_dir(name), Some(dtype)).unwrap()
}

pub fn reference_logits(name: &str, which: &str) -> Vec<f32> {
    io::load_npy(fixture_dir(name).join(format!("logits_{which}.npy")))
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
}

/// `[1, n]` u32 ids.
pub fn row(tokens: &[u32]) -> Array {
    Array::from_slice(tokens, &[1, tokens.len() as i32]).unwrap()
}

pub fn logits_of(model: &impl LanguageModel, tokens: &[u32]) -> Vec<f32> {
    model
        .forward(&row(tokens), None)
        .unwrap()
        .as_type(Dtype::F32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
}

pub fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

pub fn argmax_rows(values: &[f32], width: usize) -> Vec<usize> {
    values
        .chunks(width)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
                )
                .0
        })
        .collect()
}

/// A fresh temporary directory for one test, removed when the returned
/// guard is dropped.
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("mlx-lm-{tag}-"))
        .tempdir()
        .unwrap()
}

/// Copies a fixture directory (for tests that damage it).
pub fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(fixture_dir(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
