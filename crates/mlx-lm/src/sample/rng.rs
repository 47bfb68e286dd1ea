//! Where samplers take their random keys from.

use mlx_tensor::{Array, random};

use crate::error::Result;

/// A sequence of random keys for the samplers.
///
/// Every random draw of a sampler (the uniform draw of XTC, the Gumbel noise
/// of categorical sampling) takes the next key of the sequence. Drawing a
/// key splits the current state in two: the first half becomes the new
/// state, the second half is used for the draw. This is how MLX's global
/// key sequence works, so [`RandomState::from_seed`]`(s)` yields exactly the
/// keys that the global sequence yields after `mx.random.seed(s)` in Python
/// (or [`mlx_tensor::random::seed`] in Rust), while staying independent of
/// the thread and of any other code drawing random numbers.
#[derive(Debug, Clone)]
pub enum RandomState {
    /// MLX's global per-thread key sequence (what `mx.random.*` calls without
    /// a key use); seed it with [`mlx_tensor::random::seed`] on the thread
    /// that samples.
    Global,
    /// An explicit key sequence; the array is the current state (`u32[2]`).
    Keyed(Array),
}

impl RandomState {
    /// MLX's global per-thread key sequence.
    pub fn global() -> Self {
        RandomState::Global
    }

    /// An explicit key sequence starting at `key(seed)`: the same keys as
    /// MLX's global sequence after `seed(seed)`.
    pub fn from_seed(seed: u64) -> Result<Self> {
        Ok(RandomState::Keyed(random::key(seed)?))
    }

    /// An explicit key sequence starting at `key` (`u32[2]`).
    pub fn from_key(key: Array) -> Self {
        RandomState::Keyed(key)
    }

    /// The key for the next draw: `None` for the global sequence (MLX takes
    /// the next global key itself), otherwise a fresh subkey.
    pub fn next_key(&mut self) -> Result<Option<Array>> {
        match self {
            RandomState::Global => Ok(None),
            RandomState::Keyed(state) => {
                let (next, sub) = random::split2(state)?;
                *state = next;
                Ok(Some(sub))
            }
        }
    }

    /// The arrays to evaluate together with a step so that the key state
    /// never grows into a long lazy chain.
    pub fn pending(&self) -> Option<&Array> {
        match self {
            RandomState::Global => None,
            RandomState::Keyed(state) => Some(state),
        }
    }
}
