//! Files for the hostile-input cases: tiny model directories (valid ones
//! and broken copies), tokenizers, datasets and configs, under one
//! scratch directory per test run.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mlx_lm::text::vocab::VocabTokenizerBuilder;
use serde_json::Value;

/// The tiny random Qwen3 checkpoint of the mlx-lm tests (vocabulary 256,
/// `max_position_embeddings` 512), with no tokenizer.
fn tiny_checkpoint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/mlx-lm/tests/fixtures/sample/tiny-qwen3")
}

/// The scratch directory of this run (emptied when the run starts).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile_cli");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the scratch directory");
        dir
    })
}

/// A new empty directory `name` in the scratch directory.
pub fn case_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    fs::create_dir_all(&dir).expect("creating a case directory");
    dir
}

/// Copies the tiny checkpoint's files into `dir`.
fn copy_checkpoint(dir: &Path) {
    for entry in fs::read_dir(tiny_checkpoint()).expect("reading the tiny checkpoint") {
        let path = entry.expect("a checkpoint entry").path();
        if let Some(name) = path.file_name() {
            fs::copy(&path, dir.join(name)).expect("copying a checkpoint file");
        }
    }
}

/// A valid tiny model without a tokenizer.
pub fn model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = case_dir("valid-model");
        copy_checkpoint(&dir);
        dir
    })
}

/// A word-level tokenizer of `size` ids (`<pad>`, `<s>`, `</s>`, then
/// `w3`, `w4`, ...) with a chat template that lists the contents.
pub fn save_tokenizer(dir: &Path, size: usize, chat_template: &str) {
    let words: Vec<String> = ["<pad>", "<s>", "</s>"]
        .iter()
        .map(|s| s.to_string())
        .chain((3..size).map(|i| format!("w{i}")))
        .collect();
    VocabTokenizerBuilder::word_level(words)
        .pad("<pad>")
        .bos("<s>")
        .eos("</s>")
        .unk("<pad>")
        .chat_template(chat_template)
        .build()
        .expect("building the toy tokenizer")
        .save_dir(dir)
        .expect("saving the toy tokenizer");
}

/// The chat template of the toy tokenizer.
pub const TEMPLATE: &str = "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}w3{% endif %}";

/// A valid tiny model with a 256-id toy tokenizer (its whole vocabulary).
pub fn model_with_tokenizer() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = case_dir("valid-model-tokenizer");
        copy_checkpoint(&dir);
        save_tokenizer(&dir, 256, TEMPLATE);
        dir
    })
}

/// A copy of the tiny model (with the toy tokenizer) in `name`, its
/// `config.json` changed by `edit`.
pub fn model_with_config(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = case_dir(name);
    copy_checkpoint(&dir);
    save_tokenizer(&dir, 256, TEMPLATE);
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).expect("reading config.json");
    let mut config: Value = serde_json::from_str(&text).expect("the fixture's config.json");
    edit(&mut config);
    fs::write(&path, config.to_string()).expect("writing config.json");
    dir
}

/// A copy of the tiny model (with the toy tokenizer) in `name`, with the
/// file `file` replaced by `bytes`.
pub fn model_with_file(name: &str, file: &str, bytes: &[u8]) -> PathBuf {
    let dir = case_dir(name);
    copy_checkpoint(&dir);
    save_tokenizer(&dir, 256, TEMPLATE);
    fs::write(dir.join(file), bytes).expect("writing a replacement file");
    dir
}

/// The tiny checkpoint's `model.safetensors`.
pub fn safetensors_bytes() -> Vec<u8> {
    fs::read(tiny_checkpoint().join("model.safetensors")).expect("reading model.safetensors")
}

/// Writes `text` to `name` in a new case directory and returns the path.
pub fn text_file(case: &str, name: &str, text: &str) -> PathBuf {
    let path = case_dir(case).join(name);
    fs::write(&path, text).expect("writing a case file");
    path
}

/// A valid two-row GRPO dataset.
pub fn dataset() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        text_file(
            "valid-dataset",
            "data.jsonl",
            "{\"prompt\": \"w10 w11\", \"answer\": \"w12\"}\n{\"prompt\": \"w20 w21\", \"answer\": \"w22\"}\n",
        )
    })
}

/// A GRPO config (TOML) small enough for one quick step, writing under the
/// case directory `case`; each `(key, toml_value)` of `changes` replaces or
/// adds a line.
pub fn grpo_config(case: &str, changes: &[(&str, &str)]) -> PathBuf {
    let dir = case_dir(case);
    let output = format!("{:?}", dir.join("run").display().to_string());
    let mut lines: Vec<(String, String)> = [
        ("output_dir", output.as_str()),
        ("num_generations", "2"),
        ("per_device_train_batch_size", "2"),
        ("max_completion_length", "4"),
        ("max_steps", "1"),
        ("logging_steps", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (key, value) in changes {
        match lines.iter_mut().find(|(k, _)| k == key) {
            Some(line) => line.1 = value.to_string(),
            None => lines.push((key.to_string(), value.to_string())),
        }
    }
    let text: String = lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    let path = dir.join("grpo.toml");
    fs::write(&path, text).expect("writing the GRPO config");
    path
}

/// Runs example `name` with `args` and asserts that it failed cleanly,
/// naming every one of `needles` (see `runner::assert_clean_error`).
pub fn fails(name: &str, args: Vec<std::ffi::OsString>, needles: &[&str]) {
    let outcome = crate::runner::run(name, &args, scratch());
    crate::runner::assert_clean_error(name, &args, &outcome, needles);
}

/// Runs example `name` with `args` and asserts that it exited with 0.
pub fn succeeds(name: &str, args: Vec<std::ffi::OsString>) -> crate::runner::Outcome {
    let outcome = crate::runner::run(name, &args, scratch());
    assert_eq!(
        outcome.code,
        Some(0),
        "{name} {args:?}\n--- stderr\n{}",
        outcome.stderr
    );
    outcome
}
