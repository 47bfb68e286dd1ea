//! Shared helpers for the workspace's examples, benches and integration tests.
#![deny(missing_docs)]

pub mod cli;
pub mod training;
pub mod warm_up;
