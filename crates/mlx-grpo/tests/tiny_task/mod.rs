//! The tiny task the trainer tests share: sums `a+b=` with a character-level
//! tokenizer and a one-layer random Qwen3.

#![allow(dead_code)]

use mlx_grpo::dataset::{Dataset, Prompt, Row};
use mlx_lm::Tokenizer;
use mlx_lm::loader::random_model;
use mlx_lm::models::{Model, ModelConfig, Qwen3Config};
use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_tensor::Dtype;
use tempfile::TempDir;

/// A fresh directory for one test, removed when the returned value is
/// dropped.
pub fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("mlx-grpo-tiny-{name}-"))
        .tempdir()
        .unwrap()
}

/// A character-level tokenizer for sums.
pub fn tokenizer() -> Tokenizer {
    VocabTokenizerBuilder::char_level("0123456789+=".chars())
        .pad("<pad>")
        .eos("<|endoftext|>")
        .build()
        .unwrap()
}

/// A one-layer dense Qwen3 with random weights.
pub fn dense_model(tok: &Tokenizer) -> Model {
    let config: Qwen3Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tok.vocab_size(), "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "rope_theta": 10000.0, "max_position_embeddings": 32, "tie_word_embeddings": true
    }))
    .unwrap();
    random_model(&ModelConfig::Qwen3(config), 7, Dtype::F32).unwrap()
}

/// Twelve prompts `a+b=`; rows 0–4 are `a+0=`.
pub fn dataset() -> Dataset {
    let rows = (0..12u32)
        .map(|i| Row {
            prompt: Prompt::Text(format!("{}+{}=", i % 5, i / 5)),
            answer: Some((i % 5 + i / 5).to_string()),
            extra: Default::default(),
        })
        .collect();
    Dataset::from_rows(rows, "sums").unwrap()
}
