//! The decoding step: the model's layers run with decoding's fast paths.
//!
//! Decoding a few rows at a time is bound by the number of kernels per
//! step, not by bytes, so a [`Decoder`] computes what the plain forward pass
//! computes with fewer of them:
//!
//! - the query, key and value projections (and a SwiGLU block's gate and up
//!   projections) read the same input: their weights stacked, three (two)
//!   products become one. [`pack_weights`] stores those weights in one
//!   buffer with every parameter a view of its rows, so the stacked product
//!   costs no second copy; unpacked (or updated) weights are stacked into a
//!   copy when the decoder is made, which lives as long as the decoder.
//! - products without a bias go through [`fast::few_rows_linear`] (one pass
//!   over the weight on a GPU for a few rows), the LM head included;
//! - at one position, `[B, 1, H, D]` and `[B, H, 1, D]` share a layout, so
//!   the heads split without transposes, and the query and key heads are
//!   normalised and rotated together by [`fast::norm_rope_heads`].
//!
//! None of it is differentiated: training and scoring use the model's own
//! forward pass. The parameters' names, values and gradients are untouched.

use mlx_nn::layers::Linear;
use mlx_tensor::{Array, concatenate, eval, fast};

use crate::cache::{AttentionMask, LayerCache, PositionOffset};
use crate::models::fused::swiglu;
use crate::models::{Attention, DenseMlp, FeedForward, Projection, Transformer};
use crate::token_ids::CheckedTokens;
use crate::{Error, LanguageModel, Result};

/// The buffers [`pack_weights`] made: per layer, the stacked query/key/value
/// weights and the stacked gate/up weights whose views are the parameters.
/// The model only stores them; decoding reads them.
#[derive(Debug, Clone, Default)]
pub struct PackedWeights {
    layers: Vec<PackedLayer>,
}

#[derive(Debug, Clone, Default)]
struct PackedLayer {
    qkv: Option<Stacked>,
    gate_up: Option<Stacked>,
}

/// Weights (and biases) stacked along the output axis, with the arrays they
/// were built from (holding them keeps their identities from being reused,
/// so an identity match always means the same values).
#[derive(Debug, Clone)]
struct Stacked {
    sources: Vec<Array>,
    /// `[Σ out_i, in]`.
    weight: Array,
    /// Its transposed view, kept so that a product does not add a node.
    weight_t: Array,
    bias: Option<Array>,
}

/// Several projections of one input as one product.
enum Product<'m> {
    Stacked(Stacked),
    /// Layers that disagree on having a bias, or that are not all dense
    /// (quantized, adapted): one product each.
    Separate(Vec<&'m Projection>),
}

impl Product<'_> {
    /// `[..., Σ out_i]`: the outputs side by side along the last axis.
    fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            Product::Separate(layers) => {
                let outs = layers
                    .iter()
                    .map(|l| l.forward(x))
                    .collect::<Result<Vec<_>>>()?;
                Ok(concatenate(&outs.iter().collect::<Vec<_>>(), -1)?)
            }
            Product::Stacked(s) => Ok(match &s.bias {
                Some(b) => b.addmm(x, &s.weight_t, 1.0, 1.0)?,
                None => fast::few_rows_linear(x, &s.weight)?,
            }),
        }
    }
}

/// One projection on a decoding step's few rows (layers that are not
/// dense run their own forward pass).
fn project(layer: &Projection, x: &Array) -> Result<Array> {
    let Some(layer) = layer.as_dense() else {
        return layer.forward(x);
    };
    let weight = &layer.weight.value;
    Ok(match &layer.bias {
        Some(b) => b.value.addmm(x, &weight.t()?, 1.0, 1.0)?,
        None => fast::few_rows_linear(x, weight)?,
    })
}

/// One layer's stacked products.
struct FastLayer<'m> {
    qkv: Product<'m>,
    gate_up: Option<Product<'m>>,
}

/// Runs decoding steps of a model: prompt chunks into a cache, then the
/// logits of each new token. Made once per generation from `&model` (so the
/// model cannot change under it); what it stacks lives as long as it does.
pub struct Decoder<'m, M: LanguageModel> {
    model: &'m M,
    fast: Option<(&'m Transformer, Vec<FastLayer<'m>>)>,
}

impl<'m, M: LanguageModel> Decoder<'m, M> {
    /// A decoder for `model`: its packed weights, or stacked copies of the
    /// weights that are not packed. A model without Qwen3-style layers
    /// ([`LanguageModel::transformer`]) decodes through its own forward pass.
    pub fn new(model: &'m M) -> Result<Self> {
        let fast = match model.transformer() {
            Some(t) => Some((t, fast_layers(t)?)),
            None => None,
        };
        Ok(Decoder { model, fast })
    }

    /// The model.
    pub fn model(&self) -> &'m M {
        self.model
    }

    /// Appends `tokens` (`[B, L]`) to `cache` and returns the last hidden
    /// states `[B, L, hidden]`.
    pub fn prefill(&self, tokens: &CheckedTokens, cache: &mut [LayerCache]) -> Result<Array> {
        match &self.fast {
            Some((t, layers)) => hidden(t, layers, tokens.array(), cache),
            None => self.model.forward_hidden(tokens.array(), Some(cache)),
        }
    }

    /// Appends `tokens` (`[B, L]`) to `cache` and returns their logits
    /// `[B, L, vocab]`.
    pub fn step(&self, tokens: &CheckedTokens, cache: &mut [LayerCache]) -> Result<Array> {
        let Some((t, layers)) = &self.fast else {
            return self.model.forward(tokens.array(), Some(cache));
        };
        let hidden = hidden(t, layers, tokens.array(), cache)?;
        let weight = match (&t.lm_head, t.embed_tokens.as_dense()) {
            (Some(head), _) => match head.as_dense() {
                Some(l) if l.bias.is_none() => &l.weight.value,
                _ => return t.logits(&hidden),
            },
            (None, Some(embed)) => &embed.weight.value,
            (None, None) => return t.logits(&hidden),
        };
        Ok(fast::few_rows_linear(&hidden, weight)?)
    }

    /// The greedy next tokens `[B, 1]` after logits `[B, L, vocab]` of a
    /// step (the last position's argmax): ids in range by construction, so
    /// the next step needs no check.
    pub fn greedy(&self, logits: &Array) -> Result<CheckedTokens> {
        let shape = logits.shape();
        let vocab = self.model.vocab_size();
        let (rows, len) = match shape[..] {
            [b, l, v] if v == vocab && l > 0 => (b, l),
            _ => {
                return Err(Error::InvalidInput {
                    message: format!("logits must be [batch, length, {vocab}], got {shape}"),
                });
            }
        };
        let tokens = match len {
            1 => logits.argmax(Some(-1), false)?,
            _ => logits
                .slice_axis(1, len - 1, Some(len), 1)?
                .argmax(Some(-1), false)?,
        };
        let tokens = tokens.reshape(&[rows, 1])?;
        Ok(CheckedTokens::known(tokens))
    }
}

/// Each layer's stacked products, from its packed buffers where they are
/// still the parameters' own.
fn fast_layers(t: &Transformer) -> Result<Vec<FastLayer<'_>>> {
    let none = PackedLayer::default();
    (t.layers.iter().enumerate())
        .map(|(i, layer)| {
            let packed = t.packed.layers.get(i).unwrap_or(&none);
            let a = &layer.self_attn;
            Ok(FastLayer {
                qkv: product(&[&a.q_proj, &a.k_proj, &a.v_proj], packed.qkv.as_ref())?,
                gate_up: match &layer.mlp {
                    FeedForward::Dense(m) => Some(product(
                        &[&m.gate_proj, &m.up_proj],
                        packed.gate_up.as_ref(),
                    )?),
                    FeedForward::Sparse(_) => None,
                },
            })
        })
        .collect()
}

fn product<'m>(projections: &[&'m Projection], packed: Option<&Stacked>) -> Result<Product<'m>> {
    let dense: Option<Vec<&Linear>> = projections.iter().map(|p| p.as_dense()).collect();
    let layers = match dense {
        Some(layers) if !mixed_bias(&layers) => layers,
        _ => return Ok(Product::Separate(projections.to_vec())),
    };
    let layers = layers.as_slice();
    if let Some(p) = packed
        && same_arrays(&p.sources, &sources_of(layers))
    {
        return Ok(Product::Stacked(p.clone()));
    }
    let (weight, bias) = concatenated(layers)?;
    Ok(Product::Stacked(Stacked {
        sources: sources_of(layers),
        weight_t: weight.t()?,
        weight,
        bias,
    }))
}

/// The blocks over `tokens` after the cached positions.
fn hidden(
    t: &Transformer,
    fast: &[FastLayer<'_>],
    tokens: &Array,
    caches: &mut [LayerCache],
) -> Result<Array> {
    let (mask, positions) = t.cache_layout(caches, tokens)?;
    let mut h = t.embed_tokens.forward(tokens)?;
    for ((layer, f), cache) in t.layers.iter().zip(fast).zip(caches.iter_mut()) {
        let normed = layer.input_layernorm.forward(&h)?;
        let h1 = h.add(&attention(
            &layer.self_attn,
            &f.qkv,
            &normed,
            &mask,
            &positions,
            cache,
        )?)?;
        let normed = layer.post_attention_layernorm.forward(&h1)?;
        let r = match (&layer.mlp, &f.gate_up) {
            (FeedForward::Dense(m), Some(gate_up)) => feed_forward(m, gate_up, &normed)?,
            (mlp, _) => mlp.forward(&normed)?.0,
        };
        h = h1.add(&r)?;
    }
    Ok(t.norm.forward(&h)?)
}

/// `down(silu(gate(x)) * up(x))` with the gate and up products as one.
fn feed_forward(m: &DenseMlp, gate_up: &Product<'_>, x: &Array) -> Result<Array> {
    let both = gate_up.forward(x)?;
    let (width, _) = m.gate_proj.dims();
    let gated = swiglu(
        &both.slice_axis(-1, 0, Some(width), 1)?,
        &both.slice_axis(-1, width, None, 1)?,
    )?;
    project(&m.down_proj, &gated)
}

/// The attention block of a decoding step (see the module docs).
fn attention(
    a: &Attention,
    qkv: &Product<'_>,
    x: &Array,
    mask: &AttentionMask,
    positions: &PositionOffset,
    cache: &mut LayerCache,
) -> Result<Array> {
    let (b, l) = (x.shape()[0], x.shape()[1]);
    let d = a.dims;
    let qkv = qkv.forward(x)?;
    let all_heads = d.heads + 2 * d.kv_heads;
    let qk_heads = d.heads + d.kv_heads;
    let (q, k, v) = if l == 1 {
        // `[B, 1, H, D]` is `[B, H, 1, D]`: the heads split without transposes.
        let qkv = qkv.reshape(&[b, all_heads, 1, d.head_dim])?;
        let heads = |from: i32, to: i32| qkv.slice_axis(1, from, Some(to), 1);
        if a.q_norm.eps == a.k_norm.eps {
            // The query and key heads (adjacent) normalised and rotated
            // together: one norm and one rotation instead of two each.
            let qk = fast::norm_rope_heads(
                &qkv,
                &a.q_norm.weight.value,
                &a.k_norm.weight.value,
                &positions.to_array()?,
                d.heads,
                d.kv_heads,
                a.q_norm.eps,
                d.rope.base,
                d.rope.scale,
            )?;
            let v = heads(qk_heads, all_heads)?;
            let q = qk.slice_axis(1, 0, Some(d.heads), 1)?;
            let k = qk.slice_axis(1, d.heads, Some(qk_heads), 1)?;
            return finish(a, q, k, v, mask, cache, b, l);
        }
        (
            a.q_norm.forward(&heads(0, d.heads)?)?,
            a.k_norm.forward(&heads(d.heads, qk_heads)?)?,
            heads(qk_heads, all_heads)?,
        )
    } else {
        let qkv = qkv.reshape(&[b, l, all_heads, d.head_dim])?;
        let heads = |from: i32, to: i32| qkv.slice_axis(2, from, Some(to), 1);
        let to_heads_first = |t: Array| t.transpose(&[0, 2, 1, 3]);
        (
            to_heads_first(a.q_norm.forward(&heads(0, d.heads)?)?)?,
            to_heads_first(a.k_norm.forward(&heads(d.heads, qk_heads)?)?)?,
            to_heads_first(heads(qk_heads, all_heads)?)?,
        )
    };
    let rope = |t: &Array| positions.rope(t, d.head_dim, false, d.rope.base, d.rope.scale);
    finish(a, rope(&q)?, rope(&k)?, v, mask, cache, b, l)
}

/// Attention over the cache of rotated queries and keys, then `o_proj`.
#[allow(clippy::too_many_arguments)]
fn finish(
    a: &Attention,
    q: Array,
    k: Array,
    v: Array,
    mask: &AttentionMask,
    cache: &mut LayerCache,
    b: i32,
    l: i32,
) -> Result<Array> {
    let d = a.dims;
    let (k, v) = cache.update_and_fetch(&k, &v)?;
    let scale = (d.head_dim as f32).powf(-0.5);
    let out = fast::scaled_dot_product_attention(&q, &k, &v, scale, mask.as_sdpa())?;
    let out = if l == 1 {
        out.reshape(&[b, 1, d.heads * d.head_dim])?
    } else {
        out.transpose(&[0, 2, 1, 3])?
            .reshape(&[b, l, d.heads * d.head_dim])?
    };
    project(&a.o_proj, &out)
}

/// Stores every layer's query/key/value weights, and its gate/up weights,
/// in one buffer each and makes each parameter a view of its rows, so that
/// decoding reads the parameters themselves: no stacked copy. Values, names
/// and shapes are unchanged. The loaders call it; call it again after
/// replacing parameters (an optimiser step, a cast, a load) and before
/// generating when memory matters — otherwise each [`Decoder`] stacks a
/// copy (correct, but holding those weights twice while it lives). Layers
/// that disagree on having a bias, and layers already packed, are left as
/// they are; models without Qwen3-style layers are unchanged.
pub fn pack_weights<M: LanguageModel>(model: &mut M) -> Result<()> {
    let Some(t) = model.transformer_mut() else {
        return Ok(());
    };
    let mut packed = std::mem::take(&mut t.packed.layers);
    packed.resize_with(t.layers.len(), PackedLayer::default);
    for (layer, p) in t.layers.iter_mut().zip(&mut packed) {
        let a = &mut layer.self_attn;
        if let (Some(q), Some(k), Some(v)) = (
            a.q_proj.as_dense_mut(),
            a.k_proj.as_dense_mut(),
            a.v_proj.as_dense_mut(),
        ) {
            pack(&mut [q, k, v], &mut p.qkv)?;
        } else {
            p.qkv = None;
        }
        if let FeedForward::Dense(m) = &mut layer.mlp
            && let (Some(gate), Some(up)) = (m.gate_proj.as_dense_mut(), m.up_proj.as_dense_mut())
        {
            pack(&mut [gate, up], &mut p.gate_up)?;
        } else {
            p.gate_up = None;
        }
    }
    t.packed.layers = packed;
    Ok(())
}

/// Packs `layers` into `slot` unless they are packed there already.
fn pack(layers: &mut [&mut Linear], slot: &mut Option<Stacked>) -> Result<()> {
    let refs: Vec<&Linear> = layers.iter().map(|l| &**l).collect();
    if mixed_bias(&refs) {
        return Ok(());
    }
    if slot
        .as_ref()
        .is_some_and(|s| same_arrays(&s.sources, &sources_of(&refs)))
    {
        return Ok(());
    }
    // An earlier buffer is not needed to build the new one.
    *slot = None;
    let widths = refs.iter().map(|l| rows(l)).collect::<Result<Vec<_>>>()?;
    let (weight, bias) = concatenated(&refs)?;
    let mut outputs = vec![&weight];
    outputs.extend(bias.as_ref());
    eval(&outputs)?;
    let mut views = Vec::with_capacity(2 * layers.len());
    let mut start = 0;
    for (layer, n) in layers.iter_mut().zip(widths) {
        let view = |stacked: &Array| stacked.slice_axis(0, start, Some(start + n), 1);
        layer.weight.value = view(&weight)?;
        views.push(layer.weight.value.clone());
        if let (Some(b), Some(stacked)) = (layer.bias.as_mut(), bias.as_ref()) {
            b.value = view(stacked)?;
            views.push(b.value.clone());
        }
        start += n;
    }
    // Views of evaluated arrays: no copies, and nothing left to compute.
    eval(&views.iter().collect::<Vec<_>>())?;
    *slot = Some(Stacked {
        sources: views,
        weight_t: weight.t()?,
        weight,
        bias,
    });
    Ok(())
}

/// A projection's output width (its weight's rows).
fn rows(layer: &Linear) -> Result<i32> {
    let weight = &layer.weight.value;
    weight.dim(0).ok_or_else(|| Error::InvalidInput {
        message: format!("a projection weight {} has no rows", weight.describe()),
    })
}

/// Whether some of `layers` have a bias and others not.
fn mixed_bias(layers: &[&Linear]) -> bool {
    let with_bias = layers.iter().filter(|l| l.bias.is_some()).count();
    with_bias != 0 && with_bias != layers.len()
}

/// `layers`' weights stacked along the output axis (`[Σ out_i, in]`), and
/// their biases likewise when every layer has one.
fn concatenated(layers: &[&Linear]) -> Result<(Array, Option<Array>)> {
    let weights: Vec<&Array> = layers.iter().map(|l| &l.weight.value).collect();
    let biases: Option<Vec<&Array>> = layers
        .iter()
        .map(|l| l.bias.as_ref().map(|b| &b.value))
        .collect();
    let bias = match biases {
        Some(b) if !b.is_empty() => Some(concatenate(&b, 0)?),
        _ => None,
    };
    Ok((concatenate(&weights, 0)?, bias))
}

/// The parameters of `layers`: each weight, then its bias.
fn sources_of(layers: &[&Linear]) -> Vec<Array> {
    layers
        .iter()
        .flat_map(|l| {
            std::iter::once(l.weight.value.clone()).chain(l.bias.iter().map(|b| b.value.clone()))
        })
        .collect()
}

/// Whether `a` and `b` are the same arrays (by identity), in order.
fn same_arrays(a: &[Array], b: &[Array]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.id() == y.id())
}
