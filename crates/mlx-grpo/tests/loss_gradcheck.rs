//! The gradient of the GRPO loss with respect to `per_token_logps` (and to
//! the entropies, through the entropy bonus) against finite differences, in
//! f64 on the CPU, over random inputs.
//!
//! MLX's CPU `exp` is accurate to float32 precision even on f64 arrays, which
//! puts a noise of a few 1e-9 on the loss; a fourth-order central difference
//! with step 1e-3 keeps that noise near 1e-5 with negligible truncation
//! error, hence the 1e-4 tolerance. Elements whose step would move an
//! importance ratio across a clip bound or the `delta` cap (a kink) are
//! skipped.
//!
//! Where the loss value itself depends on `stop_gradient`ed quantities, the
//! "gradient" TRL trains with is not the derivative of the value, so those
//! combinations are checked where both coincide: the clipped-surrogate family
//! and SAPO with recorded old log-probabilities; CISPO and VESPO on-policy
//! (old log-probabilities taken as `stop_gradient(logp)`, which moves with
//! the perturbation) and without a bias-corrected KL.

use mlx_grpo::config::{ImportanceSamplingLevel, LossType};
use mlx_grpo::loss::{GrpoLoss, LossInputs, LossSettings};
use mlx_tensor::{Array, Device, transforms};
use proptest::prelude::*;

/// Random inputs of one micro-batch, row-major `[b, t]`.
#[derive(Debug, Clone)]
struct Batch {
    b: usize,
    t: usize,
    logps: Vec<f64>,
    old: Vec<f64>,
    reference: Vec<f64>,
    entropies: Vec<f64>,
    advantages: Vec<f64>,
    lengths: Vec<usize>,
}

impl Batch {
    fn mask(&self) -> Vec<f64> {
        (0..self.b)
            .flat_map(|i| (0..self.t).map(move |j| if j < self.lengths[i] { 1.0 } else { 0.0 }))
            .collect()
    }

    fn tokens(&self) -> f64 {
        self.lengths.iter().sum::<usize>() as f64
    }
}

fn batch() -> impl Strategy<Value = Batch> {
    (1usize..=4, 1usize..=6).prop_flat_map(|(b, t)| {
        let n = b * t;
        (
            prop::collection::vec(-2.5f64..-0.05, n),
            prop::collection::vec(-0.4f64..0.4, n),
            prop::collection::vec(-0.3f64..0.3, n),
            prop::collection::vec(0.0f64..3.0, n),
            prop::collection::vec(-1.5f64..1.5, b),
            prop::collection::vec(0usize..=t, b),
        )
            .prop_map(
                move |(logps, old_shift, ref_shift, entropies, advantages, lengths)| Batch {
                    b,
                    t,
                    old: logps.iter().zip(&old_shift).map(|(l, s)| l + s).collect(),
                    reference: logps.iter().zip(&ref_shift).map(|(l, s)| l + s).collect(),
                    logps,
                    entropies,
                    advantages,
                    lengths,
                },
            )
    })
}

fn settings(loss_type: LossType, level: ImportanceSamplingLevel, beta: f64) -> LossSettings {
    LossSettings {
        loss_type,
        importance_sampling_level: level,
        beta,
        epsilon_low: 0.2,
        epsilon_high: 0.28,
        delta: None,
        sapo_temperature_pos: 1.0,
        sapo_temperature_neg: 1.05,
        vespo_k_pos: 2.0,
        vespo_lambda_pos: 3.0,
        vespo_k_neg: 3.0,
        vespo_lambda_neg: 2.0,
        top_entropy_quantile: 1.0,
        off_policy_mask_threshold: None,
        use_bias_correction_kl: true,
        entropy_coef: 0.0,
        use_adaptive_entropy: false,
        max_completion_length: 8,
        gradient_accumulation_steps: 2,
        steps_per_generation: 2,
    }
}

fn f64_array(values: &[f64], shape: &[i32]) -> Array {
    Array::from_slice(values, shape).expect("array")
}

fn cpu() {
    Device::Cpu.set_default().expect("cpu");
}

/// The loss at `logps` (and `entropies`), with the batch's other inputs.
fn loss_at(
    loss: &GrpoLoss,
    batch: &Batch,
    logps: &Array,
    entropies: &Array,
    on_policy: bool,
) -> Array {
    let shape = [batch.b as i32, batch.t as i32];
    let mask = f64_array(&batch.mask(), &shape);
    let advantages = f64_array(&batch.advantages, &[batch.b as i32]);
    let old = f64_array(&batch.old, &shape);
    let reference = f64_array(&batch.reference, &shape);
    let mut inputs = LossInputs::new(logps, &advantages, &mask)
        .with_ref_logps(&reference)
        .with_entropies(entropies)
        .with_num_items_in_batch(batch.tokens() + 3.0);
    if !on_policy {
        inputs = inputs.with_old_logps(&old);
    }
    loss.compute(&inputs).expect("loss").loss
}

/// Whether moving `per_token_logps[index]` by up to `reach` moves an
/// importance ratio across a kink of the clipped surrogate.
fn near_kink(s: &LossSettings, batch: &Batch, index: usize, reach: f64) -> bool {
    let clipped = !matches!(
        s.loss_type,
        LossType::Sapo | LossType::Cispo | LossType::Vespo
    );
    let (row, col) = (index / batch.t, index % batch.t);
    let len = batch.lengths[row];
    if !clipped || col >= len {
        return false;
    }
    let log_ratio = |j: usize| batch.logps[row * batch.t + j] - batch.old[row * batch.t + j];
    let (center, spread) = match s.importance_sampling_level {
        ImportanceSamplingLevel::Token => (log_ratio(col), reach),
        ImportanceSamplingLevel::Sequence => (
            (0..len).map(log_ratio).sum::<f64>() / len as f64,
            reach / len as f64,
        ),
    };
    let mut bounds = vec![1.0 - s.epsilon_low, 1.0 + s.epsilon_high];
    bounds.extend(s.delta);
    bounds.iter().any(|b| (b.ln() - center).abs() <= spread)
}

/// Analytic gradient (w.r.t. input `wrt`: 0 = logps, 1 = entropies) and the
/// largest difference from finite differences, relative to `max(1, |g|)`.
fn gradient_error(loss: &GrpoLoss, batch: &Batch, on_policy: bool, wrt: usize) -> f64 {
    let shape = [batch.b as i32, batch.t as i32];
    let base = [batch.logps.clone(), batch.entropies.clone()];
    let inputs = [f64_array(&base[0], &shape), f64_array(&base[1], &shape)];
    let (_, grads) = transforms::value_and_grad(
        |xs: &[Array]| {
            let value = loss_at(loss, batch, &xs[0], &xs[1], on_policy);
            Ok(vec![value])
        },
        &inputs,
        &[wrt as i32],
    )
    .expect("value_and_grad");
    let grad = grads[0].to_vec::<f64>().expect("grad");
    let h = 1e-3;
    let eval_at = |index: usize, step: f64| -> f64 {
        let mut values = base.clone();
        values[wrt][index] += step;
        let logps = f64_array(&values[0], &shape);
        let entropies = f64_array(&values[1], &shape);
        loss_at(loss, batch, &logps, &entropies, on_policy)
            .item::<f64>()
            .expect("value")
    };
    let mut worst: f64 = 0.0;
    for (i, g) in grad.iter().enumerate() {
        if wrt == 0 && near_kink(loss.settings(), batch, i, 2.5 * h) {
            continue;
        }
        let fd = (8.0 * (eval_at(i, h) - eval_at(i, -h))
            - (eval_at(i, 2.0 * h) - eval_at(i, -2.0 * h)))
            / (12.0 * h);
        worst = worst.max((fd - g).abs() / g.abs().max(1.0));
    }
    worst
}

const TOLERANCE: f64 = 1e-4;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn clipped_surrogates_and_sapo_match_central_differences(
        batch in batch(),
        which in 0usize..6,
        sequence in any::<bool>(),
        beta in prop::sample::select(vec![0.0, 0.04]),
        delta in prop::option::of(1.3f64..2.0),
    ) {
        cpu();
        let loss_type = [LossType::Grpo, LossType::Bnpo, LossType::DrGrpo, LossType::Dapo, LossType::Luspo, LossType::Sapo][which];
        let level = if sequence { ImportanceSamplingLevel::Sequence } else { ImportanceSamplingLevel::Token };
        let mut s = settings(loss_type, level, beta);
        s.delta = delta;
        let err = gradient_error(&GrpoLoss::new(s), &batch, false, 0);
        prop_assert!(err <= TOLERANCE, "{loss_type}/{level}: error {err:e}");
    }

    #[test]
    fn cispo_and_vespo_on_policy_match_central_differences(
        batch in batch(),
        vespo in any::<bool>(),
        beta in prop::sample::select(vec![0.0, 0.04]),
    ) {
        cpu();
        let loss_type = if vespo { LossType::Vespo } else { LossType::Cispo };
        let mut s = settings(loss_type, ImportanceSamplingLevel::Token, beta);
        s.use_bias_correction_kl = false;
        let err = gradient_error(&GrpoLoss::new(s), &batch, true, 0);
        prop_assert!(err <= TOLERANCE, "{loss_type}: error {err:e}");
    }

    #[test]
    fn entropy_bonus_gradient_matches_central_differences(
        batch in batch(),
        coef in 0.001f64..0.1,
    ) {
        cpu();
        let mut s = settings(LossType::Grpo, ImportanceSamplingLevel::Token, 0.0);
        s.entropy_coef = coef;
        let err = gradient_error(&GrpoLoss::new(s), &batch, false, 1);
        prop_assert!(err <= TOLERANCE, "error {err:e}");
    }
}
