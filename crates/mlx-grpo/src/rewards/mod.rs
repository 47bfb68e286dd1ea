//! Reward functions.
//!
//! A reward function maps a batch of [`RewardInput`]s (prompt, parsed
//! completion, reference answer, the row's other fields) to one `f32` each;
//! `f32::NAN` means "not applicable". A [`RewardSet`] holds several named,
//! weighted functions, runs them with panics caught, and returns a
//! [`RewardMatrix`] that [`crate::advantages`] turns into advantages.
//!
//! Reward functions receive plain Rust data, never device arrays, so they can
//! run on any thread ([`RewardSet::score_parallel`]).

pub mod answer;
pub mod builtin;
mod function;
mod matrix;
mod set;
mod types;

pub use builtin::{
    AccuracyReward, FormatKind, FormatReward, RepetitionPenalty, SoftOverlongPunishment,
    ToolCallReward,
};
pub use function::{FnReward, PerSample, RewardFunction, per_sample, reward_fn};
pub use matrix::RewardMatrix;
pub use set::RewardSet;
pub(crate) use set::panic_message;
pub use types::{
    Completion, FinishReason, RewardInput, ToolCall, ToolCallStatus, ToolResult, Turn,
};

pub use crate::dataset::{Message, Prompt};
