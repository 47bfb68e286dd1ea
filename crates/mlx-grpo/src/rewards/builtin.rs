//! Ready-made reward functions.
//!
//! | type | name in metrics | scores |
//! |---|---|---|
//! | [`AccuracyReward`] | `accuracy_reward` | 1 if the final answer matches the row's `answer`, else 0; NaN without an answer |
//! | [`FormatReward`] | `think_format_reward` / `think_answer_format_reward` | 1 if the completion has the expected tags, else 0 |
//! | [`ToolCallReward`] | `tool_call_reward` | fraction of tool calls that parse (and name an allowed tool) |
//! | [`SoftOverlongPunishment`] | `soft_overlong_punishment_reward` | DAPO's soft length penalty, as TRL's `get_soft_overlong_punishment` |
//! | [`RepetitionPenalty`] | `repetition_penalty_reward` | penalty for repeated n-grams, as TRL's `get_repetition_penalty_reward` |

mod accuracy;
mod format;
mod length;
mod repetition;
mod tool_calls;

pub use accuracy::AccuracyReward;
pub use format::{FormatKind, FormatReward};
pub use length::SoftOverlongPunishment;
pub use repetition::RepetitionPenalty;
pub use tool_calls::ToolCallReward;
