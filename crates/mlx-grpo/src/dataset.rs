//! Prompt datasets and the samplers that turn them into generation batches.
//!
//! A dataset is a JSONL file, one JSON object per line:
//!
//! ```text
//! {"prompt": "What is 2+2?", "answer": "4"}
//! {"prompt": [{"role": "user", "content": "What is 3*3?"}], "answer": 9, "level": 1}
//! ```
//!
//! `prompt` is required (a string or a list of chat messages); `answer` is
//! optional (a string, or a number that is kept as its text). Every other key
//! is kept as a JSON value in [`Row::extra`] and handed to reward functions.
//! Blank lines are skipped; errors name the file and the 1-based line.

mod prompt;
mod rng;
mod sampler;

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use prompt::{Message, Prompt};
pub use rng::{SplitMix64, mix64};
pub use sampler::{
    GenerationBatch, GenerationSampler, RepeatSampler, SamplerPosition, SamplerSpec,
};

use crate::error::{Error, Result};
use prompt::json_kind;

/// One dataset example. Deserializing goes through [`Row::from_json`], so a
/// numeric `answer` is accepted there too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value")]
pub struct Row {
    /// The prompt.
    pub prompt: Prompt,
    /// The reference answer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// All other fields of the row.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Row {
    /// Reads a row from a JSON object.
    pub fn from_json(value: Value) -> std::result::Result<Self, String> {
        let Value::Object(mut extra) = value else {
            return Err(format!(
                "a row must be a JSON object, got {}",
                json_kind(&value)
            ));
        };
        let prompt = match extra.remove("prompt") {
            Some(value) => Prompt::from_json(&value)?,
            None => return Err("missing required field `prompt`".to_string()),
        };
        let answer = match extra.remove("answer") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text),
            Some(Value::Number(number)) => Some(number.to_string()),
            Some(other) => {
                return Err(format!(
                    "`answer` must be a string or a number, got {}",
                    json_kind(&other)
                ));
            }
        };
        Ok(Self {
            prompt,
            answer,
            extra,
        })
    }
}

impl TryFrom<Value> for Row {
    type Error = String;

    fn try_from(value: Value) -> std::result::Result<Self, String> {
        Row::from_json(value)
    }
}

/// An in-memory prompt dataset; never empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    source_name: String,
    rows: Vec<Row>,
}

impl Dataset {
    /// Reads a JSONL file. Bytes that are not UTF-8 are an
    /// [`Error::DatasetRow`] naming the file and the line they are on.
    pub fn from_jsonl_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let source_name = path.display().to_string();
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let valid = &bytes[..e.valid_up_to()];
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            Error::DatasetRow {
                source_name: source_name.clone(),
                line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
                message: format!(
                    "not valid UTF-8 (byte {} of the line)",
                    e.valid_up_to() - line_start + 1
                ),
            }
        })?;
        Self::from_jsonl_str(text, &source_name)
    }

    /// Parses JSONL text; `source_name` stands for the file in error messages.
    pub fn from_jsonl_str(text: &str, source_name: &str) -> Result<Self> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row_error = |message: String| Error::DatasetRow {
                source_name: source_name.to_string(),
                line: i + 1,
                message,
            };
            let value: Value =
                serde_json::from_str(line).map_err(|e| row_error(format!("invalid JSON: {e}")))?;
            rows.push(Row::from_json(value).map_err(row_error)?);
        }
        Self::from_rows(rows, source_name)
    }

    /// Wraps rows built in code.
    pub fn from_rows(rows: Vec<Row>, source_name: &str) -> Result<Self> {
        if rows.is_empty() {
            return Err(Error::EmptyDataset {
                source_name: source_name.to_string(),
            });
        }
        Ok(Self {
            source_name: source_name.to_string(),
            rows,
        })
    }

    /// The file (or name) the rows came from.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Number of rows (at least 1).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Always `false`: an empty dataset is an error at construction.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Row `index`, if it exists.
    pub fn get(&self, index: usize) -> Option<&Row> {
        self.rows.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_and_keeps_extras() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let text = "\u{feff}{\"prompt\": \"a\", \"answer\": \"1\"}\n\n{\"prompt\": [{\"role\": \"user\", \"content\": \"b\"}], \"answer\": 2.5, \"tag\": [1]}\r\n";
        let ds = Dataset::from_jsonl_str(text, "mem")?;
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.rows()[0].answer.as_deref(), Some("1"));
        assert_eq!(ds.rows()[1].answer.as_deref(), Some("2.5"));
        assert_eq!(ds.rows()[1].extra["tag"], serde_json::json!([1]));
        assert!(ds.rows()[1].prompt.is_conversational());
        Ok(())
    }

    #[test]
    fn errors_name_source_and_line() {
        let err = Dataset::from_jsonl_str("{\"prompt\": \"a\"}\n{\"answer\": 1}\n", "train.jsonl")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "train.jsonl:2: missing required field `prompt`"
        );
        let err = Dataset::from_jsonl_str("{\"prompt\": \"a\"}\n\n{oops\n", "t.jsonl").unwrap_err();
        assert!(
            err.to_string().starts_with("t.jsonl:3: invalid JSON"),
            "{err}"
        );
        let err = Dataset::from_jsonl_str("{\"prompt\": \"a\", \"answer\": [1]}", "t").unwrap_err();
        assert!(
            err.to_string()
                .contains("`answer` must be a string or a number, got an array")
        );
        let err = Dataset::from_jsonl_str("[1, 2]", "t").unwrap_err();
        assert!(err.to_string().contains("must be a JSON object"));
    }

    #[test]
    fn empty_dataset_is_an_error() {
        let err = Dataset::from_jsonl_str("\n  \n", "empty.jsonl").unwrap_err();
        assert!(
            matches!(err, Error::EmptyDataset { ref source_name } if source_name == "empty.jsonl")
        );
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let err = Dataset::from_jsonl_path("/nonexistent/grpo.jsonl").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/grpo.jsonl"), "{err}");
    }
}
