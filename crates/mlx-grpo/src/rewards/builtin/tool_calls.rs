//! Tool-call validity.

use crate::error::Result;
use crate::rewards::{RewardFunction, RewardInput, ToolCall};

/// The fraction of a completion's tool calls that are valid: parsed JSON, a
/// non-empty name and, when a list of allowed tools is given, a name on it.
/// A completion without tool calls scores `if_absent` (NaN by default: not
/// applicable).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallReward {
    allowed: Option<Vec<String>>,
    if_absent: f32,
}

impl Default for ToolCallReward {
    fn default() -> Self {
        Self {
            allowed: None,
            if_absent: f32::NAN,
        }
    }
}

impl ToolCallReward {
    /// Any well-formed call counts as valid; no calls score NaN.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only calls to these tools count as valid.
    pub fn with_allowed_tools<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The score of a completion with no tool calls (e.g. 0 to require a call).
    pub fn with_score_if_absent(mut self, score: f32) -> Self {
        self.if_absent = score;
        self
    }

    fn call_ok(&self, call: &ToolCall) -> bool {
        call.is_valid()
            && match (&self.allowed, &call.name) {
                (Some(allowed), Some(name)) => allowed.iter().any(|a| a == name),
                _ => true,
            }
    }
}

impl RewardFunction for ToolCallReward {
    fn name(&self) -> &str {
        "tool_call_reward"
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<f32>> {
        Ok(inputs
            .iter()
            .map(|x| {
                let calls = &x.completion.tool_calls;
                if calls.is_empty() {
                    self.if_absent
                } else {
                    calls.iter().filter(|c| self.call_ok(c)).count() as f32 / calls.len() as f32
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::{Completion, FinishReason, ToolCallStatus};
    use serde_json::json;

    fn call(name: Option<&str>, status: ToolCallStatus) -> ToolCall {
        ToolCall {
            name: name.map(str::to_string),
            arguments: json!({}),
            status,
            raw: String::new(),
        }
    }

    fn input(calls: Vec<ToolCall>) -> RewardInput {
        let mut completion = Completion::from_text("", 1, FinishReason::Stop);
        completion.tool_calls = calls;
        RewardInput::new("q", completion, None)
    }

    #[test]
    fn fraction_of_valid_calls() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let bad_json = ToolCallStatus::InvalidJson {
            message: "eof".into(),
        };
        let inputs = [
            input(vec![
                call(Some("search"), ToolCallStatus::Ok),
                call(None, ToolCallStatus::MissingName),
            ]),
            input(vec![call(Some("search"), bad_json)]),
            input(vec![call(Some("rm"), ToolCallStatus::Ok)]),
            input(vec![]),
        ];
        let out = ToolCallReward::new().score(&inputs)?;
        assert_eq!(out[..3], [0.5, 0.0, 1.0]);
        assert!(out[3].is_nan());
        let strict = ToolCallReward::new()
            .with_allowed_tools(["search"])
            .with_score_if_absent(0.0);
        assert_eq!(strict.score(&inputs)?, vec![0.5, 0.0, 0.0, 0.0]);
        Ok(())
    }
}
