//! The supervised warm-up of the training examples: next-token
//! cross-entropy over the tokens a sequence marks as learned.

use mlx_lm::LanguageModel;
use mlx_lm::models::Model;
use mlx_nn::optim::{AdamW, Optimizer};
use mlx_nn::value_and_grad;
use mlx_tensor::{Array, Axes};

use crate::cli::BoxError;

/// One optimizer step of masked next-token cross-entropy: each row is a
/// sequence of token ids and, per position, whether its token is learned
/// (the model's own tokens); rows are right-padded with `pad` and the loss is
/// the mean over the learned targets. Returns the step's loss.
pub fn masked_lm_step(
    model: &mut Model,
    optimizer: &mut Optimizer<AdamW>,
    rows: &[(Vec<u32>, Vec<bool>)],
    pad: u32,
) -> Result<f32, BoxError> {
    let width = rows
        .iter()
        .map(|(ids, _)| ids.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let (mut inputs, mut targets, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for (ids, learn) in rows {
        for t in 0..width - 1 {
            inputs.push(*ids.get(t).unwrap_or(&pad));
            targets.push(*ids.get(t + 1).unwrap_or(&pad));
            mask.push(f32::from(u8::from(
                learn.get(t + 1).copied().unwrap_or(false),
            )));
        }
    }
    let shape = [i32::try_from(rows.len())?, i32::try_from(width - 1)?];
    let inputs = Array::from_slice(&inputs, &shape)?;
    let targets = Array::from_slice(&targets, &shape)?.expand_dims(&[-1])?;
    let mask = Array::from_slice(&mask, &shape)?;
    let out = value_and_grad(&*model, |m| {
        let logits = m
            .forward(&inputs, None)
            .map_err(|e| mlx_nn::Error::Closure(e.to_string()))?;
        let logp = logits
            .log_softmax(-1, true)?
            .take_along_axis(&targets, -1)?
            .squeeze(&[-1])?;
        let loss = logp
            .multiply(&mask)?
            .sum(Axes::All, false)?
            .negative()?
            .divide(&mask.sum(Axes::All, false)?)?;
        Ok(vec![loss])
    })?;
    optimizer.update(model, &out.grads)?;
    optimizer.eval_with(&*model, &[&out.loss])?;
    Ok(out.loss.item::<f32>()?)
}
