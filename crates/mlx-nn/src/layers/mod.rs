//! Layers.

mod embedding;
mod linear;
mod norm;

pub use embedding::Embedding;
pub use linear::{Linear, LinearConfig};
pub use norm::{LayerNorm, RmsNorm};
