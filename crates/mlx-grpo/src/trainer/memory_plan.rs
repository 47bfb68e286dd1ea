//! How a training run trades speed for memory, as one named plan.
//!
//! The GRPO data path (rollout, rewards, advantages, loss, gradients,
//! update) does not change with memory settings; what changes is where the
//! optimizer state lives between updates, whether layers are checkpointed,
//! how far evaluation may run ahead of the device, and when buffers go back
//! to the system. [`MemoryPlan`] holds those decisions and the trainer
//! applies it at fixed points of a step, so the step itself reads as the
//! algorithm.

use std::collections::BTreeMap;

use mlx_lm::LanguageModel;
use mlx_lm::models::Model;
use mlx_nn::{ModuleExt, ParamMap};
use mlx_tensor::{Array, memory};

use crate::Result;
use crate::config::GrpoConfig;
use crate::trainer::TrainerOptimizer;

/// The memory settings of a run (from [`GrpoConfig`]) and the points where
/// they act: model set-up, before a rollout, around the training pass, and
/// after the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Recompute each layer's activations in the backward pass
    /// (`gradient_checkpointing`).
    pub gradient_checkpointing: bool,
    /// Keep the optimizer state in host memory between updates
    /// (`offload_optimizer_state`).
    pub optimizer_state_on_host: bool,
    /// Working memory the training pass may queue beyond the weights, the
    /// state and one set of gradients, in MiB (`training_memory_headroom_mb`);
    /// `None` leaves MLX's own limit.
    pub training_headroom_mb: Option<usize>,
}

impl MemoryPlan {
    /// The plan `config` asks for.
    pub fn from_config(config: &GrpoConfig) -> Self {
        Self {
            gradient_checkpointing: config.gradient_checkpointing,
            optimizer_state_on_host: config.offload_optimizer_state,
            training_headroom_mb: config.training_memory_headroom_mb,
        }
    }

    /// Sets up a model to train under the plan (layer checkpointing).
    pub fn prepare_model(&self, model: &mut Model) {
        model.set_gradient_checkpointing(self.gradient_checkpointing);
    }

    /// Sets up an optimizer under the plan (where its state lives).
    pub fn prepare_optimizer(&self, optimizer: &mut TrainerOptimizer) -> Result<()> {
        optimizer.set_state_on_host(self.optimizer_state_on_host)?;
        Ok(())
    }

    /// Before a rollout: the last update replaced the weights, so decoding's
    /// stacked copies of them are made again (and the stale ones dropped
    /// rather than held beside the parameters).
    pub fn before_rollout(&self, model: &mut Model) -> Result<()> {
        mlx_lm::generate::pack_weights(model)?;
        Ok(())
    }

    /// Bounds how far the training pass runs ahead of the device, when the
    /// plan has a headroom: the returned guard restores MLX's limit when
    /// dropped.
    pub fn bound_training(&self, model: &Model) -> Option<memory::MemoryLimitGuard> {
        self.training_headroom_mb.map(|mb| {
            let gradient_bytes: usize = model
                .trainable_parameters()
                .values()
                .map(Array::nbytes)
                .sum();
            memory::MemoryLimitGuard::new(memory::active_memory() + gradient_bytes + (mb << 20))
        })
    }

    /// Evaluates running gradient sums in the order a backward pass
    /// produces them, so that each new gradient is added to its sum (and
    /// freed) as soon as it exists rather than all of them waiting for the
    /// end of the backward pass.
    pub fn eval_gradient_sums(&self, sums: &ParamMap) -> Result<()> {
        for group in backward_order(sums) {
            mlx_tensor::eval(&group)?;
        }
        Ok(())
    }

    /// After the update: the step's transient buffers go back to the
    /// system before the next rollout allocates its caches.
    pub fn after_update(&self) {
        memory::clear_cache();
    }
}

/// The parameters' arrays grouped in the order a backward pass produces
/// their gradients: the final norm and an untied head first, then the layers
/// from the last to the first, then the embedding (which, when tied, also
/// collects the head's gradient and is complete only at the end).
fn backward_order(params: &ParamMap) -> Vec<Vec<&Array>> {
    let mut head = Vec::new();
    let mut layers: BTreeMap<usize, Vec<&Array>> = BTreeMap::new();
    let mut embedding = Vec::new();
    for (name, value) in params {
        if let Some(index) = layer_index(name) {
            layers.entry(index).or_default().push(value);
        } else if name.contains("embed") {
            embedding.push(value);
        } else {
            head.push(value);
        }
    }
    let mut groups = vec![head];
    groups.extend(layers.into_values().rev());
    groups.push(embedding);
    groups.retain(|g| !g.is_empty());
    groups
}

/// `N` of a `….layers.N.…` parameter name.
fn layer_index(name: &str) -> Option<usize> {
    let mut parts = name.split('.');
    while let Some(part) = parts.next() {
        if part == "layers" {
            return parts.next()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_are_grouped_head_first_then_layers_backwards_then_embedding() -> Result<()> {
        let one = || Array::scalar(1.0f32);
        let mut params = ParamMap::new();
        for name in [
            "model.embed_tokens.weight",
            "model.layers.0.mlp.up_proj.weight",
            "model.layers.10.mlp.up_proj.weight",
            "model.layers.2.self_attn.q_proj.weight",
            "model.layers.2.input_layernorm.weight",
            "model.norm.weight",
        ] {
            params.insert(name.to_string(), one()?);
        }
        let sizes: Vec<usize> = backward_order(&params).iter().map(Vec::len).collect();
        // head (norm), layer 10, layer 2 (two tensors), layer 0, embedding
        assert_eq!(sizes, vec![1, 1, 2, 1, 1]);
        assert_eq!(layer_index("model.layers.10.mlp.up_proj.weight"), Some(10));
        assert_eq!(layer_index("model.norm.weight"), None);
        Ok(())
    }
}
