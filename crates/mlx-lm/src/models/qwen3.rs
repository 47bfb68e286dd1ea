//! Qwen3 (dense): grouped-query attention with per-head RMS-normalised
//! queries and keys, rotary positions, SwiGLU feed-forward, pre-norm blocks.
//!
//! One forward path, with or without a cache, differentiable everywhere.
//! Decoding's fast paths (stacked projections, fused kernels) live in
//! [`crate::generate::Decoder`], which reads these layers.

mod config;

use mlx_nn::layers::{DropoutKeyScope, Embedding, LinearConfig, RmsNorm};
use mlx_nn::{Module, VarBuilder, Visitor, VisitorMut, grad_checkpoint, sequential_checkpoint};
use mlx_tensor::{Array, Dtype, fast};

use super::dense_mlp::DenseMlp;
use super::layout::{cache_layout, prompt_layout};
use super::moe::SparseMoe;
use super::projection::{Projection, TokenEmbedding, adapter_dropout_key, next_block_key};
use super::transformer_model::TransformerModel;
use crate::cache::{AttentionMask, LayerCache, PositionOffset};
use crate::generate::PackedWeights;
use crate::token_ids::check_token_array;
use crate::{Error, Result};

pub use config::Qwen3Config;
pub(crate) use config::{AttentionDims, FeedForwardKind, TransformerDims};

/// `o_proj(sdpa(rope(q_norm(q_proj x)), rope(k_norm(k_proj x)), v_proj x))`.
#[derive(Debug, Clone, Module)]
pub(crate) struct Attention {
    pub(crate) q_proj: Projection,
    pub(crate) k_proj: Projection,
    pub(crate) v_proj: Projection,
    pub(crate) o_proj: Projection,
    pub(crate) q_norm: RmsNorm,
    pub(crate) k_norm: RmsNorm,
    #[module(skip)]
    pub(crate) dims: AttentionDims,
}

impl Attention {
    fn new(d: AttentionDims, vb: &VarBuilder) -> Result<Self> {
        let linear = |i, o, name| Projection::dense(LinearConfig::new(i, o, d.bias), &vb.pp(name));
        Ok(Attention {
            q_proj: linear(d.hidden, d.heads * d.head_dim, "q_proj")?,
            k_proj: linear(d.hidden, d.kv_heads * d.head_dim, "k_proj")?,
            v_proj: linear(d.hidden, d.kv_heads * d.head_dim, "v_proj")?,
            o_proj: linear(d.heads * d.head_dim, d.hidden, "o_proj")?,
            q_norm: RmsNorm::new(d.head_dim, d.eps, &vb.pp("q_norm"))?,
            k_norm: RmsNorm::new(d.head_dim, d.eps, &vb.pp("k_norm"))?,
            dims: d,
        })
    }

    /// `x: [B, L, hidden]`; `positions` is where the `L` tokens start.
    fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        positions: &PositionOffset,
        cache: Option<&mut LayerCache>,
    ) -> Result<Array> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let d = self.dims;
        // [B, L, n·D] → [B, n, L, D]
        let heads = |t: Array, n: i32| t.reshape(&[b, l, n, d.head_dim]);
        let q = self
            .q_norm
            .forward(&heads(self.q_proj.forward(x)?, d.heads)?)?;
        let k = self
            .k_norm
            .forward(&heads(self.k_proj.forward(x)?, d.kv_heads)?)?;
        let v = heads(self.v_proj.forward(x)?, d.kv_heads)?.transpose(&[0, 2, 1, 3])?;
        let rope = |t: Array| positions.rope(&t, d.head_dim, false, d.rope.base, d.rope.scale);
        let q = rope(q.transpose(&[0, 2, 1, 3])?)?;
        let k = rope(k.transpose(&[0, 2, 1, 3])?)?;
        let (k, v) = match cache {
            Some(c) => c.update_and_fetch(&k, &v)?,
            None => (k, v),
        };
        let scale = (d.head_dim as f32).powf(-0.5);
        let out = fast::scaled_dot_product_attention(&q, &k, &v, scale, mask.as_sdpa())?;
        let out = out
            .transpose(&[0, 2, 1, 3])?
            .reshape(&[b, l, d.heads * d.head_dim])?;
        self.o_proj.forward(&out)
    }
}

/// The feed-forward half of a block: SwiGLU, or routed experts (Qwen3-MoE).
#[derive(Debug, Clone)]
pub(crate) enum FeedForward {
    /// `down(silu(gate(x)) * up(x))`.
    Dense(DenseMlp),
    /// Routed experts (see [`super::Qwen3Moe`]).
    Sparse(SparseMoe),
}

impl FeedForward {
    /// The output, and the router logits of a sparse block.
    pub(crate) fn forward(&self, x: &Array) -> Result<(Array, Option<Array>)> {
        match self {
            FeedForward::Dense(m) => Ok((m.forward(x)?, None)),
            FeedForward::Sparse(m) => m.forward(x).map(|(y, logits)| (y, Some(logits))),
        }
    }
}

impl Module for FeedForward {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        match self {
            FeedForward::Dense(m) => m.visit(v),
            FeedForward::Sparse(m) => m.visit(v),
        }
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        match self {
            FeedForward::Dense(m) => m.visit_mut(v),
            FeedForward::Sparse(m) => m.visit_mut(v),
        }
    }
}

/// One pre-norm block.
#[derive(Debug, Clone, Module)]
pub(crate) struct DecoderLayer {
    pub(crate) self_attn: Attention,
    pub(crate) mlp: FeedForward,
    pub(crate) input_layernorm: RmsNorm,
    pub(crate) post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn new(attn: AttentionDims, ff: FeedForwardKind, vb: &VarBuilder) -> Result<Self> {
        let mlp = match ff {
            FeedForwardKind::Dense(width) => {
                FeedForward::Dense(DenseMlp::new(attn.hidden, width, &vb.pp("mlp"))?)
            }
            FeedForwardKind::Sparse(dims) => {
                FeedForward::Sparse(SparseMoe::new(dims, &vb.pp("mlp"))?)
            }
        };
        let norm = |name| RmsNorm::new(attn.hidden, attn.eps, &vb.pp(name));
        Ok(DecoderLayer {
            self_attn: Attention::new(attn, &vb.pp("self_attn"))?,
            mlp,
            input_layernorm: norm("input_layernorm")?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
        })
    }

    /// The block's output and its router logits (sparse blocks).
    fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        positions: &PositionOffset,
        cache: Option<&mut LayerCache>,
    ) -> Result<(Array, Option<Array>)> {
        let attn =
            self.self_attn
                .forward(&self.input_layernorm.forward(x)?, mask, positions, cache)?;
        let h = x.add(&attn)?;
        let (r, router) = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?;
        Ok((h.add(&r)?, router))
    }

    /// [`DecoderLayer::forward`] without a cache, under gradient
    /// checkpointing: the backward pass recomputes the activations (with
    /// the same adapter dropout masks, drawn from `dropout_key`).
    fn forward_checkpointed(
        &self,
        x: &Array,
        mask: &AttentionMask,
        positions: &PositionOffset,
        dropout_key: Option<Array>,
    ) -> Result<(Array, Option<Array>)> {
        let (mask, positions) = (mask.clone(), positions.clone());
        let mut outs = grad_checkpoint(self, std::slice::from_ref(x), move |layer, xs| {
            let _scope = dropout_key.clone().map(DropoutKeyScope::enter);
            let (y, router) = layer.forward(&xs[0], &mask, &positions, None)?;
            Ok(std::iter::once(y).chain(router).collect())
        })?;
        let router = (outs.len() > 1).then(|| outs.remove(1));
        let y = outs.pop().ok_or_else(|| Error::InvalidInput {
            message: "checkpointed layer returned no output".into(),
        })?;
        Ok((y, router))
    }
}

/// Embeddings, blocks, final norm and (untied) LM head, with Hugging Face
/// parameter names (`model.embed_tokens.weight`, `model.layers.0.…`,
/// `model.norm.weight`, `lm_head.weight`). Shared by Qwen3 and Qwen3-MoE.
#[derive(Debug, Clone, Module)]
pub struct Transformer {
    #[module(rename = "model.embed_tokens")]
    pub(crate) embed_tokens: TokenEmbedding,
    #[module(rename = "model.layers")]
    pub(crate) layers: Vec<DecoderLayer>,
    #[module(rename = "model.norm")]
    pub(crate) norm: RmsNorm,
    pub(crate) lm_head: Option<Projection>,
    #[module(skip)]
    vocab: i32,
    /// Checkpoint each layer in forward passes without a cache (training).
    #[module(skip)]
    pub(crate) gradient_checkpointing: bool,
    /// Buffers [`crate::generate::pack_weights`] made (decoding reads them;
    /// the forward pass never does).
    #[module(skip)]
    pub(crate) packed: PackedWeights,
}

impl Transformer {
    pub(crate) fn new(dims: &TransformerDims, vb: &VarBuilder) -> Result<Self> {
        let (hidden, model) = (dims.attention.hidden, vb.pp("model"));
        let layers = (dims.layers.iter().enumerate())
            .map(|(i, &ff)| DecoderLayer::new(dims.attention, ff, &model.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = match dims.tie_word_embeddings {
            true => None,
            false => Some(Projection::dense(
                LinearConfig::new(hidden, dims.vocab, false),
                &vb.pp("lm_head"),
            )?),
        };
        Ok(Transformer {
            embed_tokens: TokenEmbedding::Dense(Embedding::new(
                dims.vocab,
                hidden,
                &model.pp("embed_tokens"),
            )?),
            layers,
            norm: RmsNorm::new(hidden, dims.attention.eps, &model.pp("norm"))?,
            lm_head,
            vocab: dims.vocab,
            gradient_checkpointing: false,
            packed: PackedWeights::default(),
        })
    }

    pub(crate) fn vocab_size(&self) -> i32 {
        self.vocab
    }

    pub(crate) fn dtype(&self) -> Dtype {
        self.embed_tokens.float_dtype()
    }

    /// The final hidden states `[B, L, hidden]` and the router logits of
    /// the sparse blocks. With a cache, the cache decides masks and
    /// positions; without one, `left_padding` masks each row's leading
    /// padding and starts its positions after it.
    pub(crate) fn forward(
        &self,
        tokens: &Array,
        cache: Option<&mut [LayerCache]>,
        left_padding: Option<&[i32]>,
    ) -> Result<(Array, Vec<Array>)> {
        check_token_array(tokens, self.vocab)?;
        let (mask, positions) = match (&cache, left_padding) {
            (Some(caches), None) => self.cache_layout(caches, tokens)?,
            (None, p) => prompt_layout(p, tokens)?,
            (Some(_), Some(_)) => {
                return Err(Error::InvalidInput {
                    message: "left padding with a cache: give the padding to a batch cache instead"
                        .into(),
                });
            }
        };
        // Adapter dropout (training): one key per block, drawn before it runs.
        let mut dropout_keys = match cache {
            None => adapter_dropout_key(self.projections().into_iter().map(|(_, p)| p))?,
            Some(_) => None,
        };
        let mut h = self.embed_tokens.forward(tokens)?;
        let mut router_logits = Vec::new();
        let mut caches = cache.map(|c| c.iter_mut());
        for layer in &self.layers {
            let cache = caches.as_mut().and_then(Iterator::next);
            let key = next_block_key(&mut dropout_keys)?;
            let (out, router) = match cache {
                None if self.gradient_checkpointing => {
                    layer.forward_checkpointed(&h, &mask, &positions, key)?
                }
                cache => {
                    let _scope = key.map(DropoutKeyScope::enter);
                    layer.forward(&h, &mask, &positions, cache)?
                }
            };
            h = out;
            router_logits.extend(router);
        }
        Ok((self.norm.forward(&h)?, router_logits))
    }

    /// The mask and positions of `tokens` after the cached ones.
    pub(crate) fn cache_layout(
        &self,
        caches: &[LayerCache],
        tokens: &Array,
    ) -> Result<(AttentionMask, PositionOffset)> {
        cache_layout(caches, self.layers.len(), tokens)
    }

    /// Hidden states to logits: the tied embedding or the LM head.
    pub(crate) fn logits(&self, hidden: &Array) -> Result<Array> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => self.embed_tokens.as_linear(hidden),
        }
    }

    /// `f(i, logits)` per hidden-state chunk under gradient checkpointing
    /// of the LM head (see [`LanguageModel::with_checkpointed_logit_chunks`]).
    pub(crate) fn checkpointed_logit_chunks<F>(
        &self,
        chunks: &[Array],
        f: F,
    ) -> Result<Vec<Vec<Array>>>
    where
        F: Fn(usize, &Array) -> Result<Vec<Array>> + 'static,
    {
        Ok(match &self.lm_head {
            Some(head) => {
                sequential_checkpoint(head, chunks, move |head, i, h| Ok(f(i, &head.forward(h)?)?))?
            }
            None => sequential_checkpoint(&self.embed_tokens, chunks, move |embed, i, h| {
                Ok(f(i, &embed.as_linear(h)?)?)
            })?,
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

// The `LanguageModel` methods come with this (see `transformer_model.rs`).
impl TransformerModel for Qwen3 {
    fn inner(&self) -> &Transformer {
        &self.inner
    }
    fn inner_mut(&mut self) -> &mut Transformer {
        &mut self.inner
    }
}
