//! A tiny decoder-only transformer (Qwen3-style names) built from this
//! crate's layers: RoPE attention through MLX's fused
//! `scaled_dot_product_attention`, RMSNorm and a SwiGLU MLP.

use mlx_nn::layers::{Embedding, Linear, LinearConfig, RmsNorm, SwiGlu};
use mlx_nn::{Module, Result, VarBuilder, Visitor, VisitorMut};
use mlx_tensor::Array;
use mlx_tensor::fast::{self, SdpaMask};

/// Sizes of the tiny model.
#[derive(Clone, Copy, Debug)]
pub struct TinyConfig {
    pub vocab: i32,
    pub hidden: i32,
    pub heads: i32,
    pub intermediate: i32,
    pub layers: usize,
}

#[derive(Clone, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: RmsNorm,
    pub k_norm: RmsNorm,
    pub heads: i32,
}

impl Attention {
    fn new(cfg: &TinyConfig, vb: &VarBuilder) -> Result<Self> {
        let d = cfg.hidden;
        let head_dim = d / cfg.heads;
        Ok(Attention {
            q_proj: LinearConfig::new(d, d, false).init(&vb.pp("q_proj"))?,
            k_proj: LinearConfig::new(d, d, false).init(&vb.pp("k_proj"))?,
            v_proj: LinearConfig::new(d, d, false).init(&vb.pp("v_proj"))?,
            o_proj: LinearConfig::new(d, d, false).init(&vb.pp("o_proj"))?,
            q_norm: RmsNorm::new(head_dim, 1e-6, &vb.pp("q_norm"))?,
            k_norm: RmsNorm::new(head_dim, 1e-6, &vb.pp("k_norm"))?,
            heads: cfg.heads,
        })
    }

    fn forward(&self, x: &Array) -> Result<Array> {
        let shape = x.shape();
        let (b, l, d) = (shape[0], shape[1], shape[2]);
        let hd = d / self.heads;
        let split = |a: Array| -> Result<Array> {
            Ok(a.reshape(&[b, l, self.heads, hd])?
                .transpose(&[0, 2, 1, 3])?)
        };
        let q = self.q_norm.forward(&split(self.q_proj.forward(x)?)?)?;
        let k = self.k_norm.forward(&split(self.k_proj.forward(x)?)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        let q = fast::rope(&q, hd, false, 10000.0, 1.0, 0)?;
        let k = fast::rope(&k, hd, false, 10000.0, 1.0, 0)?;
        let scale = (hd as f32).powf(-0.5);
        let mask = if l > 1 {
            SdpaMask::Causal
        } else {
            SdpaMask::None
        };
        let o = fast::scaled_dot_product_attention(&q, &k, &v, scale, mask)?;
        self.o_proj
            .forward(&o.transpose(&[0, 2, 1, 3])?.reshape(&[b, l, d])?)
    }
}

impl Module for Attention {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        v.child("q_proj", &self.q_proj);
        v.child("k_proj", &self.k_proj);
        v.child("v_proj", &self.v_proj);
        v.child("o_proj", &self.o_proj);
        v.child("q_norm", &self.q_norm);
        v.child("k_norm", &self.k_norm);
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        v.child("q_proj", &mut self.q_proj);
        v.child("k_proj", &mut self.k_proj);
        v.child("v_proj", &mut self.v_proj);
        v.child("o_proj", &mut self.o_proj);
        v.child("q_norm", &mut self.q_norm);
        v.child("k_norm", &mut self.k_norm);
    }
}

#[derive(Clone, Debug)]
pub struct Block {
    pub self_attn: Attention,
    pub mlp: SwiGlu,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

impl Block {
    pub fn new(cfg: &TinyConfig, vb: &VarBuilder) -> Result<Self> {
        Ok(Block {
            self_attn: Attention::new(cfg, &vb.pp("self_attn"))?,
            mlp: SwiGlu::new(cfg.hidden, cfg.intermediate, &vb.pp("mlp"))?,
            input_layernorm: RmsNorm::new(cfg.hidden, 1e-6, &vb.pp("input_layernorm"))?,
            post_attention_layernorm: RmsNorm::new(
                cfg.hidden,
                1e-6,
                &vb.pp("post_attention_layernorm"),
            )?,
        })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        let h = x.add(&self.self_attn.forward(&self.input_layernorm.forward(x)?)?)?;
        Ok(h.add(
            &self
                .mlp
                .forward(&self.post_attention_layernorm.forward(&h)?)?,
        )?)
    }
}

impl Module for Block {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        v.child("self_attn", &self.self_attn);
        v.child("mlp", &self.mlp);
        v.child("input_layernorm", &self.input_layernorm);
        v.child("post_attention_layernorm", &self.post_attention_layernorm);
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        v.child("self_attn", &mut self.self_attn);
        v.child("mlp", &mut self.mlp);
        v.child("input_layernorm", &mut self.input_layernorm);
        v.child(
            "post_attention_layernorm",
            &mut self.post_attention_layernorm,
        );
    }
}

#[derive(Clone, Debug)]
pub struct Inner {
    pub embed_tokens: Embedding,
    pub layers: Vec<Block>,
    pub norm: RmsNorm,
}

impl Module for Inner {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        v.child("embed_tokens", &self.embed_tokens);
        v.children("layers", &self.layers);
        v.child("norm", &self.norm);
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        v.child("embed_tokens", &mut self.embed_tokens);
        v.children("layers", &mut self.layers);
        v.child("norm", &mut self.norm);
    }
}

/// `model.{embed_tokens,layers.N.*,norm}` and `lm_head`, like a Hugging Face
/// causal LM.
#[derive(Clone, Debug)]
pub struct TinyLm {
    pub model: Inner,
    pub lm_head: Linear,
}

impl TinyLm {
    pub fn new(cfg: &TinyConfig, vb: &VarBuilder) -> Result<Self> {
        let m = vb.pp("model");
        let layers = (0..cfg.layers)
            .map(|i| Block::new(cfg, &m.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(TinyLm {
            model: Inner {
                embed_tokens: Embedding::new(cfg.vocab, cfg.hidden, &m.pp("embed_tokens"))?,
                layers,
                norm: RmsNorm::new(cfg.hidden, 1e-6, &m.pp("norm"))?,
            },
            lm_head: LinearConfig::new(cfg.hidden, cfg.vocab, false).init(&vb.pp("lm_head"))?,
        })
    }

    /// Logits `[B, L, vocab]` of token ids `[B, L]`.
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        let mut h = self.model.embed_tokens.forward(ids)?;
        for layer in &self.model.layers {
            h = layer.forward(&h)?;
        }
        self.lm_head.forward(&self.model.norm.forward(&h)?)
    }
}

impl Module for TinyLm {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        v.child("model", &self.model);
        v.child("lm_head", &self.lm_head);
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        v.child("model", &mut self.model);
        v.child("lm_head", &mut self.lm_head);
    }
}
