//! The `config.json` of a dense Qwen3 model: parsing, the settings it
//! resolves (key/value heads, rotary base, dtype), and the checked layer
//! layout a [`super::Transformer`] is built from.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::config_checks::attention_dims;
use super::super::moe::MoeDims;
use super::super::rope::RopeSettings;
use crate::{Error, Result};

/// The Hugging Face `config.json` of a Qwen3 model (field names as there;
/// fields not listed are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen3Config {
    /// `"qwen3"`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Vocabulary size (rows of the embedding table).
    pub vocab_size: i32,
    /// Width of the residual stream.
    pub hidden_size: i32,
    /// Width of the SwiGLU feed-forward block.
    pub intermediate_size: i32,
    /// Number of blocks.
    pub num_hidden_layers: i32,
    /// Query heads.
    pub num_attention_heads: i32,
    /// Key/value heads (defaults to the query heads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<i32>,
    /// Width of one head (Hugging Face's default for Qwen3 is 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i32>,
    /// Epsilon of every RMS norm.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base (older configs; newer ones nest it in `rope_parameters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Rotary scaling (`default` and `linear` are supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<Value>,
    /// Rotary settings in the nested form of newer configs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<Value>,
    /// Longest context the model was trained for.
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: i32,
    /// Whether the output projection reuses the embedding table.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Whether the attention projections have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Feed-forward activation; only `silu` is supported.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Sliding-window attention (not supported: must be false).
    #[serde(default)]
    pub use_sliding_window: bool,
    /// Per-layer attention kinds; only `full_attention` is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
    /// The checkpoint's dtype as older configs name it (`bfloat16`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
    /// The checkpoint's dtype as newer configs name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
}

fn default_model_type() -> String {
    "qwen3".into()
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_max_position_embeddings() -> i32 {
    32768
}
fn default_hidden_act() -> String {
    "silu".into()
}

/// Hugging Face's `head_dim` default for dense Qwen3.
const QWEN3_DEFAULT_HEAD_DIM: i32 = 128;

impl Qwen3Config {
    /// Parses a `config.json` text.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::ModelConfig {
            field: "<config.json>".into(),
            message: e.to_string(),
        })
    }

    /// The key/value head count.
    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// The rotary base, from `rope_theta` or `rope_parameters.rope_theta`
    /// (10000 when neither is given, as Hugging Face defaults).
    pub fn resolved_rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| {
                self.rope_parameters
                    .as_ref()
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10_000.0)
    }

    /// The dtype the checkpoint declares, if any (`dtype` or `torch_dtype`).
    pub fn declared_dtype(&self) -> Option<&str> {
        self.dtype.as_deref().or(self.torch_dtype.as_deref())
    }

    /// The layer layout, checked (unsupported settings fail with the field).
    pub(crate) fn transformer_dims(&self) -> Result<TransformerDims> {
        if self.model_type != "qwen3" {
            return Err(Error::ModelConfig {
                field: "model_type".into(),
                message: format!("expected `qwen3`, got `{}`", self.model_type),
            });
        }
        let attention = attention_dims(self, QWEN3_DEFAULT_HEAD_DIM)?;
        let dense = FeedForwardKind::Dense(self.intermediate_size);
        Ok(TransformerDims {
            vocab: self.vocab_size,
            attention,
            layers: vec![dense; self.num_hidden_layers as usize],
            tie_word_embeddings: self.tie_word_embeddings,
        })
    }
}

/// Which feed-forward block a layer has (and its width).
#[derive(Debug, Clone, Copy)]
pub(crate) enum FeedForwardKind {
    Dense(i32),
    Sparse(MoeDims),
}

/// Everything needed to build a [`super::Transformer`].
#[derive(Debug, Clone)]
pub(crate) struct TransformerDims {
    pub vocab: i32,
    pub attention: AttentionDims,
    pub layers: Vec<FeedForwardKind>,
    pub tie_word_embeddings: bool,
}

/// Shapes and settings of an attention block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttentionDims {
    pub hidden: i32,
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
    pub eps: f32,
    pub bias: bool,
    pub rope: RopeSettings,
}
