//! Sampling: logits processors, the sampling chain and its random keys.
//!
//! The semantics are mlx-lm's (`sample_utils.py`), number for number:
//!
//! 1. [`LogitsProcessorConfig::apply`] turns raw logits into processed
//!    logits: logit bias, then the repetition, presence and frequency
//!    penalties over the last tokens of the sequence.
//! 2. [`logprobs`] normalises them: `logits - logsumexp(logits)`.
//! 3. [`SamplerConfig::sample`] picks a token: argmax at temperature 0,
//!    otherwise top-p → min-p → XTC → top-k on the log-probabilities and a
//!    categorical draw from `softmax(logprobs / temperature)`.
//!
//! Random draws take keys from a [`RandomState`]. With
//! [`RandomState::from_seed`]`(s)` (or [`RandomState::Global`] after
//! [`mlx_tensor::random::seed`]`(s)` on the sampling thread), the same
//! logits and settings give the same tokens as mlx-lm after
//! `mx.random.seed(s)`, as long as the draws happen in the same order.
//! [`RandomState::PerRow`] gives every batch row its own key sequence
//! instead, so that a row's tokens do not depend on the rest of its batch.
//!
//! ```no_run
//! use mlx_tensor::Array;
//! use mlx_lm::sample::{logprobs, RandomState, SamplerConfig};
//! # fn main() -> mlx_lm::Result<()> {
//! let logits = Array::from_slice(&[0.5f32, 2.0, -1.0, 1.0], &[1, 4])?;
//! let cfg = SamplerConfig { temperature: 0.7, top_p: 0.9, ..SamplerConfig::default() };
//! let mut rng = RandomState::from_seed(0)?;
//! let token: Vec<u32> = cfg.sample(&logprobs(&logits)?, &mut rng)?.to_vec()?;
//! # let _ = token; Ok(()) }
//! ```

mod filters;
mod processors;
mod rng;
mod sampler;

pub use filters::{
    apply_min_p, apply_top_k, apply_top_p, apply_xtc, apply_xtc_rows, categorical_sampling,
    categorical_sampling_rows, greedy,
};
pub use processors::{DEFAULT_CONTEXT_SIZE, LogitsProcessorConfig, TokenHistory};
pub use rng::{RandomState, SampleKey};
pub use sampler::{DEFAULT_XTC_THRESHOLD, SamplerConfig, sample_rows};

use mlx_tensor::Array;

use crate::error::Result;

/// Log-probabilities from logits `[B, V]`: `logits - logsumexp(logits)` over
/// the last axis, in the logits' dtype.
pub fn logprobs(logits: &Array) -> Result<Array> {
    Ok(logits.subtract(&logits.logsumexp(-1, true)?)?)
}
