//! Grouped-query self-attention with per-head RMS-normalised queries and
//! keys and rotary positions (the Qwen3 attention block).

use mlx_nn::layers::{Linear, LinearConfig, RmsNorm};
use mlx_nn::{Module, VarBuilder};
use mlx_tensor::{Array, fast};

use super::rope::RopeSettings;
use super::stacked::StackedLinear;
use crate::Result;
use crate::cache::{AttentionMask, LayerCache, PositionOffset};

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

/// `o_proj(sdpa(rope(q_norm(q_proj x)), rope(k_norm(k_proj x)), v_proj x))`.
#[derive(Debug, Clone, Module)]
pub(crate) struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    #[module(skip)]
    dims: AttentionDims,
    /// `q_proj`, `k_proj` and `v_proj` as one product (decoding).
    #[module(skip)]
    qkv: StackedLinear,
    /// `o_proj` with its transposed weight kept (decoding).
    #[module(skip)]
    o: StackedLinear,
}

impl Attention {
    pub(crate) fn new(dims: AttentionDims, vb: &VarBuilder) -> Result<Self> {
        let AttentionDims {
            hidden,
            heads,
            kv_heads,
            head_dim,
            eps,
            bias,
            ..
        } = dims;
        Ok(Attention {
            q_proj: LinearConfig::new(hidden, heads * head_dim, bias).init(&vb.pp("q_proj"))?,
            k_proj: LinearConfig::new(hidden, kv_heads * head_dim, bias).init(&vb.pp("k_proj"))?,
            v_proj: LinearConfig::new(hidden, kv_heads * head_dim, bias).init(&vb.pp("v_proj"))?,
            o_proj: LinearConfig::new(heads * head_dim, hidden, bias).init(&vb.pp("o_proj"))?,
            q_norm: RmsNorm::new(head_dim, eps, &vb.pp("q_norm"))?,
            k_norm: RmsNorm::new(head_dim, eps, &vb.pp("k_norm"))?,
            dims,
            qkv: StackedLinear::default(),
            o: StackedLinear::default(),
        })
    }

    /// `x: [B, L, hidden]`; `positions` is where the `L` tokens start.
    pub(crate) fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        positions: &PositionOffset,
        cache: Option<&mut LayerCache>,
    ) -> Result<Array> {
        let shape = x.shape();
        let (b, l) = (shape[0], shape[1]);
        let d = self.dims;
        let inference = cache.is_some();
        let mut rotated = false;
        let (q, k, v) = if inference {
            // Inference: one product for the three projections.
            let qkv = self
                .qkv
                .forward(&[&self.q_proj, &self.k_proj, &self.v_proj], x)?;
            let all_heads = d.heads + 2 * d.kv_heads;
            if l == 1 && self.q_norm.eps == self.k_norm.eps {
                // One position: `[B, 1, H, D]` and `[B, H, 1, D]` share a
                // layout, so the heads split without transposes, and the
                // query and key heads (adjacent) are normalised and rotated
                // together: one norm, one weight product and one rotation
                // instead of two norms and two rotations.
                let qkv = qkv.reshape(&[b, all_heads, 1, d.head_dim])?;
                let qk_heads = d.heads + d.kv_heads;
                let qk = fast::norm_rope_heads(
                    &qkv,
                    &self.q_norm.weight.value,
                    &self.k_norm.weight.value,
                    &positions.to_array()?,
                    d.heads,
                    d.kv_heads,
                    self.q_norm.eps,
                    d.rope.base,
                    d.rope.scale,
                )?;
                rotated = true;
                (
                    qk.slice_axis(1, 0, Some(d.heads), 1)?,
                    qk.slice_axis(1, d.heads, Some(qk_heads), 1)?,
                    qkv.slice_axis(1, qk_heads, Some(all_heads), 1)?,
                )
            } else if l == 1 {
                // One position: `[B, 1, H, D]` and `[B, H, 1, D]` share a
                // layout, so the heads split without transposes.
                let qkv = qkv.reshape(&[b, all_heads, 1, d.head_dim])?;
                let heads = |from: i32, n: i32| qkv.slice_axis(1, from, Some(from + n), 1);
                (
                    self.q_norm.forward(&heads(0, d.heads)?)?,
                    self.k_norm.forward(&heads(d.heads, d.kv_heads)?)?,
                    heads(d.heads + d.kv_heads, d.kv_heads)?,
                )
            } else {
                let qkv = qkv.reshape(&[b, l, all_heads, d.head_dim])?;
                let heads = |from: i32, n: i32| qkv.slice_axis(2, from, Some(from + n), 1);
                let to_heads_first = |t: Array| t.transpose(&[0, 2, 1, 3]);
                (
                    to_heads_first(self.q_norm.forward(&heads(0, d.heads)?)?)?,
                    to_heads_first(self.k_norm.forward(&heads(d.heads, d.kv_heads)?)?)?,
                    to_heads_first(heads(d.heads + d.kv_heads, d.kv_heads)?)?,
                )
            }
        } else {
            let split_heads =
                |t: Array, n: i32| -> Result<Array> { Ok(t.reshape(&[b, l, n, d.head_dim])?) };
            (
                self.q_norm
                    .forward(&split_heads(self.q_proj.forward(x)?, d.heads)?)?
                    .transpose(&[0, 2, 1, 3])?,
                self.k_norm
                    .forward(&split_heads(self.k_proj.forward(x)?, d.kv_heads)?)?
                    .transpose(&[0, 2, 1, 3])?,
                split_heads(self.v_proj.forward(x)?, d.kv_heads)?.transpose(&[0, 2, 1, 3])?,
            )
        };
        let (q, k) = if rotated {
            (q, k)
        } else {
            (
                positions.rope(&q, d.head_dim, false, d.rope.base, d.rope.scale)?,
                positions.rope(&k, d.head_dim, false, d.rope.base, d.rope.scale)?,
            )
        };
        let (k, v) = match cache {
            Some(c) => c.update_and_fetch(&k, &v)?,
            None => (k, v),
        };
        let scale = (d.head_dim as f32).powf(-0.5);
        let out = fast::scaled_dot_product_attention(&q, &k, &v, scale, mask.as_sdpa())?;
        let out = if l == 1 {
            out.reshape(&[b, 1, d.heads * d.head_dim])?
        } else {
            out.transpose(&[0, 2, 1, 3])?
                .reshape(&[b, l, d.heads * d.head_dim])?
        };
        if inference {
            self.o.forward(&[&self.o_proj], &out)
        } else {
            Ok(self.o_proj.forward(&out)?)
        }
    }

    /// Moves the query, key and value weights into one stacked buffer
    /// (see [`StackedLinear::pack`]).
    pub(crate) fn pack_projections(&mut self) -> Result<()> {
        self.qkv
            .pack(&mut [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj])
    }

    /// Drops the stacked projection weights built for decoding.
    pub(crate) fn release_stacked(&self) {
        self.qkv
            .release(&[&self.q_proj, &self.k_proj, &self.v_proj]);
        self.o.release(&[&self.o_proj]);
    }
}
