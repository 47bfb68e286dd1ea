//! Hostile dataset files: invalid JSON, missing or mistyped fields, empty
//! files, bytes that are not UTF-8, a huge line, deep nesting. Each is a
//! typed error naming the file and the 1-based line (and the field), never
//! a crash, a hang or a silently skipped row.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mlx_grpo::Error;
use mlx_grpo::dataset::Dataset;
use tempfile::TempDir;

/// Writes `bytes` to `train.jsonl` in a directory of its own for test
/// `tag`; the directory is removed when the returned guard is dropped.
fn dataset_file(tag: &str, bytes: &[u8]) -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("grpo-hostile-{tag}-"))
        .tempdir()
        .unwrap();
    let path = dir.path().join("train.jsonl");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// Loading `bytes` fails on `line` of the file with a message holding
/// `words`; the shown error starts with `<file>:<line>:`.
#[track_caller]
fn assert_row_error(tag: &str, bytes: &[u8], line: usize, words: &[&str]) {
    let (_dir, path) = dataset_file(tag, bytes);
    let err = Dataset::from_jsonl_path(&path).unwrap_err();
    let shown = err.to_string();
    match err {
        Error::DatasetRow {
            source_name,
            line: l,
            message,
        } => {
            assert_eq!(source_name, path.display().to_string());
            assert_eq!(l, line, "{shown}");
            for w in words {
                assert!(message.contains(w), "`{message}` lacks `{w}`");
            }
            assert!(
                shown.starts_with(&format!("{}:{line}: ", path.display())),
                "{shown}"
            );
        }
        other => panic!("expected DatasetRow, got {other:?}"),
    }
}

const GOOD: &str = "{\"prompt\": \"2+2?\", \"answer\": \"4\"}\n";

// JSON that does not parse.

#[test]
fn an_unclosed_object_names_its_line() {
    let text = format!("{GOOD}{GOOD}{{\"prompt\": \"x\"\n{GOOD}");
    assert_row_error("unclosed", text.as_bytes(), 3, &["invalid JSON"]);
}

#[test]
fn a_trailing_comma_names_its_line() {
    let text = format!("{GOOD}{{\"prompt\": \"x\",}}\n");
    assert_row_error("comma", text.as_bytes(), 2, &["invalid JSON"]);
}

#[test]
fn two_objects_on_one_line_name_the_line() {
    let text = format!("{GOOD}{{\"prompt\": \"a\"}} {{\"prompt\": \"b\"}}\n");
    assert_row_error(
        "two-objects",
        text.as_bytes(),
        2,
        &["invalid JSON", "trailing"],
    );
}

#[test]
fn a_pretty_printed_json_array_names_the_first_line() {
    let text = "[\n  {\"prompt\": \"a\"}\n]\n";
    assert_row_error("array-file", text.as_bytes(), 1, &["invalid JSON"]);
}

#[test]
fn a_lone_surrogate_escape_names_its_line() {
    let text = format!("{GOOD}{{\"prompt\": \"\\ud800\"}}\n");
    assert_row_error("surrogate", text.as_bytes(), 2, &["invalid JSON", "escape"]);
}

#[test]
fn an_out_of_range_number_names_its_line() {
    let text = format!("{GOOD}{{\"prompt\": \"a\", \"answer\": 1e400}}\n");
    assert_row_error(
        "number",
        text.as_bytes(),
        2,
        &["invalid JSON", "out of range"],
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!(
        "{{\"prompt\": \"a\", \"x\": {}{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let text = format!("{GOOD}{deep}");
    assert_row_error("deep", text.as_bytes(), 2, &["invalid JSON", "recursion"]);
}

// Rows with missing or mistyped fields.

#[test]
fn a_row_without_prompt_names_the_field() {
    let text = format!("{GOOD}{GOOD}{{\"question\": \"2+2?\"}}\n");
    assert_row_error("no-prompt", text.as_bytes(), 3, &["`prompt`", "missing"]);
}

#[test]
fn a_null_prompt_names_the_field() {
    assert_row_error(
        "null-prompt",
        b"{\"prompt\": null}\n",
        1,
        &["`prompt`", "null"],
    );
}

#[test]
fn a_numeric_prompt_names_the_field() {
    assert_row_error(
        "num-prompt",
        b"{\"prompt\": 42}\n",
        1,
        &["`prompt`", "a number"],
    );
}

#[test]
fn an_empty_message_list_names_the_field() {
    assert_row_error(
        "empty-list",
        b"{\"prompt\": []}\n",
        1,
        &["`prompt`", "empty"],
    );
}

#[test]
fn a_message_that_is_not_an_object_names_its_index() {
    let text = b"{\"prompt\": [{\"role\": \"user\", \"content\": \"a\"}, \"hi\"]}\n";
    assert_row_error("msg-string", text, 1, &["`prompt[1]`", "a string"]);
}

#[test]
fn a_message_role_of_the_wrong_type_names_the_field() {
    let text = b"{\"prompt\": [{\"role\": 1, \"content\": \"a\"}]}\n";
    assert_row_error("role-num", text, 1, &["`prompt[0].role`"]);
}

#[test]
fn an_answer_of_the_wrong_type_names_the_field() {
    let text = format!("{GOOD}{{\"prompt\": \"a\", \"answer\": {{\"v\": 1}}}}\n");
    assert_row_error(
        "answer-object",
        text.as_bytes(),
        2,
        &["`answer`", "an object"],
    );
}

#[test]
fn a_row_that_is_not_an_object_names_its_line() {
    let text = format!("{GOOD}\"just a string\"\n");
    assert_row_error(
        "row-string",
        text.as_bytes(),
        2,
        &["JSON object", "a string"],
    );
}

// Bytes that are not text.

#[test]
fn invalid_utf8_names_its_line() {
    let mut bytes = format!("{GOOD}{GOOD}").into_bytes();
    bytes.extend_from_slice(b"{\"prompt\": \"caf\xe9\"}\n");
    bytes.extend_from_slice(GOOD.as_bytes());
    // `\xe9` is byte 16 of line 3.
    assert_row_error("latin1", &bytes, 3, &["UTF-8", "byte 16"]);
}

#[test]
fn a_utf8_sequence_cut_at_the_end_of_the_file_names_its_line() {
    let mut bytes = GOOD.as_bytes().to_vec();
    bytes.extend_from_slice(b"{\"prompt\": \"\xe2\x82");
    assert_row_error("cut-utf8", &bytes, 2, &["UTF-8"]);
}

#[test]
fn binary_data_names_the_first_line() {
    assert_row_error(
        "binary",
        &[0xff, 0xd8, 0xff, 0xe0, 0, 16, b'J', b'F'],
        1,
        &["UTF-8", "byte 1"],
    );
}

#[test]
fn a_nul_byte_names_its_line() {
    let text = format!("{GOOD}{{\"prompt\": \"a\"}}\0\n");
    assert_row_error("nul", text.as_bytes(), 2, &["invalid JSON"]);
}

// Empty files and what is not a file.

#[test]
fn an_empty_file_is_an_empty_dataset_naming_it() {
    let (_dir, path) = dataset_file("empty", b"");
    match Dataset::from_jsonl_path(&path).unwrap_err() {
        Error::EmptyDataset { source_name } => assert_eq!(source_name, path.display().to_string()),
        other => panic!("expected EmptyDataset, got {other:?}"),
    }
}

#[test]
fn a_file_of_blank_lines_and_a_bom_is_an_empty_dataset() {
    let (_dir, path) = dataset_file("blank", "\u{feff}\n  \r\n\t\n".as_bytes());
    assert!(matches!(
        Dataset::from_jsonl_path(&path).unwrap_err(),
        Error::EmptyDataset { .. }
    ));
}

#[test]
fn a_directory_is_an_io_error_naming_it() {
    let (_dir, file) = dataset_file("directory", b"");
    let path = file.with_file_name("data.jsonl");
    std::fs::create_dir_all(&path).unwrap();
    let err = Dataset::from_jsonl_path(&path).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path: p, .. } if p == &path),
        "{err}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
}

// Large input stays fine.

#[test]
fn a_huge_single_line_loads_quickly() {
    let prompt = "x".repeat(8 << 20);
    let text = format!("{{\"prompt\": \"{prompt}\", \"answer\": 1}}\n{GOOD}");
    let (_dir, path) = dataset_file("huge", text.as_bytes());
    let started = Instant::now();
    let ds = Dataset::from_jsonl_path(&path).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.rows()[0].prompt.as_text().map(str::len), Some(8 << 20));
    assert_eq!(ds.rows()[0].answer.as_deref(), Some("1"));
}

#[test]
fn a_huge_invalid_line_names_its_line_quickly() {
    let text = format!("{GOOD}{{\"prompt\": \"{}\n", "y".repeat(8 << 20));
    let started = Instant::now();
    assert_row_error("huge-bad", text.as_bytes(), 2, &["invalid JSON"]);
    assert!(started.elapsed() < Duration::from_secs(10));
}
