//! N-gram repetition penalty.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::rewards::{RewardFunction, RewardInput};

/// Penalises repeated n-grams, with TRL's `get_repetition_penalty_reward`
/// formula: `(1 - unique n-grams / total n-grams) * max_penalty`, and 0 for
/// completions shorter than `ngram_size`.
///
/// TRL counts n-grams of token ids; this counts n-grams of the
/// whitespace-separated words of the completion text, which needs no
/// tokenizer and gives the same value whenever words and tokens coincide.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepetitionPenalty {
    ngram_size: usize,
    max_penalty: f32,
}

impl RepetitionPenalty {
    /// A penalty over `ngram_size`-grams (>= 1), reaching `max_penalty` (<= 0,
    /// finite) for a fully repetitive text.
    pub fn new(ngram_size: usize, max_penalty: f32) -> Result<Self> {
        let invalid = |message: String| Error::InvalidRewardParams {
            name: "repetition_penalty_reward".into(),
            message,
        };
        if ngram_size == 0 {
            return Err(invalid("ngram_size must be at least 1".into()));
        }
        if !(max_penalty.is_finite() && max_penalty <= 0.0) {
            return Err(invalid(format!(
                "max_penalty = {max_penalty} must be finite and not positive"
            )));
        }
        Ok(Self {
            ngram_size,
            max_penalty,
        })
    }

    /// The penalty of a sequence of items.
    pub fn penalty<T: std::hash::Hash + Eq>(&self, items: &[T]) -> f32 {
        if items.len() < self.ngram_size {
            return 0.0;
        }
        let ngrams: Vec<&[T]> = items.windows(self.ngram_size).collect();
        let unique: HashSet<&[T]> = ngrams.iter().copied().collect();
        let scaling = 1.0 - unique.len() as f64 / ngrams.len() as f64;
        if scaling == 0.0 {
            0.0
        } else {
            (scaling * f64::from(self.max_penalty)) as f32
        }
    }
}

impl Default for RepetitionPenalty {
    /// TRL's defaults: trigrams, `max_penalty = -1`.
    fn default() -> Self {
        Self {
            ngram_size: 3,
            max_penalty: -1.0,
        }
    }
}

impl RewardFunction for RepetitionPenalty {
    fn name(&self) -> &str {
        "repetition_penalty_reward"
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<f32>> {
        Ok(inputs
            .iter()
            .map(|x| self.penalty(&x.completion.text.split_whitespace().collect::<Vec<_>>()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::{Completion, FinishReason};

    #[test]
    fn matches_trl_examples() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let p = RepetitionPenalty::new(2, -1.0)?;
        assert_eq!(p.penalty(&[1, 2, 3, 4]), 0.0);
        assert_eq!(p.penalty(&[5, 5, 5, 5, 5]), -0.75);
        assert_eq!(p.penalty(&[1]), 0.0);
        Ok(())
    }

    #[test]
    fn scores_words() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let p = RepetitionPenalty::default();
        let text = "a b c a b c";
        let input = RewardInput::new(
            "q",
            Completion::from_text(text, 6, FinishReason::Stop),
            None,
        );
        // trigrams: abc bca cab abc -> 3 unique of 4
        assert_eq!(p.score(&[input])?, vec![-0.25]);
        Ok(())
    }

    #[test]
    fn rejects_bad_params() {
        assert!(RepetitionPenalty::new(0, -1.0).is_err());
        assert!(RepetitionPenalty::new(3, 0.5).is_err());
        assert!(RepetitionPenalty::new(3, f32::NAN).is_err());
    }
}
