//! Layers.
//!
//! Every layer has an inherent `forward` and implements [`Forward`]; those
//! with parameters implement [`Module`](crate::Module) with Hugging Face
//! parameter names.

mod dropout;
mod embedding;
mod forward;
mod linear;
mod lora;
mod lora_targets;
mod mlp;
mod norm;
mod quantized;
mod quantized_embedding;
mod sequential;

pub use dropout::Dropout;
pub use embedding::Embedding;
pub use forward::Forward;
pub use linear::{Linear, LinearConfig};
pub use lora::{DropoutKeyScope, LinearBase, LoraConfig, LoraLinear};
pub use lora_targets::{
    LayerSelection, TargetCandidate, TargetModules, layer_index, select_targets,
};
pub use mlp::{Mlp, SwiGlu};
pub use norm::{LayerNorm, RmsNorm};
pub use quantized::{DEFAULT_BITS, DEFAULT_GROUP_SIZE, QuantizedLinear};
pub use quantized_embedding::QuantizedEmbedding;
pub use sequential::Sequential;
