//! Tag-format rewards on the raw completion text.

use crate::error::Result;
use crate::rewards::{RewardFunction, RewardInput};

/// Which layout [`FormatReward`] expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatKind {
    /// TRL's `think_format_reward`: the text starts with `<think>`, has no
    /// second `<think>`, and closes it with `</think>`; anything may follow.
    Think,
    /// `<think>…</think>` then `<answer>…</answer>`, each tag exactly once,
    /// nothing but whitespace around and between the blocks.
    ThinkAnswer,
}

/// 1 when [`Completion::raw_text`](crate::rewards::Completion::raw_text) has
/// the expected tag layout, else 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatReward {
    kind: FormatKind,
    think_prefilled: bool,
}

impl FormatReward {
    /// TRL's `think_format_reward`.
    pub fn think() -> Self {
        Self {
            kind: FormatKind::Think,
            think_prefilled: false,
        }
    }

    /// The strict `<think>…</think><answer>…</answer>` layout.
    pub fn think_answer() -> Self {
        Self {
            kind: FormatKind::ThinkAnswer,
            think_prefilled: false,
        }
    }

    /// Read the completion as if `<think>` preceded it: for chat templates
    /// whose generation prompt already opens the thinking block.
    pub fn with_think_prefilled(mut self, prefilled: bool) -> Self {
        self.think_prefilled = prefilled;
        self
    }

    /// The expected layout.
    pub fn kind(&self) -> FormatKind {
        self.kind
    }

    /// Whether `text` has the expected layout.
    pub fn matches(&self, text: &str) -> bool {
        let owned;
        let text = if self.think_prefilled {
            owned = format!("<think>{text}");
            owned.as_str()
        } else {
            text
        };
        match self.kind {
            FormatKind::Think => think_ok(text),
            FormatKind::ThinkAnswer => think_answer_ok(text),
        }
    }
}

fn think_ok(text: &str) -> bool {
    text.strip_prefix("<think>")
        .is_some_and(|rest| !rest.contains("<think>") && rest.contains("</think>"))
}

fn think_answer_ok(text: &str) -> bool {
    let text = text.trim();
    let tags = ["<think>", "</think>", "<answer>", "</answer>"];
    if tags.iter().any(|tag| text.matches(tag).count() != 1) {
        return false;
    }
    let Some(rest) = text.strip_prefix("<think>") else {
        return false;
    };
    let Some((_, rest)) = rest.split_once("</think>") else {
        return false;
    };
    let Some(rest) = rest.trim_start().strip_prefix("<answer>") else {
        return false;
    };
    rest.strip_suffix("</answer>").is_some()
}

impl RewardFunction for FormatReward {
    fn name(&self) -> &str {
        match self.kind {
            FormatKind::Think => "think_format_reward",
            FormatKind::ThinkAnswer => "think_answer_format_reward",
        }
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<f32>> {
        Ok(inputs
            .iter()
            .map(|x| f32::from(u8::from(self.matches(&x.completion.raw_text))))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_matches_trl_examples() {
        let r = FormatReward::think();
        assert!(r.matches("<think>\nThis is my reasoning.\n</think>\nThis is my answer."));
        assert!(!r.matches("<think>\nThis is my reasoning.\nThis is my answer."));
        assert!(!r.matches(" <think>x</think>"));
        assert!(!r.matches("<think>a<think>b</think>"));
        assert!(
            FormatReward::think()
                .with_think_prefilled(true)
                .matches("reasoning</think> answer")
        );
    }

    #[test]
    fn think_answer_is_strict() {
        let r = FormatReward::think_answer();
        assert!(r.matches("<think>why</think>\n<answer>4</answer>\n"));
        assert!(!r.matches("<think>why</think> so <answer>4</answer>"));
        assert!(!r.matches("<think>why</think><answer>4</answer> trailing"));
        assert!(!r.matches("<answer>4</answer><think>why</think>"));
        assert!(!r.matches("<think>a</think><answer>1</answer><answer>2</answer>"));
        assert!(!r.matches(""));
        assert_eq!(r.name(), "think_answer_format_reward");
    }
}
