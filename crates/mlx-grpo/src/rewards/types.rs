//! What a reward function sees: the prompt, the parsed completion, the
//! reference answer and the row's other fields, all plain Rust data.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::dataset::Prompt;

/// Why a completion ended, how its tool calls were read, and the calls:
/// the generation and parsing types of `mlx-lm`, one definition for both
/// crates.
pub use mlx_lm::generate::FinishReason;
pub use mlx_lm::{ToolCall, ToolCallStatus};

/// A generated completion, decoded and parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The answer text: `raw_text` without the thinking block and tool-call markup.
    pub text: String,
    /// Everything generated, decoded with special tokens removed but tags such
    /// as `<think>` kept.
    pub raw_text: String,
    /// The content of the thinking block, if there was one.
    pub thinking: Option<String>,
    /// Tool calls, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Generated tokens (EOS included when generated).
    pub num_tokens: usize,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Every assistant turn of a multi-turn (tool-calling) rollout, in
    /// order, each with the results of its tool calls; empty for a
    /// single-turn completion. The fields above then describe the last
    /// turn (the final answer), and `num_tokens` counts the tokens the
    /// model generated (not the inserted tool results).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<Turn>,
    /// The reward the rollout's environment gave, if any
    /// ([`crate::tools::Environment::reward`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_reward: Option<f64>,
}

/// One assistant turn of a multi-turn rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// The answer text of the turn (without thinking and tool-call markup).
    pub text: String,
    /// The turn as generated, special tokens removed.
    pub raw_text: String,
    /// The turn's thinking, if any.
    pub thinking: Option<String>,
    /// The turn's tool calls, in order.
    pub tool_calls: Vec<ToolCall>,
    /// What the tools answered, one per call, in order (empty when the
    /// calls were not run: the last turn, or no room was left).
    pub tool_results: Vec<ToolResult>,
}

/// What a tool call returned, as the model read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The tool's name (`"unknown"` for a call without a usable name).
    pub name: String,
    /// The content of the tool message.
    pub content: String,
    /// Whether the call failed (unknown tool, invalid call, an error or a
    /// panic of the tool).
    pub failed: bool,
}

impl Completion {
    /// A completion of plain text with no thinking and no tool calls
    /// (`text == raw_text`), handy for tests and simple rewards.
    pub fn from_text(
        text: impl Into<String>,
        num_tokens: usize,
        finish_reason: FinishReason,
    ) -> Self {
        let text = text.into();
        Self {
            raw_text: text.clone(),
            text,
            thinking: None,
            tool_calls: Vec::new(),
            num_tokens,
            finish_reason,
            turns: Vec::new(),
            environment_reward: None,
        }
    }

    /// Whether generation hit the length limit.
    pub fn is_truncated(&self) -> bool {
        self.finish_reason == FinishReason::Length
    }
}

/// Everything a reward function gets for one completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardInput {
    /// The prompt the completion answers.
    pub prompt: Prompt,
    /// The completion.
    pub completion: Completion,
    /// The dataset's reference answer, if the row has one.
    pub answer: Option<String>,
    /// The row's other fields.
    pub extra: Map<String, Value>,
}

impl RewardInput {
    /// An input with a text prompt and no extra fields.
    pub fn new(prompt: impl Into<String>, completion: Completion, answer: Option<&str>) -> Self {
        Self {
            prompt: Prompt::Text(prompt.into()),
            completion,
            answer: answer.map(str::to_string),
            extra: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_validity() {
        let ok = ToolCall {
            name: Some("f".into()),
            arguments: Value::Null,
            status: ToolCallStatus::Ok,
            raw: String::new(),
        };
        assert!(ok.is_valid());
        let unnamed = ToolCall {
            name: Some(String::new()),
            ..ok.clone()
        };
        assert!(!unnamed.is_valid());
        let broken = ToolCall {
            status: ToolCallStatus::InvalidJson {
                message: "eof".into(),
            },
            ..ok
        };
        assert!(!broken.is_valid());
    }

    #[test]
    fn serde_shapes() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let status = ToolCallStatus::InvalidJson {
            message: "eof".into(),
        };
        assert_eq!(
            serde_json::to_string(&status)?,
            r#"{"kind":"invalid_json","message":"eof"}"#
        );
        assert_eq!(serde_json::to_string(&FinishReason::Length)?, r#""length""#);
        let c = Completion::from_text("hi", 2, FinishReason::Stop);
        assert_eq!(c.text, c.raw_text);
        assert!(!c.is_truncated());
        Ok(())
    }
}
