//! Randomly initialised models, tiny random checkpoints and fixture
//! configurations for tests, examples and benchmarks: compiled only with
//! the `test-support` feature, so they are not part of the public API.

use std::path::Path;

use mlx_nn::{ModuleExt, ParamMap, VarBuilder};
use mlx_tensor::{Dtype, random};

use super::save::{SaveOptions, save_model};
use crate::Result;
use crate::models::{Model, ModelConfig, Qwen3Config, Qwen3MoeConfig};

/// A model of `config` with random parameters drawn from `seed`: linear
/// layers `U(±1/sqrt(in))`, embeddings `N(0, 1/sqrt(hidden))`, and RMS-norm
/// weights `U(0.5, 1.5)` (not 1, so a norm weight that is forgotten
/// somewhere changes the output).
pub fn random_model(config: &ModelConfig, seed: u64, dtype: Dtype) -> Result<Model> {
    let mut model = Model::new(config, &VarBuilder::random(seed, dtype))?;
    let mut norms = ParamMap::new();
    let key = random::key(seed ^ NORM_SEED_SALT)?;
    let names: Vec<(String, Vec<i32>)> = model
        .parameters()
        .into_iter()
        .filter(|(name, _)| name.ends_with("norm.weight"))
        .map(|(name, a)| (name, a.shape().0))
        .collect();
    let keys = random::split(&key, names.len().max(1) as i32)?;
    for (i, (name, shape)) in names.into_iter().enumerate() {
        let k = keys.take(&mlx_tensor::Array::scalar(i as u32)?, Some(0))?;
        norms.insert(name, random::uniform(0.5, 1.5, &shape, dtype, Some(&k))?);
    }
    model.update(&norms)?;
    crate::generate::pack_weights(&mut model)?;
    Ok(model)
}

/// Mixed into the seed of the norm weights.
const NORM_SEED_SALT: u64 = 0x6e6f_726d;

/// Writes a random model of `config` (see [`random_model`]) as a Hugging
/// Face checkpoint directory (`config.json`, `model.safetensors`) and
/// returns it.
pub fn write_random_checkpoint(
    dir: impl AsRef<Path>,
    config: &ModelConfig,
    seed: u64,
    dtype: Dtype,
) -> Result<Model> {
    let model = random_model(config, seed, dtype)?;
    model.eval_params()?;
    save_model(&model, dir, &SaveOptions::default())?;
    Ok(model)
}

/// A tiny dense Qwen3 configuration (2 layers, hidden 64, vocabulary 1000)
/// for tests and examples.
pub fn tiny_qwen3_config() -> ModelConfig {
    ModelConfig::Qwen3(tiny_base("qwen3"))
}

/// A tiny Qwen3-MoE configuration (2 layers, 8 experts, top 2, layer 1
/// sparse, layer 0 dense) for tests and examples.
pub fn tiny_qwen3_moe_config() -> ModelConfig {
    ModelConfig::Qwen3Moe(Qwen3MoeConfig {
        base: tiny_base("qwen3_moe"),
        num_experts: 8,
        num_experts_per_tok: 2,
        decoder_sparse_step: 1,
        mlp_only_layers: vec![0],
        moe_intermediate_size: 32,
        norm_topk_prob: true,
        router_aux_loss_coef: 0.001,
    })
}

/// The shape of Qwen3-0.6B (hidden 1,024, SwiGLU 3,072, 16 query and 8
/// key/value heads of 128, rope base 10⁶, tied embeddings; 28 layers and a
/// 151,936-token vocabulary in the released model) with `layers` blocks and
/// a `vocab`-token vocabulary, for benchmarks.
pub fn qwen3_0_6b_config(layers: i32, vocab: i32) -> ModelConfig {
    ModelConfig::Qwen3(Qwen3Config {
        vocab_size: vocab,
        hidden_size: 1024,
        intermediate_size: 3072,
        num_hidden_layers: layers,
        num_attention_heads: 16,
        num_key_value_heads: Some(8),
        head_dim: Some(128),
        rope_theta: Some(1_000_000.0),
        max_position_embeddings: 40_960,
        ..tiny_base("qwen3")
    })
}

fn tiny_base(model_type: &str) -> Qwen3Config {
    Qwen3Config {
        model_type: model_type.into(),
        vocab_size: 1000,
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        head_dim: Some(16),
        rms_norm_eps: 1e-6,
        rope_theta: Some(10_000.0),
        rope_scaling: None,
        rope_parameters: None,
        max_position_embeddings: 512,
        tie_word_embeddings: true,
        attention_bias: false,
        hidden_act: "silu".into(),
        use_sliding_window: false,
        layer_types: None,
        torch_dtype: None,
        dtype: None,
    }
}
