//! DAPO's soft overlong punishment.

use crate::error::{Error, Result};
use crate::rewards::{RewardFunction, RewardInput};

/// Penalises completions that run into the length limit, as TRL's
/// `get_soft_overlong_punishment` (DAPO, eq. 13). With `L = num_tokens`,
/// `L_max = max_completion_len` and `L_cache = soft_punish_cache`:
///
/// - `0` when `L <= L_max - L_cache`,
/// - `(L_max - L_cache - L) / L_cache` when `L_max - L_cache < L <= L_max`
///   (from 0 down to -1),
/// - `-1` when `L > L_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftOverlongPunishment {
    max_completion_len: usize,
    soft_punish_cache: usize,
}

impl SoftOverlongPunishment {
    /// The punishment for `max_completion_len` with a soft zone of the last
    /// `soft_punish_cache` tokens; the zone cannot be longer than the limit.
    pub fn new(max_completion_len: usize, soft_punish_cache: usize) -> Result<Self> {
        if soft_punish_cache > max_completion_len {
            return Err(Error::InvalidRewardParams {
                name: "soft_overlong_punishment_reward".to_string(),
                message: format!(
                    "soft_punish_cache ({soft_punish_cache}) exceeds max_completion_len ({max_completion_len})"
                ),
            });
        }
        Ok(Self {
            max_completion_len,
            soft_punish_cache,
        })
    }

    /// The punishment of a completion of `len` tokens.
    pub fn punishment(&self, len: usize) -> f32 {
        let free = self.max_completion_len - self.soft_punish_cache;
        if len <= free {
            0.0
        } else if len <= self.max_completion_len {
            // Only reached when soft_punish_cache > 0.
            (free as f64 - len as f64) as f32 / self.soft_punish_cache as f32
        } else {
            -1.0
        }
    }
}

impl RewardFunction for SoftOverlongPunishment {
    fn name(&self) -> &str {
        "soft_overlong_punishment_reward"
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<f32>> {
        Ok(inputs
            .iter()
            .map(|x| self.punishment(x.completion.num_tokens))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_trl_formula() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let p = SoftOverlongPunishment::new(100, 20)?;
        assert_eq!(p.punishment(90), -0.5); // TRL's docstring example
        assert_eq!(p.punishment(80), 0.0);
        assert_eq!(p.punishment(81), -0.05);
        assert_eq!(p.punishment(100), -1.0);
        assert_eq!(p.punishment(101), -1.0);
        assert_eq!(p.punishment(0), 0.0);
        Ok(())
    }

    #[test]
    fn zero_cache_is_a_hard_limit() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let p = SoftOverlongPunishment::new(10, 0)?;
        assert_eq!((p.punishment(10), p.punishment(11)), (0.0, -1.0));
        assert!(SoftOverlongPunishment::new(10, 11).is_err());
        Ok(())
    }
}
