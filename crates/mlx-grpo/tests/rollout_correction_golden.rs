//! The rollout-versus-training correction against TRL 1.16's own numbers
//! (`tests/fixtures/trl_rollout_correction.json`, written by
//! `scripts/fixtures/gen_rollout_correction_fixtures.py`): the importance
//! ratio and the `sampling/*` metrics of every mode and bound, and the loss
//! (value, gradient, metrics) with the ratio and the sampler's
//! log-probabilities in it. Tolerance: 1e-5 relative, 1e-6 absolute floor.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;

use common::{close, fixture_file, num, vec1, vec2};
use mlx_grpo::config::GrpoConfig;
use mlx_grpo::loss::{GrpoLoss, LossInputs, LossOutput, RolloutCorrection, SamplingStats};
use mlx_tensor::{Array, transforms};
use serde_json::Value;

fn array2(rows: &[Vec<f64>]) -> Array {
    let b = rows.len() as i32;
    let t = rows.first().map_or(0, Vec::len) as i32;
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    Array::from_slice(&flat, &[b, t]).expect("array")
}

/// The config of a case: its TRL fields with the correction on.
fn config(fields: &Value) -> GrpoConfig {
    let mut fields = fields.as_object().expect("config").clone();
    fields.insert(
        "vllm_importance_sampling_correction".into(),
        Value::Bool(true),
    );
    let cfg = GrpoConfig::from_json_str(&Value::Object(fields).to_string()).expect("config");
    cfg.validate().expect("a config TRL accepts");
    cfg
}

fn correction(cfg: &GrpoConfig) -> RolloutCorrection {
    RolloutCorrection::from_config(cfg).expect("the correction is on")
}

fn compare_ratio(name: &str, got: &Array, want: &Value, failures: &mut Vec<String>) {
    let want = vec2(want);
    let shape = [want.len() as i32, want.first().map_or(0, Vec::len) as i32];
    assert_eq!(got.shape().0, shape, "{name}: ratio shape");
    let got = got.to_vec::<f32>().expect("ratio");
    for (i, (&g, &w)) in got.iter().zip(want.iter().flatten()).enumerate() {
        if !close(f64::from(g), w) {
            failures.push(format!("{name}: ratio[{i}] {g} vs TRL {w}"));
        }
    }
}

fn compare_metrics(
    name: &str,
    got: &BTreeMap<String, f64>,
    want: &Value,
    failures: &mut Vec<String>,
) {
    let want = want.as_object().expect("metrics");
    let mut got_names: Vec<&String> = got.keys().collect();
    let mut want_names: Vec<&String> = want.keys().collect();
    got_names.sort();
    want_names.sort();
    assert_eq!(got_names, want_names, "{name}: metric names");
    for (key, w) in want {
        let (g, w) = (got[key], num(w));
        if !close(g, w) {
            failures.push(format!("{name}: {key} {g} vs TRL {w}"));
        }
    }
}

#[test]
fn ratios_and_sampling_metrics_match_trl() {
    let fixture = fixture_file("trl_rollout_correction.json");
    let cases = fixture["ratios"].as_array().expect("ratio cases");
    assert!(cases.len() >= 20, "{} ratio cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let cfg = config(&case["config"]);
        let old = array2(&vec2(&case["old_per_token_logps"]));
        let sampling = array2(&vec2(&case["sampling_per_token_logps"]));
        let mask = array2(&vec2(&case["completion_mask"]));
        let c = correction(&cfg);
        let ratio = c
            .importance_sampling_ratio(&old, &sampling, &mask)
            .expect("ratio");
        compare_ratio(
            name,
            &ratio,
            &case["expected"]["importance_sampling_ratio"],
            &mut failures,
        );
        let stats = SamplingStats::of_batch(c.mode, &old, &sampling, &mask, &ratio).expect("stats");
        let metrics = SamplingStats::metrics(&[stats.values()]);
        compare_metrics(name, &metrics, &case["expected"]["metrics"], &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn loss_with_the_correction_matches_trl() {
    let fixture = fixture_file("trl_rollout_correction.json");
    let cases = fixture["loss"].as_array().expect("loss cases");
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let cfg = config(&case["config"]);
        let inputs = &case["inputs"];
        let expected = &case["expected"];
        let logps = array2(&vec2(&inputs["per_token_logps"]));
        let old = array2(&vec2(&inputs["old_per_token_logps"]));
        let sampling = array2(&vec2(&inputs["sampling_per_token_logps"]));
        let mask = array2(&vec2(&inputs["completion_mask"]));
        let entropies = array2(&vec2(&inputs["entropies"]));
        let adv = vec1(&inputs["advantages"]);
        let adv: Vec<f32> = adv.iter().map(|&v| v as f32).collect();
        let advantages = Array::from_slice(&adv, &[adv.len() as i32]).expect("advantages");
        let reference = (!inputs["ref_per_token_logps"].is_null())
            .then(|| array2(&vec2(&inputs["ref_per_token_logps"])));
        let items = num(&inputs["num_items_in_batch"]);

        let ratio = correction(&cfg)
            .importance_sampling_ratio(&old, &sampling, &mask)
            .expect("ratio");
        compare_ratio(
            name,
            &ratio,
            &expected["importance_sampling_ratio"],
            &mut failures,
        );

        let loss_fn = GrpoLoss::from_config(&cfg);
        let layout = RefCell::new(None);
        let (outputs, grads) = transforms::value_and_grad(
            |xs: &[Array]| {
                let mut li = LossInputs::new(&xs[0], &advantages, &mask)
                    .with_entropies(&entropies)
                    .with_num_items_in_batch(items)
                    .with_old_logps(&old)
                    .with_sampling_logps(&sampling)
                    .with_importance_sampling_ratio(&ratio);
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
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let layout = layout.into_inner().expect("closure ran");
        let out = LossOutput::from_outputs(&layout, outputs).expect("layout");
        let loss = f64::from(out.loss.item::<f32>().expect("loss"));
        let want = num(&expected["loss"]);
        if !close(loss, want) {
            failures.push(format!("{name}: loss {loss} vs TRL {want}"));
        }
        let grad = grads[0].to_vec::<f32>().expect("grad");
        let want_grad: Vec<f64> = vec2(&expected["grad_per_token_logps"])
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(grad.len(), want_grad.len(), "{name}: gradient size");
        for (i, (&g, &w)) in grad.iter().zip(&want_grad).enumerate() {
            if !close(f64::from(g), w) {
                failures.push(format!("{name}: grad[{i}] {g} vs TRL {w}"));
            }
        }
        let metrics = out.metrics.to_map().expect("metrics");
        compare_metrics(name, &metrics, &expected["metrics"], &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
