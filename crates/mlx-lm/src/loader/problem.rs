//! What can be wrong with a checkpoint, one entry per problem.

use std::fmt;
use std::path::PathBuf;

/// One problem found while validating a checkpoint directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointProblem {
    /// A weight file could not be read: truncated, garbage header, absent.
    BadFile {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The model needs a tensor no file has.
    MissingTensor {
        /// The checkpoint key.
        key: String,
        /// The shape the model needs.
        expected: Vec<i64>,
    },
    /// A tensor has a shape the configuration does not give.
    WrongShape {
        /// The file holding it.
        file: PathBuf,
        /// The checkpoint key.
        key: String,
        /// The shape the configuration implies.
        expected: Vec<i64>,
        /// The shape in the file.
        found: Vec<i64>,
    },
    /// A tensor has a dtype that cannot hold weights.
    WrongDtype {
        /// The file holding it.
        file: PathBuf,
        /// The checkpoint key.
        key: String,
        /// The dtype in the file (`I32`, `U8`, …).
        found: String,
    },
    /// A tensor the model has no parameter for.
    UnexpectedTensor {
        /// The file holding it.
        file: PathBuf,
        /// The checkpoint key.
        key: String,
    },
    /// The same key appears in two files.
    DuplicateTensor {
        /// The checkpoint key.
        key: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// The shard index disagrees with the files.
    IndexMismatch {
        /// The checkpoint key.
        key: String,
        /// What the index says and what the files hold.
        message: String,
    },
}

impl fmt::Display for CheckpointProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointProblem::BadFile { file, message } => {
                write!(f, "{}: {message}", file.display())
            }
            CheckpointProblem::MissingTensor { key, expected } => {
                write!(f, "missing tensor `{key}` (expected shape {expected:?})")
            }
            CheckpointProblem::WrongShape {
                file,
                key,
                expected,
                found,
            } => write!(
                f,
                "{}: tensor `{key}` has shape {found:?}, the config implies {expected:?}",
                file.display()
            ),
            CheckpointProblem::WrongDtype { file, key, found } => {
                write!(
                    f,
                    "{}: tensor `{key}` has dtype {found}, expected a floating-point dtype",
                    file.display()
                )
            }
            CheckpointProblem::UnexpectedTensor { file, key } => {
                write!(
                    f,
                    "{}: unexpected tensor `{key}` (the model has no such parameter)",
                    file.display()
                )
            }
            CheckpointProblem::DuplicateTensor { key, first, second } => {
                write!(
                    f,
                    "tensor `{key}` appears in both {} and {}",
                    first.display(),
                    second.display()
                )
            }
            CheckpointProblem::IndexMismatch { key, message } => {
                write!(f, "index entry `{key}`: {message}")
            }
        }
    }
}

/// One line per problem, for error messages.
pub(crate) fn list(problems: &[CheckpointProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
