//! Errors of the terminal UI.

use std::path::PathBuf;

/// What can go wrong in the UI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A run file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The terminal could not be set up, drawn or read.
    #[error("terminal: {0}")]
    Terminal(std::io::Error),
    /// A trainer file (control, status) was refused.
    #[error(transparent)]
    Grpo(#[from] mlx_grpo::Error),
    /// The training thread panicked.
    #[error("the training thread panicked: {0}")]
    WorkerPanicked(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The UI's result type.
pub type Result<T> = std::result::Result<T, Error>;
