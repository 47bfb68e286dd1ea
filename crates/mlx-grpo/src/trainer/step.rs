//! One optimizer step over accumulated micro-batches.

use std::cell::RefCell;
use std::collections::BTreeMap;

use mlx_lm::models::Model;
use mlx_lm::score::{ScoreGradients, ScoreOptions, score_tokens_with, score_tokens_with_aux};
use mlx_nn::optim::clip_grad_norm;
use mlx_nn::{LossAndGrads, ParamMap, value_and_grad_with};
use mlx_tensor::{Array, Dtype, concatenate};

use crate::config::GrpoConfig;
use crate::loss::{EntropyControl, GrpoLoss, LossInputs, LossOutput, OutputLayout};
use crate::trainer::{MemoryPlan, MicroBatch, Parallel, TrainerOptimizer};
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
/// The entropy bonus uses `entropy`'s coefficient for this step
/// ([`EntropyControl::applied_coef`]); with adaptive control the step's
/// entropy is recorded, the coefficient updated once at the end
/// ([`EntropyControl::end_step`]), and the updated value logged as
/// `entropy_coef`, as TRL does.
///
/// For a mixture-of-experts model (and `config.router_aux_loss_coef != 0`),
/// each micro-batch's loss also gets TRL's
/// `router_aux_loss_coef × aux_loss / gradient_accumulation_steps`, where
/// `aux_loss` is the router load-balancing loss of the same forward pass
/// over the tokens of TRL's attention mask (real prompt tokens and the
/// completion mask; padding never counts). The gradient includes the term;
/// `loss` is logged with it and the unscaled `aux_loss` is logged averaged.
///
/// Memory: besides the weights and the optimizer state, only the running
/// gradient sum and one micro-batch's activations are alive; references to
/// gradients, old parameters and old optimizer state are dropped before
/// they are evaluated, so MLX can reuse their buffers.
pub fn optimize_step(
    model: &mut Model,
    optimizer: &mut TrainerOptimizer,
    loss_fn: &GrpoLoss,
    entropy: &mut EntropyControl,
    config: &GrpoConfig,
    micro: &[MicroBatch],
) -> Result<BTreeMap<String, f64>> {
    optimize_step_in(model, optimizer, loss_fn, entropy, config, micro, None)
}

/// [`optimize_step`] as one rank of a data-parallel group: the summed
/// gradients are averaged over the ranks ([`Parallel::average_gradients`])
/// before clipping and the update, so every rank applies the same update.
/// The returned metrics are this rank's (see [`Parallel::average_metrics`]).
pub fn optimize_step_in(
    model: &mut Model,
    optimizer: &mut TrainerOptimizer,
    loss_fn: &GrpoLoss,
    entropy: &mut EntropyControl,
    config: &GrpoConfig,
    micro: &[MicroBatch],
    parallel: Option<&Parallel>,
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
    let aux_coef = router_aux_coef(model, config);
    let entropy_coef = entropy.applied_coef();
    let plan = MemoryPlan::from_config(config);
    // The guard restores MLX's memory limit at the end of the step.
    let _limit = plan.bound_training(model);
    let mut total: Option<ParamMap> = None;
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for mb in micro {
        let layout_slot: RefCell<Option<OutputLayout>> = RefCell::new(None);
        let aux_mask = match aux_coef {
            Some(_) => Some(attention_mask(mb)?),
            None => None,
        };
        let LossAndGrads {
            loss,
            mut aux,
            grads,
        } = value_and_grad_with(&*model, |m| -> Result<Vec<Array>> {
            let (logps, entropies, router_aux) = match &aux_mask {
                Some(mask) => score_tokens_with_aux(
                    m,
                    &mb.layout.tokens,
                    &mb.layout.left_padding,
                    mb.layout.completion_width,
                    Some(mask),
                    &options,
                    &gradients,
                )?,
                None => {
                    let (logps, entropies) = score_tokens_with(
                        m,
                        &mb.layout.tokens,
                        &mb.layout.left_padding,
                        mb.layout.completion_width,
                        &options,
                        &gradients,
                    )?;
                    (logps, entropies, None)
                }
            };
            let mut inputs = LossInputs::new(&logps, &mb.advantages, &mb.mask)
                .with_num_items_in_batch(mb.num_items_in_batch)
                .with_gradient_accumulation_steps(accumulation)
                .with_entropy_coef(entropy_coef);
            if let Some(old) = &mb.old_logps {
                inputs = inputs.with_old_logps(old);
            }
            if let Some(reference) = &mb.ref_logps {
                inputs = inputs.with_ref_logps(reference);
            }
            if let Some(sampling) = &mb.sampling_logps {
                inputs = inputs.with_sampling_logps(sampling);
            }
            if let Some(ratio) = &mb.importance_sampling_ratio {
                inputs = inputs.with_importance_sampling_ratio(ratio);
            }
            if let Some(h) = &entropies {
                inputs = inputs.with_entropies(h);
            }
            let loss = loss_fn.compute(&inputs)?;
            *layout_slot.borrow_mut() = Some(loss.layout());
            let mut outputs = loss.into_outputs();
            if let Some(coef) = aux_coef {
                // TRL scales the aux term for gradient accumulation as the
                // policy loss is scaled.
                let router_aux = router_aux
                    .ok_or_else(|| Error::internal("the MoE model returned no router aux loss"))?;
                let term = router_aux.mul_scalar(coef / accumulation as f64)?;
                if let Some(total) = outputs.first_mut() {
                    *total = total.add(&term)?;
                }
                outputs.push(router_aux.stop_gradient()?);
            }
            Ok(outputs)
        })?;
        let router_aux =
            match aux_coef {
                Some(_) => Some(aux.pop().ok_or_else(|| {
                    Error::internal("the loss closure returned no router aux loss")
                })?),
                None => None,
            };
        let layout = layout_slot
            .into_inner()
            .ok_or_else(|| Error::internal("the loss closure did not run"))?;
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
        forward.extend(router_aux.iter());
        if let Some(window) = &loss.entropy_window {
            forward.extend([&window.entropy_sum, &window.tokens]);
        }
        mlx_tensor::eval(&forward)?;
        if let Some(total) = &total {
            plan.eval_gradient_sums(total)?;
        }
        accumulate(&mut sums, "loss", f64::from(loss.loss.item::<f32>()?));
        for (name, value) in loss.metrics.names().into_iter().zip(&metric_arrays) {
            accumulate(&mut sums, name, f64::from(value.item::<f32>()?));
        }
        if let Some(value) = &router_aux {
            accumulate(&mut sums, "aux_loss", f64::from(value.item::<f32>()?));
        }
        if let Some(window) = &loss.entropy_window {
            match parallel.filter(|p| p.size() > 1) {
                // Every rank adapts the coefficient from all ranks' tokens,
                // as one process would from the whole batch.
                Some(p) => {
                    let local = [
                        window.entropy_sum.item::<f32>()?,
                        window.tokens.item::<f32>()?,
                    ];
                    let total = p.sum(&local)?;
                    let at = |i: usize| f64::from(total.get(i).copied().unwrap_or(0.0));
                    entropy.record_totals(at(0), at(1));
                }
                None => entropy.record(window)?,
            }
        }
    }
    let grads = total.ok_or_else(|| Error::internal("no micro-batches in the step"))?;
    let grads = match parallel.filter(|p| p.size() > 1) {
        Some(p) => {
            let averaged = p.average_gradients(&grads)?;
            drop(grads);
            averaged
        }
        None => grads,
    };
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
    plan.after_update();

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
    if entropy.end_step().is_some() {
        // TRL logs the coefficient after the step's adaptive update.
        metrics.insert("entropy_coef".into(), entropy.coef());
    }
    metrics.insert("learning_rate".into(), lr);
    if let Some(norm) = norm {
        metrics.insert("grad_norm".into(), f64::from(norm.item::<f32>()?));
    }
    Ok(metrics)
}

/// `Some(router_aux_loss_coef)` when the step adds the router aux loss: a
/// mixture-of-experts model and a non-zero coefficient (TRL's
/// `aux_loss_enabled`).
fn router_aux_coef(model: &Model, config: &GrpoConfig) -> Option<f64> {
    (model.config().num_experts() > 0 && config.router_aux_loss_coef != 0.0)
        .then_some(config.router_aux_loss_coef)
}

/// TRL's attention mask of a micro-batch, `[B, P + C]`: 1 at real prompt
/// tokens (after each row's left padding) and where the completion mask is
/// set (which, as in TRL, is 0 for the padding after a completion and for
/// the whole completion of a truncated one when
/// `mask_truncated_completions`).
fn attention_mask(mb: &MicroBatch) -> Result<Array> {
    let total = mb.layout.tokens.axis_size(1)?;
    let prompt_width = total - mb.layout.completion_width;
    let mut prompt = Vec::new();
    for &pad in &mb.layout.left_padding {
        prompt.extend((0..prompt_width).map(|col| if col >= pad { 1.0f32 } else { 0.0 }));
    }
    let rows = i32::try_from(mb.layout.left_padding.len()).map_err(|_| Error::InvalidConfig {
        message: format!("{} rows in a micro-batch", mb.layout.left_padding.len()),
    })?;
    let prompt = Array::from_slice(&prompt, &[rows, prompt_width])?;
    let completion = mb.mask.as_type(Dtype::F32)?;
    Ok(concatenate(&[&prompt, &completion], 1)?)
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
