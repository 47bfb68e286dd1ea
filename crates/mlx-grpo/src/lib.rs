//! Host-side pieces of GRPO training with the semantics of TRL 1.16: the
//! training configuration, prompt datasets and their samplers, reward
//! functions, and group-relative advantages with their metrics.
//!
//! Nothing here touches device arrays: these are the small, exact, CPU-side
//! computations around the model. The flow of one generation batch is:
//!
//! 1. [`dataset::GenerationSampler`] picks `prompts_per_generation` prompts;
//!    each is sampled `num_generations` times.
//! 2. The completions, parsed into [`rewards::RewardInput`]s, are scored by a
//!    [`rewards::RewardSet`] into a [`rewards::RewardMatrix`].
//! 3. [`advantages::compute_advantages`] turns the matrix into one advantage
//!    per completion, plus TRL's reward metrics.
//!
//! ```
//! use mlx_grpo::advantages::{compute_advantages, AdvantageSettings};
//! use mlx_grpo::config::GrpoConfig;
//! use mlx_grpo::rewards::{AccuracyReward, Completion, FinishReason, RewardInput, RewardSet};
//!
//! let mut cfg = GrpoConfig::default();
//! cfg.set("num_generations", "2")?;
//! cfg.set("per_device_train_batch_size", "2")?;
//! cfg.validate()?;
//!
//! let mut rewards = RewardSet::new();
//! rewards.add(AccuracyReward::default())?;
//! let inputs: Vec<RewardInput> = ["\\boxed{4}", "5"]
//!     .iter()
//!     .map(|text| RewardInput::new("2+2?", Completion::from_text(*text, 3, FinishReason::Stop), Some("4")))
//!     .collect();
//! let matrix = rewards.score(&inputs)?;
//! let out = compute_advantages(&matrix, &rewards.weights(), &AdvantageSettings::from_config(&cfg))?;
//! assert!(out.advantages[0] > 0.0 && out.advantages[1] < 0.0);
//! assert_eq!(out.metrics.to_map()["rewards/accuracy_reward/mean"], 0.5);
//! # Ok::<(), mlx_grpo::Error>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod advantages;
pub mod config;
pub mod dataset;
pub mod error;
pub mod loss;
pub mod rewards;
pub mod tools;
pub mod trainer;

/// What a GRPO training program usually needs, in one import.
pub mod prelude {
    pub use crate::config::GrpoConfig;
    pub use crate::dataset::{Dataset, Prompt, Row};
    pub use crate::rewards::{
        AccuracyReward, Completion, FinishReason, FormatReward, RewardFunction, RewardInput,
        RewardSet,
    };
    pub use crate::trainer::{TrainOutput, Trainer, TrainerCallback};
    pub use crate::{Error, Result};
    pub use mlx_lm::loader::load_model;
    pub use mlx_lm::models::Model;
    pub use mlx_lm::{LanguageModel, Tokenizer};
    pub use mlx_tensor::{Array, Dtype};
}

pub use error::{Error, Result};
