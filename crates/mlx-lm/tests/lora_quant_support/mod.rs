//! The fixtures of the adapter and quantization tests
//! (`tests/fixtures/lora_quant`, written by
//! `scripts/fixtures/gen_lora_quant_fixtures.py` with mlx-lm 0.32.2).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mlx_tensor::io;

/// A fixture directory (or file) under `tests/fixtures/lora_quant`.
pub fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lora_quant")
        .join(name)
}

/// The token ids every case scores.
pub fn tokens() -> Vec<u32> {
    let text = std::fs::read_to_string(dir("inputs.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["tokens"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

/// mlx-lm's logits of case `name`.
pub fn reference(name: &str) -> Vec<f32> {
    io::load_npy(dir(name).join("logits.npy"))
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
}
