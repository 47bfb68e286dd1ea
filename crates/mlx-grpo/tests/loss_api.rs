//! The GRPO loss's input checks, output packing, metric names and modes.

use mlx_grpo::Error;
use mlx_grpo::config::{GrpoConfig, ImportanceSamplingLevel, LossType};
use mlx_grpo::loss::{
    EntropyControl, GrpoLoss, LossInputs, LossMode, LossOutput, LossSettings, OutputLayout,
    masked_quantile,
};
use mlx_tensor::{Array, Dtype};

fn arr(values: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(values, shape).expect("array")
}

struct Batch {
    logps: Array,
    old: Array,
    reference: Array,
    entropies: Array,
    advantages: Array,
    mask: Array,
}

fn batch() -> Batch {
    Batch {
        logps: arr(&[-0.5, -1.0, -0.2, -0.7, -1.3, -0.4], &[2, 3]),
        old: arr(&[-0.6, -0.8, -0.3, -0.5, -1.6, -0.4], &[2, 3]),
        reference: arr(&[-0.4, -1.1, -0.2, -0.9, -1.2, -0.5], &[2, 3]),
        entropies: arr(&[0.3, 1.2, 0.8, 2.0, 0.1, 0.5], &[2, 3]),
        advantages: arr(&[0.7, -0.7], &[2]),
        mask: arr(&[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], &[2, 3]),
    }
}

fn config(loss_type: LossType) -> GrpoConfig {
    GrpoConfig {
        loss_type,
        ..GrpoConfig::default()
    }
}

fn full_inputs(b: &Batch) -> LossInputs<'_> {
    LossInputs::new(&b.logps, &b.advantages, &b.mask)
        .with_old_logps(&b.old)
        .with_ref_logps(&b.reference)
        .with_entropies(&b.entropies)
        .with_num_items_in_batch(5.0)
}

#[test]
fn mismatched_shapes_are_named() {
    let b = batch();
    let loss = GrpoLoss::from_config(&config(LossType::Grpo));
    let bad_mask = arr(&[1.0; 4], &[2, 2]);
    let err = loss
        .compute(&LossInputs::new(&b.logps, &b.advantages, &bad_mask))
        .expect_err("mask shape");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::LossInputShape {
                input: "completion_mask",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(text.contains("[2, 2]") && text.contains("[2, 3]"), "{text}");

    let bad_adv = arr(&[1.0, 2.0, 3.0], &[3]);
    let err = loss
        .compute(&LossInputs::new(&b.logps, &bad_adv, &b.mask))
        .expect_err("advantages shape");
    assert!(
        matches!(
            err,
            Error::LossInputShape {
                input: "advantages",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("[3]"), "{err}");

    let bad_old = arr(&[0.0; 3], &[1, 3]);
    let err = loss
        .compute(&LossInputs::new(&b.logps, &b.advantages, &b.mask).with_old_logps(&bad_old))
        .expect_err("old shape");
    assert!(
        matches!(
            err,
            Error::LossInputShape {
                input: "old_per_token_logps",
                ..
            }
        ),
        "{err:?}"
    );

    let flat = arr(&[0.0; 6], &[6]);
    let err = loss
        .compute(&LossInputs::new(&flat, &b.advantages, &b.mask))
        .expect_err("1-D logps");
    assert!(
        matches!(
            err,
            Error::LossInputShape {
                input: "per_token_logps",
                ..
            }
        ),
        "{err:?}"
    );

    let ints = b.logps.as_type(Dtype::I32).expect("cast");
    let err = loss
        .compute(&LossInputs::new(&ints, &b.advantages, &b.mask))
        .expect_err("int logps");
    assert!(
        matches!(
            err,
            Error::InvalidLossInput {
                input: "per_token_logps",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn non_finite_advantages_are_rejected() {
    let b = batch();
    let loss = GrpoLoss::from_config(&config(LossType::Grpo));
    for bad in [f32::NAN, f32::INFINITY] {
        let adv = arr(&[0.5, bad], &[2]);
        let err = loss
            .compute(&LossInputs::new(&b.logps, &adv, &b.mask))
            .expect_err("non-finite");
        assert!(
            matches!(err, Error::NonFiniteAdvantage { index: 1, .. }),
            "{err:?}"
        );
    }
}

#[test]
fn inputs_the_settings_need_are_required() {
    let b = batch();
    let plain = LossInputs::new(&b.logps, &b.advantages, &b.mask);
    let with = |cfg: GrpoConfig| {
        GrpoLoss::from_config(&cfg)
            .compute(&plain)
            .expect_err("missing input")
    };

    let err = with(GrpoConfig {
        beta: 0.04,
        ..config(LossType::Grpo)
    });
    assert!(
        matches!(
            err,
            Error::MissingLossInput {
                input: "ref_per_token_logps",
                ..
            }
        ),
        "{err:?}"
    );
    for loss_type in [LossType::Dapo, LossType::Cispo, LossType::Vespo] {
        let err = with(config(loss_type));
        assert!(
            matches!(
                err,
                Error::MissingLossInput {
                    input: "num_items_in_batch",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let err = with(GrpoConfig {
        top_entropy_quantile: 0.5,
        ..config(LossType::Grpo)
    });
    assert!(
        matches!(
            err,
            Error::MissingLossInput {
                input: "entropies",
                ..
            }
        ),
        "{err:?}"
    );
    let err = with(GrpoConfig {
        entropy_coef: 0.01,
        ..config(LossType::Grpo)
    });
    assert!(
        matches!(
            err,
            Error::MissingLossInput {
                input: "entropies",
                ..
            }
        ),
        "{err:?}"
    );

    let negative = plain.with_num_items_in_batch(-1.0);
    let err = GrpoLoss::from_config(&config(LossType::Dapo))
        .compute(&negative)
        .expect_err("negative count");
    assert!(
        matches!(
            err,
            Error::InvalidLossInput {
                input: "num_items_in_batch",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn metric_names_match_what_compute_logs() {
    let b = batch();
    for &loss_type in LossType::ALL {
        for level in [
            ImportanceSamplingLevel::Token,
            ImportanceSamplingLevel::Sequence,
        ] {
            for (beta, coef, entropies) in
                [(0.0, 0.0, true), (0.04, 0.01, true), (0.04, 0.0, false)]
            {
                let cfg = GrpoConfig {
                    loss_type,
                    importance_sampling_level: level,
                    beta,
                    entropy_coef: coef,
                    ..GrpoConfig::default()
                };
                let loss = GrpoLoss::from_config(&cfg);
                let mut inputs = full_inputs(&b);
                if !entropies {
                    inputs.entropies = None;
                }
                let out = loss.compute(&inputs).expect("loss");
                assert_eq!(
                    out.metrics.names(),
                    loss.metric_names(entropies),
                    "{loss_type}/{level}"
                );
                let map = out.metrics.to_map().expect("metrics");
                assert_eq!(map.len(), out.metrics.len());
                assert!(out.loss.item::<f32>().expect("loss").is_finite());
            }
        }
    }
}

#[test]
fn outputs_round_trip_through_a_flat_list() {
    let b = batch();
    let cfg = GrpoConfig {
        use_adaptive_entropy: true,
        ..config(LossType::Dapo)
    };
    let out = GrpoLoss::from_config(&cfg)
        .compute(&full_inputs(&b))
        .expect("loss");
    let layout = out.layout();
    assert!(layout.entropy_window);
    let loss_value = out.loss.item::<f32>().expect("loss");
    let flat = out.into_outputs();
    assert_eq!(flat.len(), layout.len());
    let back = LossOutput::from_outputs(&layout, flat.clone()).expect("round trip");
    assert_eq!(back.loss.item::<f32>().expect("loss"), loss_value);
    let window = back.entropy_window.as_ref().expect("window");
    assert_eq!(window.tokens.item::<f32>().expect("tokens"), 5.0);
    let mut control = EntropyControl::from_config(&cfg);
    control.record(window).expect("record");
    let mean = control.end_step().expect("adaptive");
    assert!((mean - (0.3 + 1.2 + 0.8 + 2.0 + 0.1) / 5.0).abs() < 1e-6);

    let short = OutputLayout {
        metric_names: layout.metric_names.clone(),
        entropy_window: false,
    };
    let err = LossOutput::from_outputs(&short, flat).expect_err("length mismatch");
    assert!(matches!(err, Error::LossOutputLayout { .. }), "{err:?}");
}

#[test]
fn eval_mode_drops_the_accumulation_divisors() {
    let b = batch();
    for loss_type in [
        LossType::Grpo,
        LossType::Bnpo,
        LossType::DrGrpo,
        LossType::Luspo,
        LossType::Dapo,
    ] {
        let cfg = GrpoConfig {
            gradient_accumulation_steps: 4,
            steps_per_generation: Some(2),
            ..config(loss_type)
        };
        let loss = GrpoLoss::from_config(&cfg);
        let train = loss
            .compute(&full_inputs(&b))
            .expect("train")
            .loss
            .item::<f32>()
            .expect("value");
        let eval = loss
            .compute(&full_inputs(&b).with_mode(LossMode::Eval))
            .expect("eval")
            .loss
            .item::<f32>()
            .expect("value");
        // Train divides by gas = 4 (dapo: by N * gas / spg = 2N instead of N).
        let factor = if loss_type == LossType::Dapo {
            2.0
        } else {
            4.0
        };
        assert!(
            (eval - train * factor).abs() <= 1e-6 * eval.abs().max(1.0),
            "{loss_type}: {train} {eval}"
        );
        // An explicit current accumulation count overrides the configured one.
        let short = loss
            .compute(&full_inputs(&b).with_gradient_accumulation_steps(2))
            .expect("short window")
            .loss
            .item::<f32>()
            .expect("value");
        assert!(
            (short - train * 2.0).abs() <= 1e-6 * short.abs().max(1.0),
            "{loss_type}: {train} {short}"
        );
    }
}

#[test]
fn settings_follow_the_config() {
    let cfg = GrpoConfig {
        epsilon: 0.1,
        epsilon_high: None,
        gradient_accumulation_steps: 3,
        ..GrpoConfig::default()
    };
    let s = LossSettings::from_config(&cfg);
    assert_eq!(s.epsilon_high, 0.1);
    assert_eq!(s.steps_per_generation, 3);
    assert!(!s.uses_entropy_mask() && !s.uses_entropy_bonus());
    assert!(s.needs_num_items_in_batch());
}

#[test]
fn quantile_interpolates_like_torch() {
    // Sorted valid values [1, 2, 4, 8]: position q * 3, linear interpolation.
    let values = arr(&[8.0, 1.0, 100.0, 4.0, 2.0, -5.0], &[2, 3]);
    let mask = arr(&[1.0, 1.0, 0.0, 1.0, 1.0, 0.0], &[2, 3]);
    for (q, want) in [
        (0.0, 1.0f32),
        (1.0, 8.0),
        (0.5, 3.0),
        (0.25, 1.75),
        (0.9, 6.8),
    ] {
        let got = masked_quantile(&values, &mask, q)
            .expect("quantile")
            .item::<f32>()
            .expect("value");
        assert!(
            (got - want).abs() <= 1e-6 * want.abs(),
            "q = {q}: {got} vs {want}"
        );
    }
}

#[test]
fn quantile_takes_the_position_exactly_as_torch() {
    // torch.quantile(tensor([0, 1, 2, 3, 1000] + [2000] * 11), 0.2) = 3.000044584274292:
    // f32(0.2) * 15 = 3.0000000447..., whose fraction survives.
    let mut values = vec![0.0f32, 1.0, 2.0, 3.0, 1000.0];
    values.extend([2000.0; 11]);
    let mask = vec![1.0f32; 16];
    let got = masked_quantile(&arr(&values, &[16]), &arr(&mask, &[16]), 0.2)
        .expect("quantile")
        .item::<f32>()
        .expect("value");
    assert_eq!(got, 3.000_044_6_f32);
}

/// torch's quantile on the host: exact position in f64, f32 weight, lerp with
/// a fused multiply-add.
fn torch_quantile(values: &[f32], q: f64) -> f32 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let rank = f64::from(q as f32) * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let w = (rank - rank.floor()) as f32;
    let d = sorted[hi] - sorted[lo];
    if w.abs() < 0.5 {
        w.mul_add(d, sorted[lo])
    } else {
        (-d).mul_add(1.0 - w, sorted[hi])
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    #[test]
    fn quantile_matches_torch_bit_for_bit(
        values in proptest::collection::vec(0.0f32..3.0, 1..300),
        keep in proptest::collection::vec(proptest::bool::weighted(0.8), 300),
        q in 0.0f64..=1.0,
    ) {
        let mask: Vec<f32> = values.iter().zip(&keep).map(|(_, &k)| if k { 1.0 } else { 0.0 }).collect();
        let selected: Vec<f32> = values.iter().zip(&keep).filter(|&(_, &k)| k).map(|(&v, _)| v).collect();
        proptest::prop_assume!(!selected.is_empty());
        let n = values.len() as i32;
        let got = masked_quantile(&arr(&values, &[n]), &arr(&mask, &[n]), q)
            .expect("quantile")
            .item::<f32>()
            .expect("value");
        proptest::prop_assert_eq!(got.to_bits(), torch_quantile(&selected, q).to_bits(), "q = {}", q);
    }
}

/// Per-token log-probabilities and entropies of `tokens` under `logits`
/// `[B, T, V]`, as a trainer computes them inside its gradient closure.
fn logps_and_entropies(logits: &Array, tokens: &Array) -> mlx_tensor::Result<(Array, Array)> {
    let logp_all = logits.log_softmax(-1, true)?;
    let logps = logp_all.take_along_axis(tokens, -1)?.squeeze(&[2])?;
    let entropies = logp_all
        .exp()?
        .multiply(&logp_all)?
        .sum(-1, false)?
        .negative()?;
    Ok((logps, entropies))
}

#[test]
fn the_loss_trains_a_model_through_its_gradient() {
    use mlx_tensor::transforms::value_and_grad;
    let (b, t, v) = (2, 3, 5);
    let logits: Vec<f32> = (0..b * t * v)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1)
        .collect();
    let logits = arr(&logits, &[b, t, v]);
    let tokens = Array::from_slice(&[1u32, 4, 2, 0, 3, 3], &[b, t, 1]).expect("tokens");
    let advantages = arr(&[1.0, -1.0], &[2]);
    let mask = arr(&[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], &[2, 3]);
    let cfg = GrpoConfig {
        loss_type: LossType::Grpo,
        top_entropy_quantile: 0.5,
        entropy_coef: 0.01,
        ..GrpoConfig::default()
    };
    let loss_fn = GrpoLoss::from_config(&cfg);
    let step = |params: &Array| -> (f32, Array) {
        let (outputs, grads) = value_and_grad(
            |xs: &[Array]| {
                let (logps, entropies) = logps_and_entropies(&xs[0], &tokens)?;
                let inputs = LossInputs::new(&logps, &advantages, &mask).with_entropies(&entropies);
                let out = loss_fn
                    .compute(&inputs)
                    .map_err(|e| mlx_tensor::Error::Invalid {
                        op: "grpo_loss",
                        message: e.to_string(),
                    })?;
                Ok(out.into_outputs())
            },
            std::slice::from_ref(params),
            &[0],
        )
        .expect("value_and_grad");
        (outputs[0].item::<f32>().expect("loss"), grads[0].clone())
    };
    let (before, grad) = step(&logits);
    assert_eq!(grad.shape().0, vec![b, t, v]);
    let g = grad.to_vec::<f32>().expect("grad");
    assert!(g.iter().all(|x| x.is_finite()) && g.iter().any(|&x| x != 0.0));
    // The padded position (row 1, token 2) gets no gradient.
    assert!(
        g[(v * (t + 2)) as usize..(v * (t + 3)) as usize]
            .iter()
            .all(|&x| x == 0.0)
    );
    // One descent step: on-policy the policy term's value is constant, but
    // its gradient raises the log-probabilities of the positive-advantage
    // completion and lowers those of the negative one.
    let updated = logits
        .subtract(&grad.mul_scalar(0.5).expect("scale"))
        .expect("step");
    let row_logps = |params: &Array| -> Vec<f32> {
        let (logps, _) = logps_and_entropies(params, &tokens).expect("logps");
        logps
            .multiply(&mask)
            .and_then(|x| x.sum(-1, false))
            .and_then(|x| x.to_vec::<f32>())
            .expect("row sums")
    };
    let (old, new) = (row_logps(&logits), row_logps(&updated));
    assert!(new[0] > old[0] && new[1] < old[1], "{old:?} -> {new:?}");
    let (after, _) = step(&updated);
    assert!(after.is_finite() && before.is_finite());
}
