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

/// The tensors of every safetensors file in `dir`, by name.
pub fn read_tensors(dir: &Path) -> std::collections::BTreeMap<String, mlx_tensor::Array> {
    let mut all = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            all.extend(io::load_safetensors(&path).unwrap().tensors);
        }
    }
    all
}

/// Every tensor of the safetensors files of `theirs` (a directory) is in
/// `ours` with the same dtype, shape and bits, and `ours` has no others;
/// tensors whose name `skip` accepts are only checked to be present.
pub fn assert_same_tensors(ours: &Path, theirs: &Path, skip: impl Fn(&str) -> bool) {
    let (ours, theirs) = (read_tensors(ours), read_tensors(theirs));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "tensor names"
    );
    for (k, want) in theirs.iter().filter(|(k, _)| !skip(k)) {
        let got = &ours[k];
        assert_eq!(got.dtype(), want.dtype(), "{k} dtype");
        assert_eq!(got.shape(), want.shape(), "{k} shape");
        let same = got
            .array_equal(want, false)
            .unwrap()
            .to_vec::<bool>()
            .unwrap()[0];
        assert!(same, "{k} differs from the reference");
    }
}

/// As [`assert_same_tensors`] (no tensor skipped), but float tensors may
/// differ by `rel` times their largest magnitude; integer (packed) tensors
/// must be bit-identical.
pub fn assert_close_tensors(ours: &Path, theirs: &Path, rel: f32) {
    let (ours, theirs) = (read_tensors(ours), read_tensors(theirs));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "tensor names"
    );
    for (k, want) in &theirs {
        let got = &ours[k];
        assert_eq!(got.dtype(), want.dtype(), "{k} dtype");
        assert_eq!(got.shape(), want.shape(), "{k} shape");
        if want.dtype().is_float() {
            let values = |a: &mlx_tensor::Array| {
                a.as_type(mlx_tensor::Dtype::F32)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap()
            };
            let (g, w) = (values(got), values(want));
            let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
            let diff = g
                .iter()
                .zip(&w)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                diff <= rel * scale,
                "{k} differs by {diff} (largest {scale})"
            );
        } else {
            let same = got
                .array_equal(want, false)
                .unwrap()
                .to_vec::<bool>()
                .unwrap()[0];
            assert!(same, "{k} differs from the reference");
        }
    }
}
