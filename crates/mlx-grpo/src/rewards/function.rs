//! The [`RewardFunction`] trait and its adapters for closures.

use crate::error::Result;

use super::types::RewardInput;

/// Scores a batch of completions.
///
/// Returns one reward per input, in order. `f32::NAN` means "not applicable
/// to this completion" (TRL's `None`): it is left out of that function's
/// statistics and of the weighted sum. Infinite rewards are rejected by
/// [`RewardSet`](super::RewardSet).
///
/// Implemented for any `Fn(&[RewardInput]) -> Result<Vec<f32>> + Send + Sync`
/// (named after the function item, or `"closure"`), and through [`reward_fn`]
/// and [`per_sample`] for closures that need a name.
pub trait RewardFunction: Send + Sync {
    /// The name used in metrics (`rewards/<name>/mean`) and error messages.
    fn name(&self) -> &str;

    /// One reward per input.
    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<f32>>;
}

impl<F> RewardFunction for F
where
    F: Fn(&[RewardInput]) -> Result<Vec<f32>> + Send + Sync,
{
    fn name(&self) -> &str {
        short_type_name(std::any::type_name::<F>())
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<f32>> {
        self(inputs)
    }
}

/// The last path segment of a type name, without generic arguments; closures
/// are all called `"closure"`.
fn short_type_name(full: &'static str) -> &'static str {
    if full.contains("{{closure}}") {
        return "closure";
    }
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// A named batch reward built from a closure.
pub struct FnReward<F> {
    name: String,
    func: F,
}

/// Names a batch-scoring closure.
///
/// ```
/// use mlx_grpo::rewards::{reward_fn, RewardFunction};
///
/// let shortness = reward_fn("shortness", |inputs| {
///     Ok(inputs.iter().map(|x| -(x.completion.num_tokens as f32) / 100.0).collect())
/// });
/// assert_eq!(shortness.name(), "shortness");
/// ```
pub fn reward_fn<F>(name: impl Into<String>, func: F) -> FnReward<F>
where
    F: Fn(&[RewardInput]) -> Result<Vec<f32>> + Send + Sync,
{
    FnReward {
        name: name.into(),
        func,
    }
}

impl<F> RewardFunction for FnReward<F>
where
    F: Fn(&[RewardInput]) -> Result<Vec<f32>> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<f32>> {
        (self.func)(inputs)
    }
}

/// A named reward computed one completion at a time.
pub struct PerSample<F> {
    name: String,
    func: F,
}

/// Names a closure that scores a single completion.
///
/// ```
/// use mlx_grpo::rewards::{per_sample, RewardFunction};
///
/// let mentions_answer = per_sample("mentions_answer", |x| match &x.answer {
///     Some(a) => f32::from(u8::from(x.completion.text.contains(a.as_str()))),
///     None => f32::NAN,
/// });
/// assert_eq!(mentions_answer.name(), "mentions_answer");
/// ```
pub fn per_sample<F>(name: impl Into<String>, func: F) -> PerSample<F>
where
    F: Fn(&RewardInput) -> f32 + Send + Sync,
{
    PerSample {
        name: name.into(),
        func,
    }
}

impl<F> RewardFunction for PerSample<F>
where
    F: Fn(&RewardInput) -> f32 + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<f32>> {
        Ok(inputs.iter().map(&self.func).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant_one(inputs: &[RewardInput]) -> Result<Vec<f32>> {
        Ok(vec![1.0; inputs.len()])
    }

    #[test]
    fn names() {
        assert_eq!(RewardFunction::name(&constant_one), "constant_one");
        let closure = |inputs: &[RewardInput]| Ok(vec![0.0; inputs.len()]);
        assert_eq!(RewardFunction::name(&closure), "closure");
        assert_eq!(short_type_name("a::b::c<d::e>"), "c");
    }
}
