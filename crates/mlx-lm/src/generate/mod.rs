//! Generation: token streams for one sequence and batches of completions.
//!
//! - [`generate_step`] ([`TokenGenerator`]): the tokens after a prompt, one
//!   per `next()`, with their log-probabilities; the next step is computed
//!   while the caller handles the current token. With the same seed, model,
//!   prompt and settings it draws the same tokens as mlx-lm's
//!   `generate_step` (see [`crate::sample`] for the random keys).
//! - [`stream_generate`] ([`TextGenerator`]): the same with text deltas,
//!   end-of-sequence ids, stop sequences, a finish reason and throughput;
//!   [`generate`] collects it into one [`Generation`].
//! - [`generate_batch`]: `B` prompts × `G` completions in one batch over a
//!   left-padded cache, each completion with its tokens, sampler and
//!   TRL-style log-probabilities, finish reason and length; finished rows
//!   leave the batch at once. This is what RL rollouts use.
//! - [`generate_turns`]: the same over several turns: a row that ends a
//!   turn asks a [`TurnHandler`] for tokens to insert (tool results, the
//!   next generation prompt), reads them from its own cache and rejoins
//!   the batch; the sampled and inserted tokens are told apart. This is
//!   what multi-turn (tool-calling) rollouts use.
//!
//! ```no_run
//! use mlx_lm::generate::{generate_batch, BatchOptions};
//! use mlx_lm::sample::{RandomState, SamplerConfig};
//! # fn main() -> mlx_lm::Result<()> {
//! let model = mlx_lm::load_model("models/Qwen3-0.6B", None)?;
//! let tokenizer = mlx_lm::Tokenizer::from_dir("models/Qwen3-0.6B")?;
//! let prompts = vec![tokenizer.encode("1 + 1 =", false)?];
//! let options = BatchOptions {
//!     num_generations: 8,
//!     max_tokens: 64,
//!     sampler: SamplerConfig::with_temperature(1.0),
//!     eos_token_ids: tokenizer.eos_token_ids().to_vec(),
//!     ..BatchOptions::default()
//! };
//! let out = generate_batch(&model, &prompts, &options, &mut RandomState::from_seed(0)?)?;
//! for c in &out.completions {
//!     println!("{:?} {}", c.finish_reason, tokenizer.decode(c.content_tokens(), true)?);
//! }
//! # Ok(()) }
//! ```

mod batch;
mod batch_types;
mod decoder;
mod options;
mod stats;
mod step;
mod stop;
mod stream;
mod turns;

pub use batch::{generate_batch, generate_batch_groups};
pub use batch_types::{BatchOptions, BatchOutput, Completion, SUGGESTED_DECODE_MEMORY_HEADROOM_MB};
pub use decoder::{Decoder, PackedWeights, pack_weights};
pub use options::{DEFAULT_MAX_TOKENS, DEFAULT_PREFILL_STEP_SIZE, FinishReason, GenerateOptions};
pub use stats::GenerationStats;
pub use step::{GeneratedToken, TokenGenerator, generate_step};
pub use stop::{StopMatcher, StopSequences, StopState};
pub use stream::{Generation, GenerationResponse, TextGenerator, generate, stream_generate};
pub use turns::{
    TurnEnd, TurnHandler, TurnsCompletion, TurnsOutput, generate_turns, generate_turns_groups,
};
