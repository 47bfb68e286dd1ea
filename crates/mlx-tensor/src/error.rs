//! The error type of `mlx-tensor`.

use std::panic::Location;
use std::path::PathBuf;

use crate::Dtype;

/// Everything that can go wrong in `mlx-tensor`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// MLX rejected an operation (a C++ exception): bad shapes, dtypes, axes…
    #[error("{op}({inputs}): {message} (at {location})")]
    Mlx {
        /// The operation, e.g. `matmul`.
        op: &'static str,
        /// The inputs' dtypes and shapes, e.g. `f32[2, 3], f32[4, 5]`.
        inputs: String,
        /// MLX's message.
        message: String,
        /// Where in the caller's code the operation was built.
        location: &'static Location<'static>,
    },
    /// Data and shape disagree when building an array.
    #[error("{op}: {len} elements do not fill shape {shape:?} ({expected} elements)")]
    DataLength {
        /// The constructor.
        op: &'static str,
        /// Elements given.
        len: usize,
        /// The requested shape.
        shape: Vec<i32>,
        /// Elements the shape holds.
        expected: usize,
    },
    /// An array has the wrong number of elements for the request.
    #[error("{op}: expected an array of {expected} element(s), got shape {shape:?}")]
    NotScalar {
        /// The request, e.g. `item`.
        op: &'static str,
        /// Expected element count.
        expected: usize,
        /// Actual shape.
        shape: Vec<i32>,
    },
    /// A dimension or count that does not fit MLX's 32-bit shapes.
    #[error("{op}: {what} = {value} is out of range")]
    OutOfRange {
        /// The operation.
        op: &'static str,
        /// What was out of range.
        what: &'static str,
        /// The value.
        value: i128,
    },
    /// A dtype this operation cannot use.
    #[error("{op}: dtype {dtype} is not supported here ({reason})")]
    UnsupportedDtype {
        /// The operation.
        op: &'static str,
        /// The dtype.
        dtype: Dtype,
        /// Why.
        reason: &'static str,
    },
    /// A closure given to a transformation (grad, vjp, compile) failed or panicked.
    #[error("{transform}: the closure failed: {message}")]
    Closure {
        /// The transformation.
        transform: &'static str,
        /// The closure's error or panic message.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// MLX's distributed layer could not start a group or run a collective.
    #[error("{op} ({backend}): {message}")]
    Distributed {
        /// The request, e.g. `init`, `split`, `broadcast`.
        op: &'static str,
        /// The backend, e.g. `ring`.
        backend: String,
        /// What went wrong (MLX's message where it gave one).
        message: String,
    },
    /// An invalid argument, with an explanation.
    #[error("{op}: {message}")]
    Invalid {
        /// The operation.
        op: &'static str,
        /// The explanation.
        message: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
