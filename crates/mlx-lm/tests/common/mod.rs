//! Shared helpers of the integration tests: the real Qwen3 tokenizer (loaded
//! once per test binary), the golden fixtures, and scratch directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mlx_lm::Tokenizer;
use serde_json::Value;
use tempfile::TempDir;

/// The Qwen3 tokenizer directory committed with the repository
/// (`assets/qwen3-tokenizer`, provenance in its `SOURCE.md`).
pub fn qwen3_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/qwen3-tokenizer")
}

/// The Qwen3 tokenizer, loaded once.
pub fn qwen3() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_dir(qwen3_dir()).unwrap_or_else(|e| panic!("loading Qwen3 tokenizer: {e}"))
    })
}

/// A fixture file under `tests/fixtures/`, parsed.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A fresh directory under the system temp dir, removed when the returned
/// guard is dropped.
pub fn temp_dir(label: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("lm-text-{label}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a temporary directory: {e}"))
}

/// Writes a file relative to `dir` (creating parent folders).
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}
