//! Qwen3-MoE: the Qwen3 decoder with sparse mixture-of-experts feed-forward
//! blocks in the layers `decoder_sparse_step` selects.

use mlx_nn::{Module, VarBuilder};
use serde::{Deserialize, Serialize};

use mlx_nn::{ModuleExt, ParamMap};
use mlx_tensor::{Array, Dtype};

use super::config_checks::{self, attention_dims};
use super::experts::unstack_experts;
use super::moe::{MoeDims, load_balancing_loss};
use super::qwen3::{FeedForwardKind, Qwen3Config, Transformer, TransformerDims};
use super::transformer_model::TransformerModel;
use crate::{Error, Result};

/// The Hugging Face `config.json` of a Qwen3-MoE model: the dense fields
/// plus the expert settings. `num_experts` is also read under the name
/// newer transformers versions write, `num_local_experts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawMoeConfig")]
pub struct Qwen3MoeConfig {
    /// The fields shared with dense Qwen3 (`model_type` is `"qwen3_moe"`).
    #[serde(flatten)]
    pub base: Qwen3Config,
    /// Experts per sparse layer.
    pub num_experts: i32,
    /// Experts each token is routed to.
    pub num_experts_per_tok: i32,
    /// Every `decoder_sparse_step`-th layer is sparse.
    pub decoder_sparse_step: i32,
    /// Layers that stay dense.
    pub mlp_only_layers: Vec<i32>,
    /// Width of each expert's SwiGLU.
    pub moe_intermediate_size: i32,
    /// Whether the top-k routing weights are renormalised to sum to 1.
    pub norm_topk_prob: bool,
    /// Weight of the load-balancing loss in training.
    pub router_aux_loss_coef: f64,
}

/// The file form: the expert count under either of its names.
#[derive(Deserialize)]
struct RawMoeConfig {
    #[serde(flatten)]
    base: Qwen3Config,
    #[serde(default)]
    num_experts: Option<i32>,
    #[serde(default)]
    num_local_experts: Option<i32>,
    num_experts_per_tok: i32,
    #[serde(default = "default_sparse_step")]
    decoder_sparse_step: i32,
    #[serde(default)]
    mlp_only_layers: Vec<i32>,
    moe_intermediate_size: i32,
    #[serde(default)]
    norm_topk_prob: bool,
    #[serde(default = "default_aux_coef")]
    router_aux_loss_coef: f64,
}

impl TryFrom<RawMoeConfig> for Qwen3MoeConfig {
    type Error = String;

    fn try_from(raw: RawMoeConfig) -> std::result::Result<Self, String> {
        let num_experts = match (raw.num_experts, raw.num_local_experts) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "num_experts = {a} and num_local_experts = {b} disagree"
                ));
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => return Err("missing field `num_experts`".into()),
        };
        Ok(Qwen3MoeConfig {
            base: raw.base,
            num_experts,
            num_experts_per_tok: raw.num_experts_per_tok,
            decoder_sparse_step: raw.decoder_sparse_step,
            mlp_only_layers: raw.mlp_only_layers,
            moe_intermediate_size: raw.moe_intermediate_size,
            norm_topk_prob: raw.norm_topk_prob,
            router_aux_loss_coef: raw.router_aux_loss_coef,
        })
    }
}

fn default_sparse_step() -> i32 {
    1
}
fn default_aux_coef() -> f64 {
    0.001
}

impl Qwen3MoeConfig {
    /// Parses a `config.json` text.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::ModelConfig {
            field: "<config.json>".into(),
            message: e.to_string(),
        })
    }

    /// Whether layer `idx` routes through experts.
    pub fn is_sparse_layer(&self, idx: i32) -> bool {
        !self.mlp_only_layers.contains(&idx)
            && self.num_experts > 0
            && self.decoder_sparse_step > 0
            && (idx + 1) % self.decoder_sparse_step == 0
    }

    pub(crate) fn transformer_dims(&self) -> Result<TransformerDims> {
        let base = &self.base;
        if base.model_type != "qwen3_moe" {
            return Err(Error::ModelConfig {
                field: "model_type".into(),
                message: format!("expected `qwen3_moe`, got `{}`", base.model_type),
            });
        }
        let default_head_dim = if base.num_attention_heads > 0 {
            if base.head_dim.is_none() && base.hidden_size % base.num_attention_heads != 0 {
                return Err(Error::ModelConfig {
                    field: "hidden_size".into(),
                    message: format!(
                        "{} is not divisible by num_attention_heads = {} (and no head_dim is given)",
                        base.hidden_size, base.num_attention_heads
                    ),
                });
            }
            base.hidden_size / base.num_attention_heads
        } else {
            0
        };
        let attention = attention_dims(base, default_head_dim)?;
        let bad = |field: &str, message: String| Error::ModelConfig {
            field: field.into(),
            message,
        };
        if !self.router_aux_loss_coef.is_finite() {
            return Err(bad(
                "router_aux_loss_coef",
                format!("must be finite, got {}", self.router_aux_loss_coef),
            ));
        }
        if self.num_experts < 0 {
            return Err(bad(
                "num_experts",
                format!("must not be negative, got {}", self.num_experts),
            ));
        }
        if self.num_experts > 0 {
            if self.num_experts_per_tok <= 0 || self.num_experts_per_tok > self.num_experts {
                return Err(bad(
                    "num_experts_per_tok",
                    format!(
                        "must lie in 1..={}, got {}",
                        self.num_experts, self.num_experts_per_tok
                    ),
                ));
            }
            if self.moe_intermediate_size <= 0 {
                return Err(bad(
                    "moe_intermediate_size",
                    format!("must be positive, got {}", self.moe_intermediate_size),
                ));
            }
            if self.decoder_sparse_step <= 0 {
                return Err(bad(
                    "decoder_sparse_step",
                    format!("must be positive, got {}", self.decoder_sparse_step),
                ));
            }
            config_checks::width("moe_intermediate_size", &[2, self.moe_intermediate_size])?;
            config_checks::weight(
                "num_experts",
                &[
                    self.num_experts,
                    2,
                    self.moe_intermediate_size,
                    base.hidden_size,
                ],
            )?;
        }
        let moe = MoeDims {
            hidden: base.hidden_size,
            intermediate: self.moe_intermediate_size,
            experts: self.num_experts,
            top_k: self.num_experts_per_tok,
            norm_topk_prob: self.norm_topk_prob,
        };
        let layers = (0..base.num_hidden_layers)
            .map(|i| {
                if self.is_sparse_layer(i) {
                    FeedForwardKind::Sparse(moe)
                } else {
                    FeedForwardKind::Dense(base.intermediate_size)
                }
            })
            .collect();
        Ok(TransformerDims {
            vocab: base.vocab_size,
            attention,
            layers,
            tie_word_embeddings: base.tie_word_embeddings,
        })
    }
}

/// A Qwen3-MoE causal language model. Expert weights are held stacked as
/// `model.layers.{i}.mlp.switch_mlp.{gate,up,down}_proj.weight`
/// (`[experts, out, in]`); checkpoints keep them one by one.
#[derive(Debug, Clone, Module)]
pub struct Qwen3Moe {
    #[module(skip)]
    pub(crate) config: Qwen3MoeConfig,
    #[module(flatten)]
    pub(crate) inner: Transformer,
}

impl Qwen3Moe {
    /// Builds the model from `vb` (stacked expert names, see the type docs).
    /// Unsupported settings fail here with the offending field.
    pub fn new(config: &Qwen3MoeConfig, vb: &VarBuilder) -> Result<Self> {
        let dims = config.transformer_dims()?;
        Ok(Qwen3Moe {
            config: config.clone(),
            inner: Transformer::new(&dims, vb)?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Qwen3MoeConfig {
        &self.config
    }
}

// The `LanguageModel` methods come with this (see `transformer_model.rs`).
impl TransformerModel for Qwen3Moe {
    fn inner(&self) -> &Transformer {
        &self.inner
    }
    fn inner_mut(&mut self) -> &mut Transformer {
        &mut self.inner
    }
    /// With the router load-balancing loss over the sparse layers (tokens
    /// where `token_mask`, by default everything after the left padding, is
    /// set).
    fn hidden_with_aux(
        &self,
        tokens: &Array,
        left_padding: Option<&[i32]>,
        token_mask: Option<&Array>,
    ) -> Result<(Array, Option<Array>)> {
        let (hidden, router_logits) = self.inner.forward(tokens, None, left_padding)?;
        if self.config.num_experts <= 0 {
            return Ok((hidden, None));
        }
        let padding_mask;
        let mask = match (token_mask, left_padding) {
            (Some(m), _) => Some(m),
            (None, Some(p)) => {
                padding_mask = left_padding_mask(p, hidden.axis_size(1)?)?;
                Some(&padding_mask)
            }
            (None, None) => None,
        };
        let (experts, top_k) = (self.config.num_experts, self.config.num_experts_per_tok);
        let aux = load_balancing_loss(&router_logits, experts, top_k, mask)?;
        Ok((hidden, aux))
    }
    fn aux_coef(&self) -> f32 {
        match self.config.num_experts > 0 {
            true => self.config.router_aux_loss_coef as f32,
            false => 0.0,
        }
    }
    /// One tensor per expert, as Hugging Face stores them.
    fn checkpoint_layout(&self) -> Result<ParamMap> {
        unstack_experts(self.parameters())
    }
}

/// `[B, L]` f32: 1 at real tokens, 0 at each row's leading padding.
fn left_padding_mask(left_padding: &[i32], len: i32) -> Result<Array> {
    let rows = i32::try_from(left_padding.len()).map_err(|_| Error::TooLarge {
        setting: "left_padding".into(),
        value: format!("{} rows", left_padding.len()),
        message: "more rows than a 32-bit shape holds".into(),
    })?;
    let positions = Array::arange(0.0, f64::from(len), 1.0, Dtype::I32)?.reshape(&[1, len])?;
    let padding = Array::from_slice(left_padding, &[rows, 1])?;
    Ok(positions.ge(&padding)?.as_type(Dtype::F32)?)
}
