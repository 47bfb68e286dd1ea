//! Tools and environments for multi-turn (agent) rollouts.
//!
//! - [`Tool`]: a name, a JSON-schema description (rendered into the chat
//!   template's `tools`) and a Rust function from JSON arguments to text.
//! - [`Environment`]: per-rollout state behind tools (TRL's
//!   `environment_factory`): `reset` with the dataset row, tool calls, an
//!   optional final `reward`. [`Tools`] holds the stateless tools and the
//!   environment factory that a trainer offers
//!   ([`crate::trainer::Trainer::with_tools`]).
//! - [`ToolLoop`]: runs the calls of each assistant turn and turns their
//!   results into the tokens the model reads next ([`tool_suffix_ids`]).
//! - [`generate_rows_with_tools`]: a rollout of multi-turn completions;
//!   each [`crate::trainer::rollout::RolloutSample`] then carries a
//!   [`ToolRollout`] whose token mask keeps tool results out of the loss.

mod environment;
mod rollout;
mod suffix;
mod tool;
mod turn_loop;

pub use environment::{Environment, EnvironmentFactory, ToolInstance, Tools};
pub use rollout::{ToolRollout, generate_rows_with_tools, multi_turn_completion, tool_metrics};
pub use suffix::{error_content, tool_suffix_ids};
pub use tool::{Tool, ToolResultText};
pub use turn_loop::{RolloutTools, ToolLoop};
