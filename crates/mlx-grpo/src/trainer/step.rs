//! One optimizer step over accumulated micro-batches.

use std::cell::RefCell;
use std::collections::BTreeMap;

use mlx_lm::score::{score_tokens, ScoreOptions};
use mlx_nn::optim::clip_grad_norm;
use mlx_nn::{value_and_grad, ParamMap};
use mlx_tensor::Array;

use crate::loss::{LossInputs, LossOutput, OutputLayout};
use crate::trainer::{MicroBatch, Trainer};
use crate::{Error, Result};

/// Runs the loss and its gradient on each micro-batch, sums the gradients,
/// clips them, updates the model, and returns the step's metrics.
pub(super) fn optimize(
    trainer: &mut Trainer,
    micro: &[MicroBatch],
) -> Result<BTreeMap<String, f64>> {
    let config = &trainer.config;
    let options = ScoreOptions {
        temperature: config.temperature as f32,
        entropies: true,
        ..Default::default()
    };
    let accumulation = micro.len();
    let mut total: Option<ParamMap> = None;
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for mb in micro {
        let layout_slot: RefCell<Option<OutputLayout>> = RefCell::new(None);
        let out = value_and_grad(&trainer.model, |m| {
            let (logps, entropies) = score_tokens(
                m,
                &mb.layout.tokens,
                &mb.layout.left_padding,
                mb.layout.completion_width,
                &options,
            )
            .map_err(|e| mlx_nn::Error::Closure(e.to_string()))?;
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
            let loss = trainer
                .loss
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
        let mut outputs = vec![out.loss];
        outputs.extend(out.aux);
        let loss = LossOutput::from_outputs(&layout, outputs)?;
        total = Some(match total {
            None => out.grads,
            Some(acc) => add_maps(&acc, &out.grads)?,
        });
        // Evaluate per micro-batch so that only one micro-batch's activations
        // are alive at a time.
        let mut to_eval: Vec<&Array> = total.iter().flat_map(|g| g.values()).collect();
        to_eval.push(&loss.loss);
        let metric_arrays = loss.metrics.arrays();
        to_eval.extend(metric_arrays.iter());
        mlx_tensor::eval(&to_eval)?;
        accumulate(&mut sums, "loss", f64::from(loss.loss.item::<f32>()?));
        for (name, value) in loss.metrics.names().into_iter().zip(&metric_arrays) {
            accumulate(&mut sums, name, f64::from(value.item::<f32>()?));
        }
    }
    let grads = total.ok_or_else(|| Error::InvalidConfig {
        message: "no micro-batches in the step".into(),
    })?;
    let lr = f64::from(trainer.optimizer.learning_rate()?.item::<f32>()?);
    let (grads, norm) = if config.max_grad_norm > 0.0 {
        let (clipped, norm) = clip_grad_norm(&grads, config.max_grad_norm)?;
        (clipped, Some(norm))
    } else {
        (grads, None)
    };
    trainer.optimizer.update(&mut trainer.model, &grads)?;
    let extra: Vec<&Array> = norm.iter().collect();
    trainer.optimizer.eval_with(&trainer.model, &extra)?;

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

fn accumulate(sums: &mut BTreeMap<String, (f64, usize)>, name: &str, value: f64) {
    let e = sums.entry(name.to_string()).or_insert((0.0, 0));
    if value.is_finite() {
        e.0 += value;
        e.1 += 1;
    }
}

fn add_maps(a: &ParamMap, b: &ParamMap) -> Result<ParamMap> {
    a.iter()
        .map(|(k, v)| match b.get(k) {
            Some(w) => Ok((k.clone(), v.add(w)?)),
            None => Ok((k.clone(), v.clone())),
        })
        .collect()
}
