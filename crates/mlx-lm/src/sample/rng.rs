//! Where samplers take their random keys from.

use mlx_tensor::{Array, concatenate, random};

use crate::error::{Error, Result};

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
///
/// [`RandomState::PerRow`] keeps one such sequence per batch row instead:
/// every draw splits each row's state on its own (batched with `vmap`) and
/// row `r` draws with its own subkey, so what a row samples depends only
/// on its own starting key and on how many draws it has made (one per
/// decoding step, two with XTC), never on which other rows share its
/// batch. Batch generation keeps the states aligned with the rows as rows
/// finish ([`RandomState::keep_rows`]) or leave and rejoin
/// ([`RandomState::row`], [`RandomState::push_row`]). Per-row draws are
/// MLX's draws of each row's own key (its Gumbel noise is `gumbel([V])`
/// with the row's subkey), not those of a one-key sampler on a one-row
/// batch, so they do not reproduce mlx-lm's seeded sampling.
#[derive(Debug, Clone)]
pub enum RandomState {
    /// MLX's global per-thread key sequence (what `mx.random.*` calls without
    /// a key use); seed it with [`mlx_tensor::random::seed`] on the thread
    /// that samples.
    Global,
    /// An explicit key sequence; the array is the current state (`u32[2]`).
    Keyed(Array),
    /// One explicit key sequence per batch row; the array holds the rows'
    /// current states (`u32[B, 2]`, row `r` the state of batch row `r`).
    PerRow(Array),
}

/// The key of one draw, as [`RandomState::next_sample_key`] hands it out.
#[derive(Debug, Clone)]
pub enum SampleKey {
    /// One key for the whole batch (`None`: MLX's global sequence).
    Shared(Option<Array>),
    /// One key per row (`u32[B, 2]`).
    Rows(Array),
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

    /// One key sequence per row, row `r` starting at `keys[r]` (`keys`:
    /// `u32[B, 2]`, `B >= 1`).
    pub fn per_row(keys: Array) -> Result<Self> {
        random::key_rows("RandomState::per_row", &keys)?;
        Ok(RandomState::PerRow(keys))
    }

    /// One key sequence per row, row `r` starting at `key(seeds[r])`: row
    /// `r` draws what a one-row batch draws with
    /// `RandomState::per_row_from_seeds(&[seeds[r]])`.
    pub fn per_row_from_seeds(seeds: &[u64]) -> Result<Self> {
        if seeds.is_empty() {
            return Err(Error::InvalidSampling {
                parameter: "keys",
                message: "per-row keys for no rows".into(),
            });
        }
        let keys = seeds
            .iter()
            .map(|&s| Ok(random::key(s)?.reshape(&[1, 2])?))
            .collect::<Result<Vec<Array>>>()?;
        let refs: Vec<&Array> = keys.iter().collect();
        Ok(RandomState::PerRow(concatenate(&refs, 0)?))
    }

    /// The key for the next draw: `None` for the global sequence (MLX takes
    /// the next global key itself), otherwise a fresh subkey. Per-row
    /// states have no single key: [`Error::InvalidSampling`] (use
    /// [`RandomState::next_sample_key`]).
    pub fn next_key(&mut self) -> Result<Option<Array>> {
        match self.next_sample_key()? {
            SampleKey::Shared(key) => Ok(key),
            SampleKey::Rows(_) => Err(Error::InvalidSampling {
                parameter: "keys",
                message: "per-row keys give one key per row, not one for the batch".into(),
            }),
        }
    }

    /// The key(s) for the next draw: [`RandomState::next_key`]'s key for a
    /// shared sequence, a fresh subkey per row for per-row states.
    pub fn next_sample_key(&mut self) -> Result<SampleKey> {
        match self {
            RandomState::Global => Ok(SampleKey::Shared(None)),
            RandomState::Keyed(state) => {
                let (next, sub) = random::split2(state)?;
                *state = next;
                Ok(SampleKey::Shared(Some(sub)))
            }
            RandomState::PerRow(states) => {
                let (next, sub) = random::split2_rows(states)?;
                *states = next;
                Ok(SampleKey::Rows(sub))
            }
        }
    }

    /// The number of rows of per-row states (`None` for a shared sequence).
    pub fn rows(&self) -> Result<Option<usize>> {
        match self {
            RandomState::PerRow(states) => {
                let n = states.axis_size(0)?;
                Ok(Some(usize::try_from(n).unwrap_or(0)))
            }
            _ => Ok(None),
        }
    }

    /// Keeps the per-row states of `rows` (in that order), as a batch keeps
    /// those rows; nothing for a shared sequence.
    pub fn keep_rows(&mut self, rows: &[usize]) -> Result<()> {
        if let RandomState::PerRow(states) = self {
            let have = usize::try_from(states.axis_size(0)?).unwrap_or(0);
            if let Some(&r) = rows.iter().find(|&&r| r >= have) {
                return Err(Error::InvalidSampling {
                    parameter: "rows",
                    message: format!("row {r} of {have} per-row keys"),
                });
            }
            let index = rows
                .iter()
                .map(|&r| {
                    u32::try_from(r).map_err(|_| Error::InvalidSampling {
                        parameter: "rows",
                        message: format!("row {r} does not fit a 32-bit index"),
                    })
                })
                .collect::<Result<Vec<u32>>>()?;
            let n = i32::try_from(index.len()).map_err(|_| Error::InvalidSampling {
                parameter: "rows",
                message: format!("{} rows do not fit a 32-bit shape", index.len()),
            })?;
            *states = states.take(&Array::from_slice(&index, &[n])?, Some(0))?;
        }
        Ok(())
    }

    /// Row `row`'s state (`u32[1, 2]`) for per-row states, `None` for a
    /// shared sequence.
    pub fn row(&self, row: usize) -> Result<Option<Array>> {
        match self {
            RandomState::PerRow(states) => {
                let r = i32::try_from(row).map_err(|_| Error::InvalidSampling {
                    parameter: "rows",
                    message: format!("row {row} does not fit a 32-bit index"),
                })?;
                let rows = states.axis_size(0)?;
                if r >= rows {
                    return Err(Error::InvalidSampling {
                        parameter: "rows",
                        message: format!("row {row} of {rows} per-row keys"),
                    });
                }
                Ok(Some(states.slice_axis(0, r, Some(r + 1), 1)?))
            }
            _ => Ok(None),
        }
    }

    /// Appends a row's state (`u32[1, 2]`, from [`RandomState::row`]) as the
    /// last row of per-row states; nothing for a shared sequence.
    pub fn push_row(&mut self, state: &Array) -> Result<()> {
        if let RandomState::PerRow(states) = self {
            if random::key_rows("RandomState::push_row", state)? != 1 {
                return Err(Error::InvalidSampling {
                    parameter: "keys",
                    message: format!("push_row takes one row's key, got {}", state.shape()),
                });
            }
            *states = if states.axis_size(0)? == 0 {
                state.clone()
            } else {
                concatenate(&[&*states, state], 0)?
            };
        }
        Ok(())
    }

    /// The arrays to evaluate together with a step so that the key state
    /// never grows into a long lazy chain.
    pub fn pending(&self) -> Option<&Array> {
        match self {
            RandomState::Global => None,
            RandomState::Keyed(state) | RandomState::PerRow(state) => Some(state),
        }
    }
}
