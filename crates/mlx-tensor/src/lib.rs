//! The typed MLX array.
//!
//! [`Array`] is a handle to a node of MLX's computation graph. Operations are
//! methods ([`Array::matmul`], [`Array::sum`], …) and free functions
//! ([`concatenate`], [`where_`], [`random::normal`], [`fast::rms_norm`], …);
//! every one returns [`Result`], because MLX checks shapes and dtypes when a
//! node is built. Operators (`&a + &b`) return `Result` too.
//!
//! # Lazy evaluation
//!
//! Building `let y = x.matmul(&w)?.add(&b)?;` records two operations and
//! computes nothing. Work happens in [`eval`] / [`Array::eval`] /
//! [`async_eval`] and in the read-backs [`Array::to_vec`] and
//! [`Array::item`]. Evaluate once per unit of work (one decode step, one
//! optimizer step), all outputs together: `eval(&[&loss, &new_weights])`.
//! Evaluating inside inner loops forces MLX to run small graphs one by one.
//!
//! ```no_run
//! use mlx_tensor::{Array, Dtype, Result};
//! fn demo() -> Result<()> {
//!     let x = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//!     let y = (&x.matmul(&x.t()?)? * 0.5)?;
//!     assert_eq!(y.to_vec::<f32>()?, vec![2.5, 5.5, 5.5, 12.5]);
//!     let total: f32 = y.sum(mlx_tensor::Axes::All, false)?.item()?;
//!     assert_eq!(total, 26.0);
//!     let _ = Dtype::BF16;
//!     Ok(())
//! }
//! ```
//!
//! # Threads
//!
//! `Array` is `Send` but not `Sync`. MLX keeps a default stream per thread
//! and device: an unevaluated array built on one thread must be evaluated on
//! that thread (elsewhere evaluation fails with an error naming the stream).
//! Evaluate arrays before sending them to another thread; evaluated arrays
//! can be read anywhere. Keep one MLX-owning thread per model. Random numbers
//! drawn without an explicit key use a per-thread key sequence: pass keys
//! ([`random::key`], [`random::split`]) for reproducible results.
//!
//! # Errors
//!
//! A C++ exception inside MLX becomes [`Error::Mlx`], naming the operation,
//! the inputs' dtypes and shapes, MLX's message and the caller's source
//! location. Closures given to [`transforms`] report their own errors and
//! panics as `Err`; the process stays usable.

#![deny(missing_docs)]

mod array;
mod dtype;
mod error;
mod host;
mod host_buffer;
mod operators;
mod ops;
mod shape;

pub mod device;
pub mod distributed;
pub mod fast;
pub mod io;
pub mod memory;
pub mod random;
pub mod transforms;

pub use array::Array;
pub use device::{Device, Stream, async_eval, eval, synchronize};
pub use dtype::{Dtype, Element};
pub use error::{Error, Result};
pub use host::HostArray;
pub use ops::{Quantized, concatenate, gather_mm, stack, where_};
pub use shape::{Axes, Shape};

pub use half::{bf16, f16};

/// Which BLAS the CPU build of MLX uses (chosen when `mlx-ffi` was built).
pub const BLAS: &str = mlx_ffi::MLX_BLAS;
