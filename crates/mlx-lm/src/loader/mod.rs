//! Hugging Face checkpoint directories: loading with validation, saving in
//! the same layout, and adapters.
//!
//! Random models and tiny fixture configurations for tests, examples and
//! benchmarks (`random_model`, `write_random_checkpoint`,
//! `tiny_qwen3_config`, `tiny_qwen3_moe_config`, `qwen3_0_6b_config`) are
//! compiled only with the `test-support` feature, which the workspace's
//! tests, examples and benchmarks enable through their dev-dependencies;
//! they are not part of the public API.
//!
//! ```no_run
//! use mlx_lm::loader::{load_model, save_model, SaveOptions};
//! use mlx_tensor::Dtype;
//! # fn main() -> mlx_lm::Result<()> {
//! let model = load_model("Qwen3-0.6B", Some(Dtype::BF16))?;
//! let options = SaveOptions { source_dir: Some("Qwen3-0.6B".into()), ..SaveOptions::default() };
//! save_model(&model, "my-finetune", &options)?;
//! # Ok(()) }
//! ```

mod adapter_attach;
mod adapter_merge;
mod adapters;
mod files;
mod load;
mod merged;
pub(crate) mod problem;
mod quantize;
mod quantized;
#[cfg(feature = "test-support")]
mod random;
mod save;
mod validate;

pub use adapter_attach::{
    attach_adapters, attach_lora, attached_adapters, fuse_attached_adapters,
    fuse_attached_adapters_requantized, has_adapters, is_adapter_parameter,
    load_and_attach_adapters, set_adapters_enabled, set_adapters_training,
};
pub use adapter_merge::{
    adapter_targets, block_count, check_adapters, linear_candidates, merge_adapters, new_adapters,
    unmerge_adapters,
};
pub use adapters::{
    ADAPTER_CONFIG, AdapterFormat, Adapters, LoraFactors, MLX_LM_WEIGHTS, PEFT_WEIGHTS,
    load_adapters, save_adapters,
};
pub(crate) use load::dtype_from_config;
pub use load::{load_config, load_model};
pub use merged::{MergedFormat, save_merged_model};
pub use problem::CheckpointProblem;
pub use quantize::{MOE_ROUTER_SPEC, model_quantization, quantize_tensors, save_quantized_model};
pub use quantized::{
    QuantizationConfig, QuantizationSpec, QuantizedTensors, SUPPORTED_BITS, SUPPORTED_GROUP_SIZES,
    load_quantized_model, load_quantized_tensors, quantization_config,
};
#[cfg(feature = "test-support")]
pub use random::{
    qwen3_0_6b_config, random_model, tiny_qwen3_config, tiny_qwen3_moe_config,
    write_random_checkpoint,
};
pub use save::{
    COMPANION_FILES, DEFAULT_MAX_SHARD_BYTES, SaveOptions, save_checkpoint, save_model,
};
