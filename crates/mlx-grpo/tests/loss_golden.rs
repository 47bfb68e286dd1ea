//! The MLX GRPO loss against TRL 1.16's own numbers
//! (`tests/fixtures/trl_grpo.json`): for every loss case the loss value, the
//! gradient with respect to `per_token_logps` and every metric; and the
//! entropy-mask, off-policy-mask and gamma-weight helpers on their cases.
//! Tolerance: REFERENCE.md's 1e-5 relative, with a 1e-6 absolute floor.

mod common;

use std::cell::{Cell, RefCell};

use common::{close, fixture, num, vec1, vec2};
use mlx_grpo::config::{ImportanceSamplingLevel, LossType};
use mlx_grpo::loss::{
    GammaParams, GrpoLoss, LossInputs, LossOutput, LossSettings, gamma_weights, high_entropy_mask,
    off_policy_mask,
};
use mlx_tensor::{Array, transforms};
use serde_json::Value;

fn array2(rows: &[Vec<f64>]) -> Array {
    let b = rows.len() as i32;
    let t = rows.first().map_or(0, Vec::len) as i32;
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    Array::from_slice(&flat, &[b, t]).expect("array")
}

fn array1(values: &[f64]) -> Array {
    let flat: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Array::from_slice(&flat, &[flat.len() as i32]).expect("array")
}

fn opt(v: &Value) -> Option<f64> {
    (!v.is_null()).then(|| num(v))
}

fn settings(cfg: &Value) -> LossSettings {
    let epsilon = num(&cfg["epsilon"]);
    LossSettings {
        loss_type: cfg["loss_type"]
            .as_str()
            .expect("loss_type")
            .parse::<LossType>()
            .expect("loss type"),
        importance_sampling_level: cfg["importance_sampling_level"]
            .as_str()
            .expect("level")
            .parse::<ImportanceSamplingLevel>()
            .expect("level"),
        beta: num(&cfg["beta"]),
        epsilon_low: epsilon,
        epsilon_high: opt(&cfg["epsilon_high"]).unwrap_or(epsilon),
        delta: opt(&cfg["delta"]),
        sapo_temperature_pos: num(&cfg["sapo_temperature_pos"]),
        sapo_temperature_neg: num(&cfg["sapo_temperature_neg"]),
        vespo_k_pos: num(&cfg["vespo_k_pos"]),
        vespo_lambda_pos: num(&cfg["vespo_lambda_pos"]),
        vespo_k_neg: num(&cfg["vespo_k_neg"]),
        vespo_lambda_neg: num(&cfg["vespo_lambda_neg"]),
        top_entropy_quantile: num(&cfg["top_entropy_quantile"]),
        off_policy_mask_threshold: opt(&cfg["off_policy_mask_threshold"]),
        use_bias_correction_kl: cfg["use_bias_correction_kl"].as_bool().expect("bool"),
        entropy_coef: num(&cfg["entropy_coef"]),
        use_adaptive_entropy: false,
        max_completion_length: cfg["max_completion_length"].as_u64().expect("int") as usize,
        gradient_accumulation_steps: cfg["gradient_accumulation_steps"].as_u64().expect("int")
            as usize,
        steps_per_generation: cfg["steps_per_generation"].as_u64().expect("int") as usize,
    }
}

/// Largest error relative to `max(|want|, 0.1)` seen, for the report.
#[derive(Default)]
struct Worst {
    scaled: f64,
    what: String,
}

impl Worst {
    fn check(&mut self, got: f64, want: f64, what: impl FnOnce() -> String) -> bool {
        let ok = close(got, want);
        if !want.is_nan() && !got.is_nan() {
            let scaled = (got - want).abs() / want.abs().max(0.1);
            if scaled > self.scaled {
                self.scaled = scaled;
                self.what = what();
            }
        }
        ok
    }
}

/// Loss, gradient and metrics of one fixture case.
fn run_case(case: &Value) -> (f64, Vec<f32>, std::collections::BTreeMap<String, f64>) {
    let loss_fn = GrpoLoss::new(settings(&case["config"]));
    let inputs = &case["inputs"];
    let logps = array2(&vec2(&inputs["per_token_logps"]));
    let advantages = array1(&vec1(&inputs["advantages"]));
    let mask = array2(&vec2(&inputs["completion_mask"]));
    let entropies = array2(&vec2(&inputs["entropies"]));
    let old = (!inputs["old_per_token_logps"].is_null())
        .then(|| array2(&vec2(&inputs["old_per_token_logps"])));
    let reference = (!inputs["ref_per_token_logps"].is_null())
        .then(|| array2(&vec2(&inputs["ref_per_token_logps"])));
    let items = num(&inputs["num_items_in_batch"]);
    let layout = RefCell::new(None);
    let calls = Cell::new(0);
    let (outputs, grads) = transforms::value_and_grad(
        |xs: &[Array]| {
            calls.set(calls.get() + 1);
            let mut li = LossInputs::new(&xs[0], &advantages, &mask)
                .with_entropies(&entropies)
                .with_num_items_in_batch(items);
            li.old_per_token_logps = old.as_ref();
            li.ref_per_token_logps = reference.as_ref();
            let out = loss_fn
                .compute(&li)
                .map_err(|e| mlx_tensor::Error::Invalid {
                    op: "grpo_loss",
                    message: e.to_string(),
                })?;
            *layout.borrow_mut() = Some(out.layout());
            Ok(out.into_outputs())
        },
        &[logps],
        &[0],
    )
    .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
    assert_eq!(calls.get(), 1);
    let layout = layout.into_inner().expect("closure ran");
    let out = LossOutput::from_outputs(&layout, outputs).expect("layout");
    let loss = f64::from(out.loss.item::<f32>().expect("loss"));
    let grad = grads[0].to_vec::<f32>().expect("grad");
    let metrics = out.metrics.to_map().expect("metrics");
    (loss, grad, metrics)
}

#[test]
fn loss_gradient_and_metrics_match_trl() {
    let fixture = fixture();
    let cases = fixture["loss"].as_array().expect("loss cases");
    let (mut worst_loss, mut worst_grad, mut worst_metric) =
        (Worst::default(), Worst::default(), Worst::default());
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let expected = &case["expected"];
        let (loss, grad, metrics) = run_case(case);

        let want = num(&expected["loss"]);
        if !worst_loss.check(loss, want, || format!("{name}: loss")) {
            failures.push(format!("{name}: loss {loss} vs TRL {want}"));
        }
        let want_grad: Vec<f64> = vec2(&expected["grad_per_token_logps"])
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(grad.len(), want_grad.len(), "{name}: gradient size");
        for (i, (&g, &w)) in grad.iter().zip(&want_grad).enumerate() {
            if !worst_grad.check(f64::from(g), w, || format!("{name}: grad[{i}]")) {
                failures.push(format!("{name}: grad[{i}] {g} vs TRL {w}"));
            }
        }
        let want_metrics = expected["metrics"].as_object().expect("metrics");
        let mut got_names: Vec<&String> = metrics.keys().collect();
        let mut want_names: Vec<&String> = want_metrics.keys().collect();
        got_names.sort();
        want_names.sort();
        assert_eq!(got_names, want_names, "{name}: metric names");
        for (key, want) in want_metrics {
            let (got, want) = (metrics[key], num(want));
            if !worst_metric.check(got, want, || format!("{name}: {key}")) {
                failures.push(format!("{name}: metric {key} {got} vs TRL {want}"));
            }
        }
    }
    eprintln!(
        "{} loss cases; largest error relative to max(|TRL|, 0.1):",
        cases.len()
    );
    for (what, worst) in [
        ("loss", &worst_loss),
        ("gradient", &worst_grad),
        ("metrics", &worst_metric),
    ] {
        eprintln!("  {what}: {:.3e} ({})", worst.scaled, worst.what);
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn mask_values(a: &Array) -> Vec<f64> {
    a.to_vec::<f32>()
        .expect("values")
        .into_iter()
        .map(f64::from)
        .collect()
}

#[test]
fn entropy_mask_matches_trl() {
    let fixture = fixture();
    let cases = fixture["entropy_mask"].as_array().expect("entropy_mask");
    for case in cases {
        let entropies = array2(&vec2(&case["entropies"]));
        let mask = array2(&vec2(&case["mask"]));
        let got = high_entropy_mask(&entropies, &mask, num(&case["threshold"])).expect("mask");
        let want: Vec<f64> = vec2(&case["expected"]).into_iter().flatten().collect();
        assert_eq!(got.shape().0, mask.shape().0, "{}", case["name"]);
        assert_eq!(mask_values(&got), want, "{}", case["name"]);
    }
    assert!(cases.len() >= 15);
}

#[test]
fn off_policy_mask_matches_trl() {
    let fixture = fixture();
    for case in fixture["off_policy_mask"]
        .as_array()
        .expect("off_policy_mask")
    {
        let advantages = array2(&vec2(&case["advantages"]));
        let logps = array2(&vec2(&case["per_token_logps"]));
        let sampling = array2(&vec2(&case["sampling_per_token_logps"]));
        let mask = array2(&vec2(&case["mask"]));
        let got = off_policy_mask(
            &advantages,
            &logps,
            &sampling,
            &mask,
            num(&case["threshold"]),
        )
        .expect("mask");
        let want: Vec<f64> = vec2(&case["expected"]).into_iter().flatten().collect();
        assert_eq!(
            got.shape().0,
            vec![want.len() as i32, 1],
            "{}",
            case["name"]
        );
        assert_eq!(mask_values(&got), want, "{}", case["name"]);
    }
}

#[test]
fn gamma_weights_match_trl() {
    let fixture = fixture();
    let mut worst = Worst::default();
    for case in fixture["gamma_weights"].as_array().expect("gamma_weights") {
        let name = case["name"].as_str().expect("name");
        let p = &case["params"];
        let params = GammaParams {
            k_pos: num(&p["k_pos"]),
            lambda_pos: num(&p["lambda_pos"]),
            k_neg: num(&p["k_neg"]),
            lambda_neg: num(&p["lambda_neg"]),
        };
        let advantages = array2(&vec2(&case["advantages"]));
        let log_ratio = array2(&vec2(&case["log_ratio_per_token"]));
        let mask = array2(&vec2(&case["mask"]));
        let ratio = (!case["importance_sampling_ratio"].is_null())
            .then(|| array2(&vec2(&case["importance_sampling_ratio"])));
        let got =
            gamma_weights(&advantages, &log_ratio, &mask, ratio.as_ref(), params).expect("phi");
        let want: Vec<f64> = vec2(&case["expected"]).into_iter().flatten().collect();
        assert_eq!(got.shape().0, vec![want.len() as i32, 1], "{name}");
        for (i, (g, w)) in mask_values(&got).into_iter().zip(want).enumerate() {
            assert!(
                worst.check(g, w, || format!("{name}[{i}]")),
                "{name}[{i}]: {g} vs TRL {w}"
            );
        }
    }
    eprintln!(
        "gamma weights: largest scaled error {:.3e} ({})",
        worst.scaled, worst.what
    );
}
