//! Helpers shared by the sampling and generation tests.
#![allow(dead_code)]

pub mod settings;

use std::path::PathBuf;

use mlx_tensor::{Array, Dtype};
use serde_json::Value;

/// The folder of the sampling fixtures.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sample")
}

/// A fixture file parsed as JSON.
pub fn load_json(name: &str) -> Value {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A float of a fixture (`null` is `-inf`).
pub fn f32_of(v: &Value) -> f32 {
    v.as_f64().map(|x| x as f32).unwrap_or(f32::NEG_INFINITY)
}

/// A matrix of a fixture as rows.
pub fn rows_of(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| r.as_array().expect("row").iter().map(f32_of).collect())
        .collect()
}

/// A `[rows, cols]` array from rows of floats, in `dtype`.
pub fn array_2d(rows: &[Vec<f32>], dtype: Dtype) -> Array {
    let cols = rows[0].len();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Array::from_slice(&flat, &[rows.len() as i32, cols as i32])
        .unwrap()
        .as_type(dtype)
        .unwrap()
}

/// A dtype named as in MLX.
pub fn dtype_named(name: &str) -> Dtype {
    match name {
        "float32" => Dtype::F32,
        "bfloat16" => Dtype::BF16,
        "float16" => Dtype::F16,
        other => panic!("unknown dtype {other}"),
    }
}

/// Reads back an array as f32 rows.
pub fn to_rows(a: &Array) -> Vec<Vec<f32>> {
    let cols = a.dim(-1).unwrap() as usize;
    let flat = a.as_type(Dtype::F32).unwrap().to_vec::<f32>().unwrap();
    flat.chunks(cols).map(|c| c.to_vec()).collect()
}

/// `softmax` of a row vector, on the host (for readable assertions).
pub fn softmax(a: &Array) -> Vec<f32> {
    a.softmax(-1, true)
        .unwrap()
        .reshape(&[-1])
        .unwrap()
        .as_type(Dtype::F32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
}

/// `log` of probabilities as a `[1, n]` or `[rows, n]` f32 array.
pub fn log_probs(rows: &[&[f32]]) -> Array {
    let r: Vec<Vec<f32>> = rows.iter().map(|r| r.to_vec()).collect();
    array_2d(&r, Dtype::F32).log().unwrap()
}

/// Rounds to `digits` decimals.
pub fn round(x: &[f32], digits: i32) -> Vec<f32> {
    let s = 10f32.powi(digits);
    x.iter().map(|v| (v * s).round() / s).collect()
}

/// Whether two float slices agree within `tol`.
pub fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

/// The tiny random Qwen3 checkpoint of the fixtures (float32, vocabulary
/// 256, end-of-sequence id 2).
pub fn tiny_model() -> mlx_lm::Model {
    mlx_lm::load_model(fixture_dir().join("tiny-qwen3"), None).expect("load the tiny fixture model")
}

/// A word-level tokenizer for the tiny model: `<pad> <s> </s> w3 … w255`,
/// with `</s>` (id 2) as end of sequence.
pub fn tiny_tokenizer() -> mlx_lm::Tokenizer {
    let words: Vec<String> = ["<pad>", "<s>", "</s>"]
        .iter()
        .map(|s| s.to_string())
        .chain((3..256).map(|i| format!("w{i}")))
        .collect();
    mlx_lm::text::vocab::VocabTokenizerBuilder::word_level(words)
        .pad("<pad>")
        .bos("<s>")
        .eos("</s>")
        .chat_template("{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}w3{% endif %}")
        .build()
        .expect("build the tiny tokenizer")
}

/// Token ids of a fixture list.
pub fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|t| t.as_u64().expect("id") as u32)
        .collect()
}
