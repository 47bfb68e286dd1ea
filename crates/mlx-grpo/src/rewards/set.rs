//! [`RewardSet`]: several named, weighted reward functions run together.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Error, Result};

use super::function::RewardFunction;
use super::matrix::RewardMatrix;
use super::types::RewardInput;

struct Entry {
    name: String,
    weight: f32,
    func: Box<dyn RewardFunction>,
}

/// Named reward functions with weights.
///
/// [`RewardSet::score`] runs each function on the batch and checks what comes
/// back: a panic, an error, a wrong number of rewards or an infinite reward
/// becomes an [`Error`] that names the function. (A panic still reaches the
/// process's panic hook, which prints it, before it is caught.)
///
/// ```
/// use mlx_grpo::rewards::{per_sample, Completion, FinishReason, RewardInput, RewardSet};
///
/// let mut set = RewardSet::new();
/// set.add(per_sample("length", |x| x.completion.num_tokens as f32))?;
/// set.add_weighted(per_sample("one", |_| 1.0), 0.5)?;
/// let inputs = [RewardInput::new("q", Completion::from_text("a b", 2, FinishReason::Stop), None)];
/// let matrix = set.score(&inputs)?;
/// assert_eq!(matrix.row(0), Some(&[2.0, 1.0][..]));
/// assert_eq!(set.weights(), vec![1.0, 0.5]);
/// # Ok::<(), mlx_grpo::Error>(())
/// ```
#[derive(Default)]
pub struct RewardSet {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for RewardSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|e| (&e.name, e.weight)))
            .finish()
    }
}

impl RewardSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a function with weight 1 under its own name.
    pub fn add(&mut self, func: impl RewardFunction + 'static) -> Result<&mut Self> {
        self.add_weighted(func, 1.0)
    }

    /// Adds a function with a weight under its own name.
    pub fn add_weighted(
        &mut self,
        func: impl RewardFunction + 'static,
        weight: f32,
    ) -> Result<&mut Self> {
        let name = func.name().to_string();
        self.add_named(name, weight, func)
    }

    /// Adds a function under the given name (for closures, or to add the same
    /// function twice with different settings). Names must be unique and
    /// weights finite.
    pub fn add_named(
        &mut self,
        name: impl Into<String>,
        weight: f32,
        func: impl RewardFunction + 'static,
    ) -> Result<&mut Self> {
        let name = name.into();
        if !weight.is_finite() {
            return Err(Error::InvalidRewardParams {
                name,
                message: format!("weight {weight} is not finite"),
            });
        }
        if self.entries.iter().any(|e| e.name == name) {
            return Err(Error::DuplicateRewardName { name });
        }
        self.entries.push(Entry {
            name,
            weight,
            func: Box::new(func),
        });
        Ok(self)
    }

    /// Replaces all weights (e.g. with `GrpoConfig::reward_weights`); there
    /// must be one per function, as TRL requires.
    pub fn set_weights(&mut self, weights: &[f32]) -> Result<()> {
        if weights.len() != self.entries.len() {
            return Err(Error::RewardWeightCount {
                weights: weights.len(),
                functions: self.entries.len(),
            });
        }
        if let Some((entry, w)) = self
            .entries
            .iter()
            .zip(weights)
            .find(|(_, w)| !w.is_finite())
        {
            return Err(Error::InvalidRewardParams {
                name: entry.name.clone(),
                message: format!("weight {w} is not finite"),
            });
        }
        for (entry, &w) in self.entries.iter_mut().zip(weights) {
            entry.weight = w;
        }
        Ok(())
    }

    /// The function names, in order.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    /// The weights, in order.
    pub fn weights(&self) -> Vec<f32> {
        self.entries.iter().map(|e| e.weight).collect()
    }

    /// Number of functions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set has no functions.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs every function, one after the other, and collects the rewards.
    pub fn score(&self, inputs: &[RewardInput]) -> Result<RewardMatrix> {
        let columns = self
            .entries
            .iter()
            .map(|entry| run_checked(entry, inputs))
            .collect::<Result<Vec<_>>>()?;
        self.assemble(&columns)
    }

    /// Runs every function on its own thread (for slow rewards: sandboxes,
    /// judges) and collects the rewards; the same checks as
    /// [`RewardSet::score`], and the first failing function (in order) is
    /// reported.
    pub fn score_parallel(&self, inputs: &[RewardInput]) -> Result<RewardMatrix> {
        let results: Vec<Result<Vec<f32>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .entries
                .iter()
                .map(|entry| scope.spawn(move || run_checked(entry, inputs)))
                .collect();
            handles
                .into_iter()
                .zip(&self.entries)
                .map(|(handle, entry)| {
                    handle.join().unwrap_or_else(|payload| {
                        Err(Error::RewardPanicked {
                            name: entry.name.clone(),
                            message: panic_message(payload.as_ref()),
                        })
                    })
                })
                .collect()
        });
        let columns = results.into_iter().collect::<Result<Vec<_>>>()?;
        self.assemble(&columns)
    }

    fn assemble(&self, columns: &[Vec<f32>]) -> Result<RewardMatrix> {
        if self.entries.is_empty() {
            return Err(Error::RewardShape {
                message: "the reward set has no functions".to_string(),
            });
        }
        // Every column has one reward per input (checked in `run_checked`).
        RewardMatrix::from_columns(self.names(), columns)
    }
}

/// Runs one function with panics caught, and checks count and finiteness.
fn run_checked(entry: &Entry, inputs: &[RewardInput]) -> Result<Vec<f32>> {
    let name = &entry.name;
    let outcome = catch_unwind(AssertUnwindSafe(|| entry.func.score(inputs)));
    let rewards = match outcome {
        Ok(Ok(rewards)) => rewards,
        Ok(Err(e)) => {
            return Err(Error::RewardFailed {
                name: name.clone(),
                message: e.to_string(),
            });
        }
        Err(payload) => {
            return Err(Error::RewardPanicked {
                name: name.clone(),
                message: panic_message(payload.as_ref()),
            });
        }
    };
    if rewards.len() != inputs.len() {
        return Err(Error::RewardCountMismatch {
            name: name.clone(),
            expected: inputs.len(),
            got: rewards.len(),
        });
    }
    if let Some((index, &value)) = rewards.iter().enumerate().find(|(_, v)| v.is_infinite()) {
        return Err(Error::NonFiniteReward {
            name: name.clone(),
            index,
            value,
        });
    }
    Ok(rewards)
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::{Completion, FinishReason, per_sample, reward_fn};

    fn inputs(n: usize) -> Vec<RewardInput> {
        (0..n)
            .map(|i| {
                RewardInput::new(
                    "p",
                    Completion::from_text("x".repeat(i), i, FinishReason::Stop),
                    None,
                )
            })
            .collect()
    }

    #[test]
    fn scores_in_order_and_keeps_nan() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let mut set = RewardSet::new();
        set.add(per_sample("len", |x| x.completion.num_tokens as f32))?;
        set.add(per_sample("na", |_| f32::NAN))?;
        for m in [set.score(&inputs(3))?, set.score_parallel(&inputs(3))?] {
            assert_eq!(m.column(0), Some(vec![0.0, 1.0, 2.0]));
            assert!(m.column(1).ok_or("no column 1")?.iter().all(|v| v.is_nan()));
            assert_eq!(m.unscorable_samples(), Vec::<usize>::new());
        }
        Ok(())
    }

    #[test]
    fn reports_misbehaving_functions_by_name() -> std::result::Result<(), Box<dyn std::error::Error>>
    {
        let mut set = RewardSet::new();
        set.add(reward_fn("short", |_| Ok(vec![1.0])))?;
        let err = set.score(&inputs(2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reward function `short` returned 1 rewards for 2 completions"
        );

        let mut set = RewardSet::new();
        set.add(per_sample("boom", |_| panic!("kaput")))?;
        for err in [
            set.score(&inputs(1)).unwrap_err(),
            set.score_parallel(&inputs(1)).unwrap_err(),
        ] {
            assert!(
                matches!(err, Error::RewardPanicked { ref name, ref message } if name == "boom" && message == "kaput")
            );
        }

        let mut set = RewardSet::new();
        set.add(per_sample("inf", |_| f32::INFINITY))?;
        assert!(matches!(
            set.score(&inputs(1)).unwrap_err(),
            Error::NonFiniteReward { index: 0, .. }
        ));

        let mut set = RewardSet::new();
        set.add(reward_fn("fails", |_| {
            Err(Error::RewardShape {
                message: "bad".into(),
            })
        }))?;
        assert!(
            set.score(&inputs(1))
                .unwrap_err()
                .to_string()
                .contains("`fails` failed")
        );

        assert!(RewardSet::new().score(&inputs(1)).is_err());
        Ok(())
    }

    #[test]
    fn names_and_weights_are_checked() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let mut set = RewardSet::new();
        set.add(per_sample("a", |_| 0.0))?;
        assert!(matches!(
            set.add(per_sample("a", |_| 0.0)),
            Err(Error::DuplicateRewardName { .. })
        ));
        assert!(
            set.add_weighted(per_sample("b", |_| 0.0), f32::NAN)
                .is_err()
        );
        assert!(matches!(
            set.set_weights(&[1.0, 2.0]),
            Err(Error::RewardWeightCount {
                weights: 2,
                functions: 1
            })
        ));
        set.set_weights(&[0.25])?;
        assert_eq!(set.weights(), vec![0.25]);
        assert_eq!(format!("{set:?}"), "{\"a\": 0.25}");
        Ok(())
    }
}
