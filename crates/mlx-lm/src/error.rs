//! The error type of `mlx-lm`.

use std::path::PathBuf;

/// Everything that can go wrong while loading or using a tokenizer or a chat
/// template.
///
/// Variants name the file or the template involved so that a message read in a
/// log says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An array operation failed.
    #[error(transparent)]
    Tensor(#[from] mlx_tensor::Error),

    /// A module or parameter operation failed.
    #[error(transparent)]
    Nn(#[from] mlx_nn::Error),

    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A required file is not in the model directory.
    #[error("{path} not found ({what})")]
    MissingFile {
        /// The path that was expected.
        path: PathBuf,
        /// What the file is needed for.
        what: &'static str,
    },

    /// A JSON file is not valid JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The file that failed to parse.
        path: PathBuf,
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },

    /// A field of a configuration file has an unexpected type or value.
    #[error("{path}: field `{field}` is invalid: {message}")]
    InvalidConfig {
        /// The configuration file.
        path: PathBuf,
        /// The field name (dotted for nested fields).
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// A special token named in a configuration is not in the vocabulary.
    #[error("{origin}: special token `{field}` = {token:?} is not in the vocabulary")]
    UnknownSpecialToken {
        /// Where the token was named (a file path or `"builder"`).
        origin: String,
        /// The field that names it (`eos_token`, `pad_token`, ...).
        field: String,
        /// The token text.
        token: String,
    },

    /// A `tokenizer.json` file could not be loaded.
    #[error("{path} is not a usable tokenizer definition: {message}")]
    InvalidTokenizerFile {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },

    /// The `tokenizers` library reported an error.
    #[error("tokenizer {op} failed: {message}")]
    Tokenizer {
        /// The operation (`load`, `encode`, `decode`, `save`, `build`).
        op: &'static str,
        /// The library's message.
        message: String,
    },

    /// A vocabulary given to the tokenizer builder is unusable.
    #[error("invalid vocabulary: {message}")]
    InvalidVocabulary {
        /// What is wrong with it.
        message: String,
    },

    /// No chat template is available for this tokenizer.
    #[error("no chat template: {message}")]
    NoChatTemplate {
        /// Where templates were looked for.
        message: String,
    },

    /// A named chat template was asked for but does not exist.
    #[error("chat template `{name}` not found; available: {available:?}")]
    ChatTemplateNotFound {
        /// The requested name.
        name: String,
        /// The names that exist.
        available: Vec<String>,
    },

    /// A chat template failed to compile.
    #[error("chat template `{name}` does not compile: {message}")]
    TemplateSyntax {
        /// The template's name.
        name: String,
        /// The engine's message, with the line.
        message: String,
    },

    /// A chat template failed while rendering.
    #[error("chat template `{name}` failed to render: {message}")]
    TemplateRender {
        /// The template's name.
        name: String,
        /// The engine's message, with the line.
        message: String,
    },

    /// The template itself rejected the input through `raise_exception(msg)`.
    #[error("chat template `{name}` raised: {message}")]
    TemplateRaised {
        /// The template's name.
        name: String,
        /// The message the template gave.
        message: String,
    },

    /// The messages or options given to a chat template are unusable.
    #[error("invalid chat input: {message}")]
    InvalidChatInput {
        /// What is wrong.
        message: String,
    },

    /// A key/value cache was used in a way it does not support.
    #[error("invalid cache use: {message}")]
    InvalidCache {
        /// What is wrong.
        message: String,
    },

    /// A model configuration asks for something unsupported or is inconsistent.
    #[error("model config field `{field}`: {message}")]
    ModelConfig {
        /// The field (dotted for nested fields).
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// Inputs given to a model or a scoring function are unusable.
    #[error("invalid model input: {message}")]
    InvalidInput {
        /// What is wrong.
        message: String,
    },

    /// A checkpoint directory does not fit its configuration; every problem
    /// found is listed, each naming its file and key.
    #[error("checkpoint {dir} has {} problem(s):\n{}", problems.len(), crate::loader::problem::list(problems))]
    InvalidCheckpoint {
        /// The model directory.
        dir: PathBuf,
        /// Everything that is wrong.
        problems: Vec<crate::loader::CheckpointProblem>,
    },

    /// A prompt-cache file could not be written or read back.
    #[error("prompt cache {path}: {message}")]
    PromptCache {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A sampling or logits-processing setting is out of range.
    #[error("invalid sampling setting `{parameter}`: {message}")]
    InvalidSampling {
        /// The setting's name (as mlx-lm's `make_sampler` and
        /// `make_logits_processors` call it).
        parameter: &'static str,
        /// What is wrong with its value.
        message: String,
    },

    /// A token id is not a row of the model's embedding table (it would be
    /// read out of bounds).
    #[error(
        "token id {id} in {location} is out of range: the model's vocabulary has {vocab_size} ids (0..{vocab_size})"
    )]
    TokenOutOfRange {
        /// Where the id was given (`prompt 0, position 3`, `tokens`, ...).
        location: String,
        /// The offending id (negative ids of signed arrays included).
        id: i64,
        /// Rows of the model's embedding table.
        vocab_size: i64,
    },

    /// A tokenizer produces ids that the model has no embedding for.
    #[error(
        "the tokenizer has ids up to {max_token_id} ({tokenizer_ids} ids) but the model's vocab_size is {vocab_size}"
    )]
    TokenizerDoesNotFit {
        /// The tokenizer's largest id.
        max_token_id: u32,
        /// Number of ids the tokenizer has, added tokens included.
        tokenizer_ids: usize,
        /// Rows of the model's embedding table.
        vocab_size: i64,
    },

    /// A size or count is too large for the integer arithmetic that uses it
    /// (positions and shapes are 32-bit; byte counts must fit in memory).
    #[error("`{setting}` = {value} is too large: {message}")]
    TooLarge {
        /// The setting or input that is too large.
        setting: String,
        /// Its value.
        value: String,
        /// Which limit it exceeds.
        message: String,
    },

    /// Generation options or inputs are unusable.
    #[error("invalid generation request: {message}")]
    InvalidGeneration {
        /// What is wrong.
        message: String,
    },
}

/// Result type of this crate's fallible functions.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an error of the `tokenizers` library.
    pub(crate) fn tokenizer(op: &'static str, err: impl std::fmt::Display) -> Self {
        Error::Tokenizer {
            op,
            message: err.to_string(),
        }
    }
}

/// Lets closures given to `mlx_nn::value_and_grad` (losses built from
/// models and scores of this crate) use `?` on this crate's results: array
/// and module errors keep their type, anything else becomes
/// [`mlx_nn::Error::Closure`] with its message.
impl From<Error> for mlx_nn::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Tensor(e) => mlx_nn::Error::Tensor(e),
            Error::Nn(e) => e,
            other => mlx_nn::Error::Closure(other.to_string()),
        }
    }
}
