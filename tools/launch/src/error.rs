//! The error type of the launcher.

use std::path::PathBuf;

/// Everything that can stop a launch before the ranks report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The hostfile is not MLX's format (a JSON list of address lists).
    #[error("hostfile {path}: {message}")]
    Hostfile {
        /// The hostfile.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The requested ranks do not fit the job.
    #[error("invalid launch: {0}")]
    Invalid(String),
    /// Free ports could not be found.
    #[error("finding free loopback ports: {0}")]
    Ports(std::io::Error),
    /// A rank's process could not be started.
    #[error("starting rank {rank} (`{program}`): {source}")]
    Spawn {
        /// The global rank.
        rank: usize,
        /// The program.
        program: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
