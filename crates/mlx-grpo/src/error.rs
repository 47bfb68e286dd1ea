//! The crate's error type.
//!
//! Every variant carries the data a user needs to fix the problem: the file and
//! line of a bad dataset row, the config field and the value it had, the name of
//! the reward function that misbehaved.

use std::path::PathBuf;

/// Errors returned by this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An array operation failed.
    #[error(transparent)]
    Tensor(#[from] mlx_tensor::Error),
    /// A module, autograd or optimizer operation failed.
    #[error(transparent)]
    Nn(#[from] mlx_nn::Error),
    /// A model, tokenizer or generation operation failed.
    #[error(transparent)]
    Lm(#[from] mlx_lm::Error),
    /// A broken internal invariant: a bug in this crate, not a problem with
    /// the input. Please report it with the message.
    #[error("internal error (a bug, please report it): {message}")]
    Internal {
        /// What did not hold.
        message: String,
    },
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A config file does not parse, or holds a value of the wrong type or an
    /// unknown field.
    #[error("cannot parse {format} config {path}: {message}")]
    ConfigParse {
        /// The config file.
        path: PathBuf,
        /// `"TOML"` or `"JSON"`.
        format: &'static str,
        /// What the parser reported.
        message: String,
    },

    /// A config file has an extension other than `.toml` or `.json`.
    #[error("config file {path} must end in .toml or .json")]
    UnsupportedConfigFormat {
        /// The config file.
        path: PathBuf,
    },

    /// `GrpoConfig::set` was given a key that is not a config field.
    #[error("unknown config key `{key}`")]
    UnknownConfigKey {
        /// The key as given.
        key: String,
    },

    /// `GrpoConfig::set` was given a value that does not fit the field.
    #[error("invalid value `{value}` for config key `{key}`: {reason}")]
    InvalidConfigValue {
        /// The field name.
        key: String,
        /// The value as given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The config is self-inconsistent or a value is out of range; the message
    /// names the fields and their values.
    #[error("invalid GRPO config: {message}")]
    InvalidConfig {
        /// What is wrong, naming the fields and values.
        message: String,
    },

    /// A dataset row could not be parsed.
    #[error("{source_name}:{line}: {message}")]
    DatasetRow {
        /// The dataset file (or the name given to an in-memory source).
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the row.
        message: String,
    },

    /// A dataset holds no rows.
    #[error("dataset {source_name} is empty")]
    EmptyDataset {
        /// The dataset file (or the name given to an in-memory source).
        source_name: String,
    },

    /// A dataset has fewer prompts than one generation batch needs, so a
    /// sampler would never yield a batch.
    #[error(
        "dataset has {rows} prompts but one generation batch needs {prompts_per_batch} distinct prompts \
         (generation_batch_size / num_generations)"
    )]
    DatasetTooSmall {
        /// Rows in the dataset.
        rows: usize,
        /// Distinct prompts per generation batch.
        prompts_per_batch: usize,
    },

    /// A sampler position does not fit the dataset it is resumed on.
    #[error(
        "cannot resume at epoch {epoch}, batch {index}: an epoch has only {batches_per_epoch} batches"
    )]
    InvalidSamplerPosition {
        /// Epoch of the position.
        epoch: u64,
        /// Batch index of the position.
        index: usize,
        /// Generation batches in one epoch.
        batches_per_epoch: usize,
    },

    /// A reward function (or a built-in reward's constructor) was given invalid
    /// parameters.
    #[error("invalid parameters for reward `{name}`: {message}")]
    InvalidRewardParams {
        /// The reward's name.
        name: String,
        /// What is wrong.
        message: String,
    },

    /// A reward function returned an error.
    #[error("reward function `{name}` failed: {message}")]
    RewardFailed {
        /// The reward function.
        name: String,
        /// The error it returned.
        message: String,
    },

    /// A reward function panicked.
    #[error("reward function `{name}` panicked: {message}")]
    RewardPanicked {
        /// The reward function.
        name: String,
        /// The panic message.
        message: String,
    },

    /// A reward function returned the wrong number of rewards.
    #[error("reward function `{name}` returned {got} rewards for {expected} completions")]
    RewardCountMismatch {
        /// The reward function.
        name: String,
        /// Completions scored (one reward each was expected).
        expected: usize,
        /// Rewards returned.
        got: usize,
    },

    /// A reward function returned an infinite reward (NaN is allowed and means
    /// "not applicable").
    #[error(
        "reward function `{name}` returned {value} for completion {index}; rewards must be finite or NaN"
    )]
    NonFiniteReward {
        /// The reward function.
        name: String,
        /// The completion's index in the batch.
        index: usize,
        /// The offending value.
        value: f32,
    },

    /// Two reward functions share a name, which would merge their metrics.
    #[error("two reward functions are named `{name}`; reward names must be unique")]
    DuplicateRewardName {
        /// The repeated name.
        name: String,
    },

    /// The number of reward weights differs from the number of reward functions.
    #[error(
        "number of reward weights ({weights}) must match number of reward functions ({functions})"
    )]
    RewardWeightCount {
        /// Weights given.
        weights: usize,
        /// Reward functions.
        functions: usize,
    },

    /// A reward matrix has the wrong shape for the requested computation.
    #[error("reward matrix shape mismatch: {message}")]
    RewardShape {
        /// What does not fit.
        message: String,
    },

    /// Every reward function returned NaN for every completion of a batch, so
    /// there is no learning signal at all.
    #[error(
        "every reward function returned NaN (not applicable) for all {completions} completions of the batch"
    )]
    NoScorableCompletions {
        /// Completions in the batch.
        completions: usize,
    },

    /// An input of the GRPO loss has a shape that does not fit the others.
    #[error("GRPO loss input `{input}` has shape {shape:?}; expected {expected}")]
    LossInputShape {
        /// The input, as named in `LossInputs`.
        input: &'static str,
        /// Its shape.
        shape: Vec<i32>,
        /// The shape it must have, with the input that fixes it.
        expected: String,
    },

    /// An input of the GRPO loss is unusable for a reason other than its
    /// shape (a non-float dtype, a negative token count).
    #[error("GRPO loss input `{input}` is invalid: {reason}")]
    InvalidLossInput {
        /// The input, as named in `LossInputs`.
        input: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// The loss configuration needs an input that was not given.
    #[error("GRPO loss input `{input}` is required: {reason}")]
    MissingLossInput {
        /// The input, as named in `LossInputs`.
        input: &'static str,
        /// The setting that needs it.
        reason: String,
    },

    /// An advantage given to the loss is NaN or infinite. Advantages from
    /// `advantages::compute_advantages` are always finite (TRL turns NaN
    /// advantages into 0 there); one reaching the loss would make it NaN.
    #[error("advantage {index} is {value}; the GRPO loss needs finite advantages")]
    NonFiniteAdvantage {
        /// Position of the advantage in the micro-batch (row-major).
        index: usize,
        /// The value.
        value: f32,
    },

    /// The outputs handed to `LossOutput::from_outputs` do not match the
    /// layout they were produced with.
    #[error("loss outputs do not match their layout: {message}")]
    LossOutputLayout {
        /// What does not match.
        message: String,
    },

    /// A checkpoint file holds a value that cannot be resumed from.
    #[error("checkpoint file {path}: field `{field}`: {message}")]
    InvalidCheckpoint {
        /// The file that holds the value.
        path: PathBuf,
        /// The field (or tensor) that is wrong.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// A tool cannot be offered as given (no name, a name used twice).
    #[error("tool `{name}`: {message}")]
    InvalidTool {
        /// The tool's name.
        name: String,
        /// What is wrong.
        message: String,
    },

    /// The chat template cannot append tool results to a conversation: its
    /// rendering with them does not extend its rendering without them.
    #[error("chat template with tool results: {message}")]
    ToolTemplate {
        /// What the renderings were.
        message: String,
    },

    /// A rollout's environment could not be reset for its dataset row.
    #[error("environment of dataset row {row}: {message}")]
    EnvironmentReset {
        /// The dataset row.
        row: usize,
        /// What the environment reported.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// [`Error::Internal`] with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A bad `field` in the checkpoint file `path`.
    pub fn checkpoint(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::InvalidCheckpoint {
            path: path.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}
