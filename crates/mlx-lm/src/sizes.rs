//! Checked conversions of user-sized counts into the 32-bit sizes that
//! array shapes and positions use.

use crate::{Error, Result};

/// `n` as a 32-bit shape entry or position; [`Error::TooLarge`] naming
/// `setting` when it does not fit.
pub(crate) fn dim(n: usize, setting: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| too_large(setting, n))
}

/// The sum of `counts` as a 32-bit position count; [`Error::TooLarge`]
/// naming `setting` (the count that makes it overflow) otherwise.
pub(crate) fn total_positions(counts: &[usize], setting: &str) -> Result<i32> {
    let total = counts
        .iter()
        .try_fold(0usize, |acc, &n| acc.checked_add(n))
        .ok_or_else(|| too_large(setting, counts.last().copied().unwrap_or(0)))?;
    i32::try_from(total).map_err(|_| Error::TooLarge {
        setting: setting.into(),
        value: counts.last().copied().unwrap_or(0).to_string(),
        message: format!(
            "{} positions in all ({counts:?} summed) exceed the {} a 32-bit position holds",
            total,
            i32::MAX
        ),
    })
}

fn too_large(setting: &str, n: usize) -> Error {
    Error::TooLarge {
        setting: setting.into(),
        value: n.to_string(),
        message: format!("exceeds the {} a 32-bit shape or position holds", i32::MAX),
    }
}
