//! One optimizer step over accumulated micro-batches.

use std::cell::RefCell;
use std::collections::BTreeMap;

use mlx_lm::models::Model;
use mlx_lm::score::{score_tokens_with, ScoreGradients, ScoreOptions};
use mlx_nn::optim::clip_grad_norm;
use mlx_nn::{value_and_grad, LossAndGrads, ModuleExt, ParamMap};
use mlx_tensor::{memory, Array};

use crate::config::GrpoConfig;
use crate::loss::{GrpoLoss, LossInputs, LossOutput, OutputLayout};
use crate::trainer::{MicroBatch, TrainerOptimizer};
use crate::{Error, Result};

/// Token positions (per row) whose full-vocabulary logits are alive at a
/// time while scoring a micro-batch for the loss. Each chunk is
/// checkpointed, so its `f32` logits (and their softmax in the backward
/// pass) are the largest transient arrays of a step: for a micro-batch of 8
/// rows, 256 positions of a 151,936-token vocabulary are 1.2 GB (smaller
/// chunks measured no lower peak on the GPU and a slower step).
pub const TRAINING_CHUNK_TOKENS: i32 = 256;

/// One optimizer step of GRPO: for each micro-batch the loss and its
/// gradient (the policy scored with checkpointed logit chunks, and per-layer
/// checkpointing when the model has it on), gradients summed as they are
/// produced, clipped to `config.max_grad_norm`, and one update of `model` by
/// `optimizer`. Returns the step's metrics with TRL's names (`loss` summed
/// over the micro-batches, other loss metrics averaged, `learning_rate`,
/// `grad_norm`).
///
/// Memory: besides the weights and the optimizer state, only the running
/// gradient sum and one micro-batch's activations are alive; references to
/// gradients, old parameters and old optimizer state are dropped before
/// they are evaluated, so MLX can reuse their buffers.
pub fn optimize_step(
    model: &mut Model,
    optimizer: &mut TrainerOptimizer,
    loss_fn: &GrpoLoss,
    config: &GrpoConfig,
    micro: &[MicroBatch],
) -> Result<BTreeMap<String, f64>> {
    let options = ScoreOptions {
        temperature: config.temperature as f32,
        entropies: true,
        chunk_tokens: TRAINING_CHUNK_TOKENS,
    };
    let gradients = ScoreGradients {
        checkpoint_chunks: true,
        entropy_gradients: loss_fn.settings().uses_entropy_bonus(),
    };
    let accumulation = micro.len();
    // Bound how far evaluation runs ahead of the device (see
    // `training_memory_headroom_mb`); the guard restores the limit.
    let _limit = config.training_memory_headroom_mb.map(|mb| {
        let gradient_bytes: usize = model
            .trainable_parameters()
            .values()
            .map(Array::nbytes)
            .sum();
        memory::MemoryLimitGuard::new(memory::active_memory() + gradient_bytes + (mb << 20))
    });
    let mut total: Option<ParamMap> = None;
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for mb in micro {
        let layout_slot: RefCell<Option<OutputLayout>> = RefCell::new(None);
        let LossAndGrads { loss, aux, grads } = value_and_grad(&*model, |m| {
            let (logps, entropies) = score_tokens_with(
                m,
                &mb.layout.tokens,
                &mb.layout.left_padding,
                mb.layout.completion_width,
                &options,
                &gradients,
            )?;
            let mut inputs = LossInputs::new(&logps, &mb.advantages, &mb.mask)
                .with_num_items_in_batch(mb.num_items_in_batch)
                .with_gradient_accumulation_steps(accumulation);
            if let Some(old) = &mb.old_logps {
                inputs = inputs.with_old_logps(old);
            }
            if let Some(reference) = &mb.ref_logps {
                inputs = inputs.with_ref_logps(reference);
            }
            if let Some(h) = &entropies {
                inputs = inputs.with_entropies(h);
            }
            let loss = loss_fn
                .compute(&inputs)
                .map_err(|e| mlx_nn::Error::Closure(e.to_string()))?;
            *layout_slot.borrow_mut() = Some(loss.layout());
            Ok(loss.into_outputs())
        })?;
        let layout = layout_slot
            .into_inner()
            .ok_or_else(|| Error::InvalidConfig {
                message: "the loss closure did not run".into(),
            })?;
        let mut outputs = vec![loss];
        outputs.extend(aux);
        let loss = LossOutput::from_outputs(&layout, outputs)?;
        // The new gradients are only reachable through the sums: each is
        // added to the running sum as soon as it is produced and its buffer
        // (and the old sum's) can be reused.
        total = Some(match total.take() {
            None => grads,
            Some(acc) => add_maps(acc, grads)?,
        });
        // Evaluate per micro-batch so that only one micro-batch's activations
        // are alive at a time: first the loss and metrics (the forward
        // pass), then the gradient sums in the order the backward pass
        // produces them, so that each new gradient is added to the running
        // sum (and freed) as soon as it exists rather than all of them
        // waiting for the end of the backward pass.
        let metric_arrays = loss.metrics.arrays();
        let mut forward: Vec<&Array> = vec![&loss.loss];
        forward.extend(metric_arrays.iter());
        mlx_tensor::eval(&forward)?;
        if let Some(total) = &total {
            for group in backward_order(total) {
                mlx_tensor::eval(&group)?;
            }
        }
        accumulate(&mut sums, "loss", f64::from(loss.loss.item::<f32>()?));
        for (name, value) in loss.metrics.names().into_iter().zip(&metric_arrays) {
            accumulate(&mut sums, name, f64::from(value.item::<f32>()?));
        }
    }
    let grads = total.ok_or_else(|| Error::InvalidConfig {
        message: "no micro-batches in the step".into(),
    })?;
    let lr = f64::from(optimizer.learning_rate()?.item::<f32>()?);
    let (grads, norm) = if config.max_grad_norm > 0.0 {
        let (clipped, norm) = clip_grad_norm(&grads, config.max_grad_norm)?;
        drop(grads);
        (clipped, Some(norm))
    } else {
        (grads, None)
    };
    optimizer.update(model, &grads)?;
    // Only the update's graph refers to the gradients now.
    drop(grads);
    let extra: Vec<&Array> = norm.iter().collect();
    optimizer.eval_with(&*model, &extra)?;
    memory::clear_cache();

    let mut metrics: BTreeMap<String, f64> = sums
        .into_iter()
        .map(|(k, (s, n))| {
            // TRL logs the loss summed over the accumulation window (each
            // micro-batch's loss is already divided by the window) and other
            // metrics averaged.
            let v = if k == "loss" { s } else { s / n.max(1) as f64 };
            (k, v)
        })
        .collect();
    metrics.insert("learning_rate".into(), lr);
    if let Some(norm) = norm {
        metrics.insert("grad_norm".into(), f64::from(norm.item::<f32>()?));
    }
    Ok(metrics)
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

fn accumulate(sums: &mut BTreeMap<String, (f64, usize)>, name: &str, value: f64) {
    let e = sums.entry(name.to_string()).or_insert((0.0, 0));
    if value.is_finite() {
        e.0 += value;
        e.1 += 1;
    }
}

/// `a + b` by name, consuming both so that neither map keeps its arrays
/// alive once the sums are evaluated.
fn add_maps(a: ParamMap, mut b: ParamMap) -> Result<ParamMap> {
    let mut out = ParamMap::new();
    for (k, v) in a {
        let sum = match b.remove(&k) {
            Some(w) => v.add(&w)?,
            None => v,
        };
        out.insert(k, sum);
    }
    out.extend(b);
    Ok(out)
}
