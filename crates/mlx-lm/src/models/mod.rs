//! Model architectures: [`Qwen3`] (dense) and [`Qwen3Moe`], and [`Model`],
//! which holds either, chosen by a config's `model_type`.
//!
//! All of them implement [`LanguageModel`], so generation, scoring and
//! training work with any of them. A new architecture is one file here and
//! one variant of [`ModelConfig`] and [`Model`].

mod config_checks;
mod dense_mlp;
pub(crate) mod experts;
pub(crate) mod fused;
mod layer_paths;
mod layout;
mod moe;
mod projection;
mod qwen3;
mod qwen3_moe;
mod rope;
mod transformer_model;

use mlx_nn::{Module, ParamMap, VarBuilder, Visitor, VisitorMut};
use mlx_tensor::{Array, Dtype};
use serde_json::Value;

pub(crate) use dense_mlp::DenseMlp;
pub use projection::{Projection, TokenEmbedding};
pub(crate) use qwen3::{Attention, FeedForward};
pub use qwen3::{Qwen3, Qwen3Config, Transformer};
pub use qwen3_moe::{Qwen3Moe, Qwen3MoeConfig};

use crate::cache::LayerCache;
use crate::{Error, LanguageModel, Result};

/// The configuration of any supported architecture.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// `model_type = "qwen3"`.
    Qwen3(Qwen3Config),
    /// `model_type = "qwen3_moe"`.
    Qwen3Moe(Qwen3MoeConfig),
}

impl ModelConfig {
    /// Parses a `config.json` text, dispatching on `model_type`.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::ModelConfig {
            field: "<config.json>".into(),
            message: e.to_string(),
        })?;
        Self::from_value(value)
    }

    /// Builds from a parsed `config.json`, dispatching on `model_type`.
    pub fn from_value(value: Value) -> Result<Self> {
        let parse_error = |e: serde_json::Error| Error::ModelConfig {
            field: "<config.json>".into(),
            message: e.to_string(),
        };
        match value.get("model_type").and_then(Value::as_str) {
            Some("qwen3") => Ok(ModelConfig::Qwen3(
                serde_json::from_value(value).map_err(parse_error)?,
            )),
            Some("qwen3_moe") => Ok(ModelConfig::Qwen3Moe(
                serde_json::from_value(value).map_err(parse_error)?,
            )),
            Some(other) => Err(Error::ModelConfig {
                field: "model_type".into(),
                message: format!(
                    "architecture `{other}` is not supported (supported: qwen3, qwen3_moe)"
                ),
            }),
            None => Err(Error::ModelConfig {
                field: "model_type".into(),
                message: "missing".into(),
            }),
        }
    }

    /// The config as `config.json` content.
    pub fn to_value(&self) -> Result<Value> {
        let out = match self {
            ModelConfig::Qwen3(c) => serde_json::to_value(c),
            ModelConfig::Qwen3Moe(c) => serde_json::to_value(c),
        };
        out.map_err(|e| Error::ModelConfig {
            field: "<config.json>".into(),
            message: e.to_string(),
        })
    }

    /// The fields shared by both architectures.
    pub fn base(&self) -> &Qwen3Config {
        match self {
            ModelConfig::Qwen3(c) => c,
            ModelConfig::Qwen3Moe(c) => &c.base,
        }
    }

    /// Mutable access to the shared fields.
    pub fn base_mut(&mut self) -> &mut Qwen3Config {
        match self {
            ModelConfig::Qwen3(c) => c,
            ModelConfig::Qwen3Moe(c) => &mut c.base,
        }
    }

    /// Checks that the configuration is supported and consistent (what a
    /// model constructor would reject, without building anything).
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelConfig::Qwen3(c) => c.transformer_dims().map(|_| ()),
            ModelConfig::Qwen3Moe(c) => c.transformer_dims().map(|_| ()),
        }
    }

    /// Experts per sparse layer (0 for dense models).
    pub fn num_experts(&self) -> i32 {
        match self {
            ModelConfig::Qwen3(_) => 0,
            ModelConfig::Qwen3Moe(c) => c.num_experts,
        }
    }
}

/// A model of any supported architecture.
#[derive(Debug, Clone)]
pub enum Model {
    /// Dense Qwen3.
    Qwen3(Qwen3),
    /// Qwen3-MoE.
    Qwen3Moe(Qwen3Moe),
}

impl Model {
    /// Builds the architecture `config` names from `vb`.
    pub fn new(config: &ModelConfig, vb: &VarBuilder) -> Result<Self> {
        Ok(match config {
            ModelConfig::Qwen3(c) => Model::Qwen3(Qwen3::new(c, vb)?),
            ModelConfig::Qwen3Moe(c) => Model::Qwen3Moe(Qwen3Moe::new(c, vb)?),
        })
    }

    /// The configuration.
    pub fn config(&self) -> ModelConfig {
        match self {
            Model::Qwen3(m) => ModelConfig::Qwen3(m.config.clone()),
            Model::Qwen3Moe(m) => ModelConfig::Qwen3Moe(m.config.clone()),
        }
    }
}

/// Forwards a call to the architecture a [`Model`] holds.
macro_rules! each {
    ($model:expr, $m:ident => $call:expr) => {
        match $model {
            Model::Qwen3($m) => $call,
            Model::Qwen3Moe($m) => $call,
        }
    };
}

impl Module for Model {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        each!(self, m => m.visit(v))
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        each!(self, m => m.visit_mut(v))
    }
}

impl LanguageModel for Model {
    fn forward_hidden(&self, tokens: &Array, cache: Option<&mut [LayerCache]>) -> Result<Array> {
        each!(self, m => m.forward_hidden(tokens, cache))
    }
    fn forward_hidden_padded(&self, tokens: &Array, left_padding: &[i32]) -> Result<Array> {
        each!(self, m => m.forward_hidden_padded(tokens, left_padding))
    }
    fn forward_hidden_with_aux(
        &self,
        tokens: &Array,
        left_padding: Option<&[i32]>,
        token_mask: Option<&Array>,
    ) -> Result<(Array, Option<Array>)> {
        each!(self, m => m.forward_hidden_with_aux(tokens, left_padding, token_mask))
    }
    fn aux_loss_coef(&self) -> f32 {
        each!(self, m => m.aux_loss_coef())
    }
    fn logits_from_hidden(&self, hidden: &Array) -> Result<Array> {
        each!(self, m => m.logits_from_hidden(hidden))
    }
    fn with_checkpointed_logit_chunks<F>(&self, chunks: &[Array], f: F) -> Result<Vec<Vec<Array>>>
    where
        F: Fn(usize, &Array) -> Result<Vec<Array>> + 'static,
    {
        each!(self, m => m.with_checkpointed_logit_chunks(chunks, f))
    }
    fn vocab_size(&self) -> i32 {
        each!(self, m => m.vocab_size())
    }
    fn num_layers(&self) -> usize {
        each!(self, m => m.num_layers())
    }
    fn dtype(&self) -> Dtype {
        each!(self, m => m.dtype())
    }
    fn checkpoint_tensors(&self) -> Result<ParamMap> {
        each!(self, m => m.checkpoint_tensors())
    }
    fn set_gradient_checkpointing(&mut self, enabled: bool) {
        each!(self, m => m.set_gradient_checkpointing(enabled))
    }
    fn gradient_checkpointing(&self) -> bool {
        each!(self, m => m.gradient_checkpointing())
    }
    fn transformer(&self) -> Option<&Transformer> {
        each!(self, m => m.transformer())
    }
    fn transformer_mut(&mut self) -> Option<&mut Transformer> {
        each!(self, m => m.transformer_mut())
    }
}
