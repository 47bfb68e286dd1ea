//! Hugging Face checkpoint directories: loading, validation and saving.

pub(crate) mod problem;

pub use problem::CheckpointProblem;
