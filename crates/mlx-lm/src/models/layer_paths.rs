//! The projections of a [`Transformer`] by module path
//! (`model.layers.3.self_attn.q_proj`, `lm_head`): what quantizing and
//! attaching adapters address.

use super::projection::Projection;
use super::qwen3::{FeedForward, Transformer};

impl Transformer {
    /// Every projection with its module path, in layer order: each block's
    /// `self_attn.{q,k,v,o}_proj` and (dense blocks) `mlp.{gate,up,down}_proj`,
    /// then `lm_head` unless tied. Routed experts and routers are not
    /// projections.
    pub fn projections(&self) -> Vec<(String, &Projection)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let a = &layer.self_attn;
            for (name, p) in [
                ("q_proj", &a.q_proj),
                ("k_proj", &a.k_proj),
                ("v_proj", &a.v_proj),
                ("o_proj", &a.o_proj),
            ] {
                out.push((format!("model.layers.{i}.self_attn.{name}"), p));
            }
            if let FeedForward::Dense(m) = &layer.mlp {
                for (name, p) in [
                    ("gate_proj", &m.gate_proj),
                    ("up_proj", &m.up_proj),
                    ("down_proj", &m.down_proj),
                ] {
                    out.push((format!("model.layers.{i}.mlp.{name}"), p));
                }
            }
        }
        if let Some(head) = &self.lm_head {
            out.push(("lm_head".to_string(), head));
        }
        out
    }

    /// [`Transformer::projections`], mutably.
    pub fn projections_mut(&mut self) -> Vec<(String, &mut Projection)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let a = &mut layer.self_attn;
            for (name, p) in [
                ("q_proj", &mut a.q_proj),
                ("k_proj", &mut a.k_proj),
                ("v_proj", &mut a.v_proj),
                ("o_proj", &mut a.o_proj),
            ] {
                out.push((format!("model.layers.{i}.self_attn.{name}"), p));
            }
            if let FeedForward::Dense(m) = &mut layer.mlp {
                for (name, p) in [
                    ("gate_proj", &mut m.gate_proj),
                    ("up_proj", &mut m.up_proj),
                    ("down_proj", &mut m.down_proj),
                ] {
                    out.push((format!("model.layers.{i}.mlp.{name}"), p));
                }
            }
        }
        if let Some(head) = &mut self.lm_head {
            out.push(("lm_head".to_string(), head));
        }
        out
    }
}
