//! The decoder stack shared by Qwen3 and Qwen3-MoE: embeddings, pre-norm
//! blocks (attention + dense or sparse feed-forward), final norm, LM head.

use mlx_nn::layers::{Embedding, Linear, LinearConfig, RmsNorm, SwiGlu};
use mlx_nn::{Module, VarBuilder, Visitor, VisitorMut, grad_checkpoint, sequential_checkpoint};
use mlx_tensor::{Array, Dtype, fast};

use super::attention::{Attention, AttentionDims};
use super::fused::swiglu;
use super::moe::{MoeDims, SparseMoe};
use super::stacked::StackedLinear;
use crate::cache::{AttentionMask, BatchKVCache, KVCache, LayerCache, PositionOffset, causal_mask};
use crate::{Error, Result};

/// The feed-forward half of a block.
#[derive(Debug, Clone)]
pub(crate) enum FeedForward {
    /// `down(silu(gate(x)) * up(x))`; when decoding, `gate` and `up` as one
    /// product and `down` with its transposed weight kept.
    Dense(SwiGlu, StackedLinear, StackedLinear),
    /// Routed experts.
    Sparse(SparseMoe),
}

impl FeedForward {
    fn forward(&self, x: &Array, inference: bool) -> Result<(Array, Option<Array>)> {
        match self {
            FeedForward::Dense(m, gate_up, down) => {
                let gated = if inference {
                    let both = gate_up.forward(&[&m.gate_proj, &m.up_proj], x)?;
                    let width = both.dim(-1).unwrap_or(0) / 2;
                    swiglu(
                        &both.slice_axis(-1, 0, Some(width), 1)?,
                        &both.slice_axis(-1, width, None, 1)?,
                    )?
                } else {
                    swiglu(&m.gate_proj.forward(x)?, &m.up_proj.forward(x)?)?
                };
                let out = if inference {
                    down.forward(&[&m.down_proj], &gated)?
                } else {
                    m.down_proj.forward(&gated)?
                };
                Ok((out, None))
            }
            FeedForward::Sparse(m) => {
                let (y, logits) = m.forward(x)?;
                Ok((y, Some(logits)))
            }
        }
    }
}

impl Module for FeedForward {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        match self {
            FeedForward::Dense(m, ..) => m.visit(v),
            FeedForward::Sparse(m) => m.visit(v),
        }
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        match self {
            FeedForward::Dense(m, ..) => m.visit_mut(v),
            FeedForward::Sparse(m) => m.visit_mut(v),
        }
    }
}

/// What kind of feed-forward block layer `i` has.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FeedForwardKind {
    Dense { intermediate: i32 },
    Sparse(MoeDims),
}

/// One pre-norm block.
#[derive(Debug, Clone, Module)]
pub(crate) struct DecoderLayer {
    self_attn: Attention,
    mlp: FeedForward,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn new(attn: AttentionDims, ff: FeedForwardKind, vb: &VarBuilder) -> Result<Self> {
        let mlp = match ff {
            FeedForwardKind::Dense { intermediate } => FeedForward::Dense(
                SwiGlu::new(attn.hidden, intermediate, &vb.pp("mlp"))?,
                StackedLinear::default(),
                StackedLinear::default(),
            ),
            FeedForwardKind::Sparse(dims) => {
                FeedForward::Sparse(SparseMoe::new(dims, &vb.pp("mlp"))?)
            }
        };
        Ok(DecoderLayer {
            self_attn: Attention::new(attn, &vb.pp("self_attn"))?,
            mlp,
            input_layernorm: RmsNorm::new(attn.hidden, attn.eps, &vb.pp("input_layernorm"))?,
            post_attention_layernorm: RmsNorm::new(
                attn.hidden,
                attn.eps,
                &vb.pp("post_attention_layernorm"),
            )?,
        })
    }

    fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        positions: &PositionOffset,
        cache: Option<&mut LayerCache>,
    ) -> Result<(Array, Option<Array>)> {
        let inference = cache.is_some();
        let h = x.add(&self.self_attn.forward(
            &self.input_layernorm.forward(x)?,
            mask,
            positions,
            cache,
        )?)?;
        let (r, router) = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?, inference)?;
        Ok((h.add(&r)?, router))
    }

    /// [`DecoderLayer::forward`] without a cache under gradient
    /// checkpointing: the backward pass recomputes the layer's activations
    /// from its input instead of keeping them.
    fn forward_checkpointed(
        &self,
        x: &Array,
        mask: &AttentionMask,
        positions: &PositionOffset,
    ) -> Result<(Array, Option<Array>)> {
        let (mask, positions) = (mask.clone(), positions.clone());
        let mut outs = grad_checkpoint(self, std::slice::from_ref(x), move |layer, xs| {
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

/// Everything needed to build a [`Transformer`].
#[derive(Debug, Clone)]
pub(crate) struct TransformerDims {
    pub vocab: i32,
    pub attention: AttentionDims,
    pub layers: Vec<FeedForwardKind>,
    pub tie_word_embeddings: bool,
}

/// The hidden states of a forward pass and the router logits of its
/// sparse layers (when asked for).
pub(crate) struct ForwardOutput {
    pub hidden: Array,
    pub router_logits: Vec<Array>,
}

/// Embeddings, blocks, final norm and (untied) LM head, with Hugging Face
/// parameter names (`model.embed_tokens.weight`, `model.layers.0.…`,
/// `model.norm.weight`, `lm_head.weight`).
#[derive(Debug, Clone, Module)]
pub(crate) struct Transformer {
    #[module(rename = "model.embed_tokens")]
    embed_tokens: Embedding,
    #[module(rename = "model.layers")]
    layers: Vec<DecoderLayer>,
    #[module(rename = "model.norm")]
    norm: RmsNorm,
    lm_head: Option<Linear>,
    vocab: i32,
    /// Checkpoint each layer in cache-free forward passes (training).
    gradient_checkpointing: bool,
}

impl Transformer {
    pub(crate) fn new(dims: &TransformerDims, vb: &VarBuilder) -> Result<Self> {
        let hidden = dims.attention.hidden;
        let model = vb.pp("model");
        let layers_vb = model.pp("layers");
        let layers = dims
            .layers
            .iter()
            .enumerate()
            .map(|(i, &ff)| DecoderLayer::new(dims.attention, ff, &layers_vb.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if dims.tie_word_embeddings {
            None
        } else {
            Some(LinearConfig::new(hidden, dims.vocab, false).init(&vb.pp("lm_head"))?)
        };
        Ok(Transformer {
            embed_tokens: Embedding::new(dims.vocab, hidden, &model.pp("embed_tokens"))?,
            layers,
            norm: RmsNorm::new(hidden, dims.attention.eps, &model.pp("norm"))?,
            lm_head,
            vocab: dims.vocab,
            gradient_checkpointing: false,
        })
    }

    pub(crate) fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub(crate) fn vocab_size(&self) -> i32 {
        self.vocab
    }

    pub(crate) fn set_gradient_checkpointing(&mut self, enabled: bool) {
        self.gradient_checkpointing = enabled;
    }

    pub(crate) fn gradient_checkpointing(&self) -> bool {
        self.gradient_checkpointing
    }

    pub(crate) fn dtype(&self) -> Dtype {
        self.embed_tokens.weight.value.dtype()
    }

    /// Runs the blocks. `left_padding` (without a cache) masks each row's
    /// leading padding and starts its positions after it; with a cache, the
    /// cache decides masks and positions.
    pub(crate) fn run(
        &self,
        tokens: &Array,
        cache: Option<&mut [LayerCache]>,
        left_padding: Option<&[i32]>,
        want_router_logits: bool,
    ) -> Result<ForwardOutput> {
        let shape = tokens.shape();
        if shape.ndim() != 2 {
            return Err(Error::InvalidInput {
                message: format!("tokens must be [batch, length], got {}", tokens.describe()),
            });
        }
        let (batch, len) = (shape[0], shape[1]);
        if let Some(p) = left_padding
            && (p.len() != batch as usize || p.iter().any(|&x| x < 0 || x > len))
        {
            return Err(Error::InvalidInput {
                message: format!("left padding {p:?} does not fit tokens of shape {shape}"),
            });
        }
        let mut h = self.embed_tokens.forward(tokens)?;
        let mut router_logits = Vec::new();
        match cache {
            Some(caches) => {
                if caches.len() != self.layers.len() {
                    return Err(Error::InvalidCache {
                        message: format!(
                            "{} layer caches given for {} layers",
                            caches.len(),
                            self.layers.len()
                        ),
                    });
                }
                if left_padding.is_some() {
                    return Err(Error::InvalidInput {
                        message:
                            "left padding with a cache: give the padding to a batch cache instead"
                                .into(),
                    });
                }
                let first = caches.first().ok_or_else(|| Error::InvalidCache {
                    message: "no layer caches".into(),
                })?;
                let mask = first.make_mask(len)?;
                // Every layer's cache holds the same positions, so the
                // offsets are derived once per forward pass, not per layer.
                let positions = first.position_offset()?;
                for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
                    let (out, router) = layer.forward(&h, &mask, &positions, Some(cache))?;
                    h = out;
                    if want_router_logits {
                        router_logits.extend(router);
                    }
                }
            }
            None => {
                let (mask, positions) = match left_padding {
                    Some(p) if p.iter().any(|&x| x > 0) => {
                        let offsets: Vec<i32> = p.iter().map(|x| -x).collect();
                        (
                            AttentionMask::Array(causal_mask(len, 0, None, Some(p))?),
                            PositionOffset::PerRow(Array::from_slice(&offsets, &[batch])?),
                        )
                    }
                    _ => (AttentionMask::for_prompt(len), PositionOffset::Scalar(0)),
                };
                for layer in &self.layers {
                    let (out, router) = if self.gradient_checkpointing {
                        layer.forward_checkpointed(&h, &mask, &positions)?
                    } else {
                        layer.forward(&h, &mask, &positions, None)?
                    };
                    h = out;
                    if want_router_logits {
                        router_logits.extend(router);
                    }
                }
            }
        }
        Ok(ForwardOutput {
            hidden: self.norm.forward(&h)?,
            router_logits,
        })
    }

    /// Hidden states to logits: the tied embedding or the LM head.
    pub(crate) fn logits(&self, hidden: &Array) -> Result<Array> {
        match &self.lm_head {
            Some(head) => Ok(head.forward(hidden)?),
            None => Ok(self.embed_tokens.as_linear(hidden)?),
        }
    }

    /// [`Self::logits`] for a decoding step, through
    /// [`fast::few_rows_linear`] (one pass over the vocabulary's weight on a
    /// GPU for a few rows). Not differentiable there.
    pub(crate) fn decoding_logits(&self, hidden: &Array) -> Result<Array> {
        let weight = match &self.lm_head {
            Some(head) if head.bias.is_some() => return self.logits(hidden),
            Some(head) => &head.weight.value,
            None => &self.embed_tokens.weight.value,
        };
        Ok(fast::few_rows_linear(hidden, weight)?)
    }

    /// Moves every layer's query/key/value weights, and its gate/up
    /// weights, into one stacked buffer each (see [`StackedLinear::pack`]).
    pub(crate) fn pack_projections(&mut self) -> Result<()> {
        for layer in &mut self.layers {
            layer.self_attn.pack_projections()?;
            if let FeedForward::Dense(m, gate_up, _) = &mut layer.mlp {
                gate_up.pack(&mut [&mut m.gate_proj, &mut m.up_proj])?;
            }
        }
        Ok(())
    }

    /// Drops every layer's stacked projection weights.
    pub(crate) fn release_stacked(&self) {
        for layer in &self.layers {
            layer.self_attn.release_stacked();
            if let FeedForward::Dense(m, gate_up, down) = &layer.mlp {
                gate_up.release(&[&m.gate_proj, &m.up_proj]);
                down.release(&[&m.down_proj]);
            }
        }
    }

    /// `f(i, logits)` for the logits of each hidden-state chunk, chained
    /// under gradient checkpointing of the LM head (see
    /// [`LanguageModel::with_checkpointed_logit_chunks`](crate::LanguageModel::with_checkpointed_logit_chunks)).
    pub(crate) fn with_checkpointed_logit_chunks<F>(
        &self,
        hidden_chunks: &[Array],
        f: F,
    ) -> Result<Vec<Vec<Array>>>
    where
        F: Fn(usize, &Array) -> Result<Vec<Array>> + 'static,
    {
        let outs = match &self.lm_head {
            Some(head) => sequential_checkpoint(head, hidden_chunks, move |head, i, h| {
                Ok(f(i, &head.forward(h)?)?)
            })?,
            None => {
                sequential_checkpoint(&self.embed_tokens, hidden_chunks, move |embed, i, h| {
                    Ok(f(i, &embed.as_linear(h)?)?)
                })?
            }
        };
        Ok(outs)
    }

    pub(crate) fn new_cache(&self) -> Vec<LayerCache> {
        (0..self.layers.len())
            .map(|_| LayerCache::Kv(KVCache::new()))
            .collect()
    }

    pub(crate) fn new_batch_cache(&self, left_padding: &[i32]) -> Vec<LayerCache> {
        (0..self.layers.len())
            .map(|_| LayerCache::Batch(BatchKVCache::new(left_padding)))
            .collect()
    }
}
