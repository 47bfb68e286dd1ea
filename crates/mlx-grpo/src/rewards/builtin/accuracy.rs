//! Answer accuracy.

use crate::error::{Error, Result};
use crate::rewards::answer::answers_match;
use crate::rewards::{RewardFunction, RewardInput};

/// 1 when the completion's final answer matches the row's `answer`, 0 when it
/// does not, NaN when the row has no answer (TRL's accuracy reward returns
/// `None` there too).
///
/// The final answer is the last `\boxed{}`, else the last `<answer>` block,
/// else what follows `####`, else the whole completion text; see
/// [`answers_match`](crate::rewards::answer::answers_match) for the numeric
/// and textual comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct AccuracyReward {
    tolerance: f64,
}

impl AccuracyReward {
    /// Relative tolerance of the numeric comparison used by [`AccuracyReward::default`].
    pub const DEFAULT_TOLERANCE: f64 = 1e-6;

    /// An accuracy reward with relative numeric tolerance `tolerance`
    /// (finite, >= 0).
    pub fn new(tolerance: f64) -> Result<Self> {
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            return Err(Error::InvalidRewardParams {
                name: "accuracy_reward".to_string(),
                message: format!("tolerance = {tolerance} must be finite and >= 0"),
            });
        }
        Ok(Self { tolerance })
    }
}

impl Default for AccuracyReward {
    fn default() -> Self {
        Self {
            tolerance: Self::DEFAULT_TOLERANCE,
        }
    }
}

impl RewardFunction for AccuracyReward {
    fn name(&self) -> &str {
        "accuracy_reward"
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<f32>> {
        Ok(inputs
            .iter()
            .map(|x| match &x.answer {
                Some(gold) => f32::from(u8::from(answers_match(
                    &x.completion.text,
                    gold,
                    self.tolerance,
                ))),
                None => f32::NAN,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::{Completion, FinishReason};

    fn input(text: &str, answer: Option<&str>) -> RewardInput {
        RewardInput::new(
            "q",
            Completion::from_text(text, 3, FinishReason::Stop),
            answer,
        )
    }

    #[test]
    fn scores_correct_wrong_and_missing() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let r = AccuracyReward::default();
        let out = r.score(&[
            input("\\boxed{4}", Some("4")),
            input("it is 5", Some("4")),
            input("4", None),
        ])?;
        assert_eq!(out[..2], [1.0, 0.0]);
        assert!(out[2].is_nan());
        Ok(())
    }

    #[test]
    fn tolerance_is_checked() -> std::result::Result<(), Box<dyn std::error::Error>> {
        assert!(AccuracyReward::new(-1.0).is_err());
        assert!(AccuracyReward::new(f64::NAN).is_err());
        let loose = AccuracyReward::new(0.1)?;
        assert_eq!(
            loose.score(&[input("<answer>4.2</answer>", Some("4"))])?,
            vec![1.0]
        );
        Ok(())
    }
}
