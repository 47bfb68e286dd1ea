//! The error type of `mlx-nn`.

use std::path::PathBuf;

/// Everything that can go wrong in `mlx-nn`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An array operation failed.
    #[error(transparent)]
    Tensor(#[from] mlx_tensor::Error),
    /// A weight source has no tensor of this name.
    #[error("missing tensor `{name}`")]
    MissingTensor {
        /// The full dotted name.
        name: String,
    },
    /// A tensor exists with the wrong shape.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The full dotted name.
        name: String,
        /// The shape the module needs.
        expected: Vec<i32>,
        /// The shape found.
        actual: Vec<i32>,
    },
    /// Loading weights found problems (all of them are listed).
    #[error("{} problem(s) loading weights{}:\n{}", problems.len(), source_name(path), problems.join("\n"))]
    LoadWeights {
        /// The file or directory, when loading from disk.
        path: Option<PathBuf>,
        /// One line per problem: missing, unexpected or mis-shaped keys.
        problems: Vec<String>,
    },
    /// A parameter name that the module does not have.
    #[error("unknown parameter `{name}`")]
    UnknownParameter {
        /// The name.
        name: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A user closure (a loss) failed or panicked.
    #[error("loss closure failed: {0}")]
    Closure(String),
    /// Optimizer state does not match the parameters.
    #[error("optimizer state: {0}")]
    OptimizerState(String),
    /// Saved optimizer state (a file, or tensors and metadata handed to
    /// `load_state_dict`) that does not fit this optimizer or its
    /// parameters: a wrong dtype or shape, an unknown or missing tensor, a
    /// step count out of range.
    #[error(
        "invalid optimizer state{}: {}{message}",
        source_name(path),
        tensor_label(tensor)
    )]
    InvalidOptimizerState {
        /// The file, when loading from disk.
        path: Option<PathBuf>,
        /// The tensor (`<param>.<slot>`) or metadata entry at fault, if one.
        tensor: Option<String>,
        /// What is wrong.
        message: String,
    },
}

fn tensor_label(tensor: &Option<String>) -> String {
    match tensor {
        Some(name) => format!("`{name}`: "),
        None => String::new(),
    }
}

fn source_name(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" from {}", p.display()),
        None => String::new(),
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
