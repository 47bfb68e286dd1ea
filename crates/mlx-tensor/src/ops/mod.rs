//! Operations on arrays, as methods of [`Array`](crate::Array) and free
//! functions. Every operation builds a graph node lazily and returns
//! `Result`: MLX checks shapes and dtypes when the node is built.

mod creation;
mod elementwise;
mod indexing;
mod linalg;
mod reduce;
mod shape_ops;

pub use elementwise::where_;
pub use linalg::{Quantized, gather_mm};
pub use shape_ops::{concatenate, stack};
pub(crate) use shape_ops::{from_array_vec, to_array_vec};
