//! Qwen3 (dense): grouped-query attention with per-head RMS-normalised
//! queries and keys, rotary positions, SwiGLU feed-forward, pre-norm blocks.

use mlx_nn::{Module, VarBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::attention::AttentionDims;
use super::config_checks;
use super::rope::rope_settings;
use super::transformer::{FeedForwardKind, Transformer, TransformerDims};
use crate::loader::dtype_from_config;
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
pub(crate) fn default_rms_norm_eps() -> f64 {
    1e-6
}
pub(crate) fn default_max_position_embeddings() -> i32 {
    32768
}
pub(crate) fn default_hidden_act() -> String {
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

    /// Checks the settings shared by Qwen3 and Qwen3-MoE and derives the
    /// attention shapes; `default_head_dim` applies when `head_dim` is absent.
    pub(crate) fn attention_dims(&self, default_head_dim: i32) -> Result<AttentionDims> {
        let bad = |field: &str, message: String| Error::ModelConfig {
            field: field.into(),
            message,
        };
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
        ] {
            if value <= 0 {
                return Err(bad(field, format!("must be positive, got {value}")));
            }
        }
        if self.max_position_embeddings <= 0 {
            return Err(bad(
                "max_position_embeddings",
                format!("must be positive, got {}", self.max_position_embeddings),
            ));
        }
        config_checks::non_negative_finite("rms_norm_eps", self.rms_norm_eps)?;
        for (field, value) in [("dtype", &self.dtype), ("torch_dtype", &self.torch_dtype)] {
            if let Some(name) = value
                && dtype_from_config(name).is_none()
            {
                return Err(bad(
                    field,
                    format!(
                        "unknown dtype `{name}` (known: float32, fp32, bfloat16, bf16, float16, fp16, half)"
                    ),
                ));
            }
        }
        let head_dim = self.head_dim.unwrap_or(default_head_dim);
        if head_dim <= 0 || head_dim % 2 != 0 {
            return Err(bad(
                "head_dim",
                format!("must be positive and even, got {head_dim}"),
            ));
        }
        let (heads, kv_heads) = (self.num_attention_heads, self.kv_heads());
        config_checks::width("num_attention_heads", &[heads, head_dim])?;
        let all_heads = kv_heads
            .checked_mul(2)
            .and_then(|kv| kv.checked_add(heads))
            .unwrap_or(i32::MAX);
        config_checks::width("num_key_value_heads", &[all_heads, head_dim])?;
        config_checks::width("intermediate_size", &[2, self.intermediate_size])?;
        config_checks::weight("vocab_size", &[self.vocab_size, self.hidden_size])?;
        config_checks::weight(
            "intermediate_size",
            &[self.intermediate_size, self.hidden_size],
        )?;
        config_checks::weight("num_attention_heads", &[heads, head_dim, self.hidden_size])?;
        if self.num_attention_heads % self.kv_heads() != 0 {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "{} query heads are not a multiple of {} key/value heads",
                    self.num_attention_heads,
                    self.kv_heads()
                ),
            ));
        }
        if self.hidden_act != "silu" {
            return Err(bad(
                "hidden_act",
                format!(
                    "activation `{}` is not supported (only silu)",
                    self.hidden_act
                ),
            ));
        }
        if self.use_sliding_window {
            return Err(bad(
                "use_sliding_window",
                "sliding-window attention is not supported".into(),
            ));
        }
        if let Some(kinds) = &self.layer_types
            && let Some(other) = kinds.iter().find(|k| k.as_str() != "full_attention")
        {
            return Err(bad(
                "layer_types",
                format!("layer type `{other}` is not supported (only full_attention)"),
            ));
        }
        let rope = rope_settings(
            self.rope_theta,
            self.rope_scaling.as_ref(),
            self.rope_parameters.as_ref(),
        )?;
        Ok(AttentionDims {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.kv_heads(),
            head_dim,
            eps: self.rms_norm_eps as f32,
            bias: self.attention_bias,
            rope,
        })
    }

    pub(crate) fn transformer_dims(&self) -> Result<TransformerDims> {
        if self.model_type != "qwen3" {
            return Err(Error::ModelConfig {
                field: "model_type".into(),
                message: format!("expected `qwen3`, got `{}`", self.model_type),
            });
        }
        let attention = self.attention_dims(QWEN3_DEFAULT_HEAD_DIM)?;
        let dense = FeedForwardKind::Dense {
            intermediate: self.intermediate_size,
        };
        Ok(TransformerDims {
            vocab: self.vocab_size,
            attention,
            layers: vec![dense; self.num_hidden_layers as usize],
            tie_word_embeddings: self.tie_word_embeddings,
        })
    }
}

/// A Qwen3 causal language model.
#[derive(Debug, Clone, Module)]
pub struct Qwen3 {
    #[module(skip)]
    pub(crate) config: Qwen3Config,
    #[module(flatten)]
    pub(crate) inner: Transformer,
}

impl Qwen3 {
    /// Builds the model from `vb` (checkpoint names: `model.embed_tokens.weight`,
    /// `model.layers.{i}.self_attn.q_proj.weight`, …, `lm_head.weight` unless
    /// tied). Unsupported settings fail here with the offending field.
    pub fn new(config: &Qwen3Config, vb: &VarBuilder) -> Result<Self> {
        let dims = config.transformer_dims()?;
        Ok(Qwen3 {
            config: config.clone(),
            inner: Transformer::new(&dims, vb)?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Qwen3Config {
        &self.config
    }
}
