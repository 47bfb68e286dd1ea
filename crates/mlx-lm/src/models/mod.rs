//! Model architectures: [`Qwen3`] (dense) and [`Qwen3Moe`], and [`Model`],
//! which holds either, chosen by a config's `model_type`.
//!
//! All of them implement [`LanguageModel`], so generation, scoring and
//! training work with any of them.

mod attention;
mod config_checks;
pub(crate) mod experts;
mod fused;
mod moe;
mod qwen3;
mod qwen3_moe;
mod rope;
mod stacked;
mod transformer;

use mlx_nn::{ModuleExt, ParamMap, VarBuilder, Visitor, VisitorMut};
use mlx_tensor::{Array, Dtype};
use serde_json::Value;

pub use qwen3::{Qwen3, Qwen3Config};
pub use qwen3_moe::{Qwen3Moe, Qwen3MoeConfig};

use crate::cache::LayerCache;
use crate::token_ids::{CheckedTokens, check_token_array};
use crate::{Error, LanguageModel, Result};
use transformer::Transformer;

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

impl mlx_nn::Module for Model {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        match self {
            Model::Qwen3(m) => m.visit(v),
            Model::Qwen3Moe(m) => m.visit(v),
        }
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        match self {
            Model::Qwen3(m) => m.visit_mut(v),
            Model::Qwen3Moe(m) => m.visit_mut(v),
        }
    }
}

/// Router settings of a mixture-of-experts model.
#[derive(Debug, Clone, Copy)]
struct Router {
    experts: i32,
    top_k: i32,
    coef: f32,
}

/// Access to the shared decoder (implemented by every model type).
trait Decoder {
    fn decoder(&self) -> &Transformer;
    fn decoder_mut(&mut self) -> &mut Transformer;
    fn router(&self) -> Option<Router>;
}

impl Decoder for Qwen3 {
    fn decoder(&self) -> &Transformer {
        &self.inner
    }
    fn decoder_mut(&mut self) -> &mut Transformer {
        &mut self.inner
    }
    fn router(&self) -> Option<Router> {
        None
    }
}

impl Decoder for Qwen3Moe {
    fn decoder(&self) -> &Transformer {
        &self.inner
    }
    fn decoder_mut(&mut self) -> &mut Transformer {
        &mut self.inner
    }
    fn router(&self) -> Option<Router> {
        (self.config.num_experts > 0).then_some(Router {
            experts: self.config.num_experts,
            top_k: self.config.num_experts_per_tok,
            coef: self.config.router_aux_loss_coef as f32,
        })
    }
}

impl Decoder for Model {
    fn decoder(&self) -> &Transformer {
        match self {
            Model::Qwen3(m) => m.decoder(),
            Model::Qwen3Moe(m) => m.decoder(),
        }
    }
    fn decoder_mut(&mut self) -> &mut Transformer {
        match self {
            Model::Qwen3(m) => m.decoder_mut(),
            Model::Qwen3Moe(m) => m.decoder_mut(),
        }
    }
    fn router(&self) -> Option<Router> {
        match self {
            Model::Qwen3(m) => m.router(),
            Model::Qwen3Moe(m) => m.router(),
        }
    }
}

macro_rules! impl_language_model {
    ($($ty:ty),*) => {$(
        impl LanguageModel for $ty {
            fn forward(&self, tokens: &Array, cache: Option<&mut [LayerCache]>) -> Result<Array> {
                self.forward_checked(&CheckedTokens::new(tokens, self.vocab_size())?, cache)
            }

            fn forward_checked(&self, tokens: &CheckedTokens, cache: Option<&mut [LayerCache]>) -> Result<Array> {
                let d = self.decoder();
                // With a cache this is inference: nothing is differentiated.
                let decoding = cache.is_some();
                let hidden = d.run(tokens.array(), cache, None, false)?.hidden;
                if decoding { d.decoding_logits(&hidden) } else { d.logits(&hidden) }
            }

            fn forward_hidden(&self, tokens: &Array, cache: Option<&mut [LayerCache]>) -> Result<Array> {
                self.forward_hidden_checked(&CheckedTokens::new(tokens, self.vocab_size())?, cache)
            }

            fn forward_hidden_checked(&self, tokens: &CheckedTokens, cache: Option<&mut [LayerCache]>) -> Result<Array> {
                Ok(self.decoder().run(tokens.array(), cache, None, false)?.hidden)
            }

            fn forward_hidden_padded(&self, tokens: &Array, left_padding: &[i32]) -> Result<Array> {
                check_token_array(tokens, self.vocab_size())?;
                Ok(self.decoder().run(tokens, None, Some(left_padding), false)?.hidden)
            }

            fn forward_hidden_with_aux(
                &self,
                tokens: &Array,
                left_padding: Option<&[i32]>,
                token_mask: Option<&Array>,
            ) -> Result<(Array, Option<Array>)> {
                check_token_array(tokens, self.vocab_size())?;
                let Some(router) = self.router() else {
                    return Ok((self.decoder().run(tokens, None, left_padding, false)?.hidden, None));
                };
                let out = self.decoder().run(tokens, None, left_padding, true)?;
                let padding_mask;
                let mask = match (token_mask, left_padding) {
                    (Some(m), _) => Some(m),
                    (None, Some(p)) => {
                        padding_mask = left_padding_mask(p, tokens.dim(1).unwrap_or(0))?;
                        Some(&padding_mask)
                    }
                    (None, None) => None,
                };
                let aux = moe::load_balancing_loss(&out.router_logits, router.experts, router.top_k, mask)?;
                Ok((out.hidden, aux))
            }

            fn aux_loss_coef(&self) -> f32 {
                self.router().map_or(0.0, |r| r.coef)
            }

            fn logits_from_hidden(&self, hidden: &Array) -> Result<Array> {
                self.decoder().logits(hidden)
            }

            fn new_cache(&self) -> Vec<LayerCache> {
                self.decoder().new_cache()
            }

            fn new_batch_cache(&self, left_padding: &[i32]) -> Result<Vec<LayerCache>> {
                if left_padding.iter().any(|&p| p < 0) {
                    return Err(Error::InvalidInput { message: format!("negative left padding {left_padding:?}") });
                }
                Ok(self.decoder().new_batch_cache(left_padding))
            }

            fn vocab_size(&self) -> i32 {
                self.decoder().vocab_size()
            }

            fn num_layers(&self) -> usize {
                self.decoder().num_layers()
            }

            fn dtype(&self) -> Dtype {
                self.decoder().dtype()
            }

            fn checkpoint_tensors(&self) -> Result<ParamMap> {
                experts::unstack_experts(self.parameters())
            }

            fn with_checkpointed_logit_chunks<F>(
                &self,
                hidden_chunks: &[Array],
                f: F,
            ) -> Result<Vec<Vec<Array>>>
            where
                F: Fn(usize, &Array) -> Result<Vec<Array>> + 'static,
            {
                self.decoder().with_checkpointed_logit_chunks(hidden_chunks, f)
            }

            fn set_gradient_checkpointing(&mut self, enabled: bool) {
                self.decoder_mut().set_gradient_checkpointing(enabled);
            }

            fn gradient_checkpointing(&self) -> bool {
                self.decoder().gradient_checkpointing()
            }

            fn release_inference_weights(&self) {
                self.decoder().release_stacked();
            }

            fn pack_inference_weights(&mut self) -> Result<()> {
                self.decoder_mut().pack_projections()
            }
        }
    )*};
}

impl_language_model!(Qwen3, Qwen3Moe, Model);

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
