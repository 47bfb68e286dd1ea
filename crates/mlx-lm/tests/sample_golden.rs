//! Seeded sampler draws, filter outputs and processed logits compared with
//! mlx-lm on the same inputs (fixtures from `scripts/fixtures/gen_sample_fixtures.py`).

mod sample_support;

use std::collections::HashMap;

use mlx_lm::sample::{
    RandomState, SamplerConfig, apply_min_p, apply_top_k, apply_top_p, apply_xtc, logprobs,
};
use mlx_tensor::{Array, random};
use sample_support::settings;
use sample_support::{array_2d, dtype_named, load_json, rows_of, to_rows};
use serde_json::Value;

fn inputs(doc: &Value) -> HashMap<String, Array> {
    doc["logits"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| {
            let dtype = dtype_named(v["dtype"].as_str().unwrap());
            (name.clone(), array_2d(&rows_of(&v["values"]), dtype))
        })
        .collect()
}

fn draws_with(cfg: &SamplerConfig, lp: &Array, mut rng: RandomState) -> Vec<Vec<u32>> {
    (0..6)
        .map(|_| cfg.sample(lp, &mut rng).unwrap().to_vec::<u32>().unwrap())
        .collect()
}

fn expected_draws(case: &Value) -> Vec<Vec<u32>> {
    case["draws"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

#[test]
fn seeded_draws_match_mlx_lm_with_keyed_state() {
    let doc = load_json("sampler_cases.json");
    let logits = inputs(&doc);
    let cases = doc["sampler"].as_array().unwrap();
    assert!(cases.len() >= 90);
    for case in cases {
        let lp = logprobs(&logits[case["logits"].as_str().unwrap()]).unwrap();
        let cfg = settings::sampler_config(&case["settings"]);
        let seed = case["seed"].as_u64().unwrap();
        let got = draws_with(&cfg, &lp, RandomState::from_seed(seed).unwrap());
        assert_eq!(got, expected_draws(case), "case {case}");
    }
}

#[test]
fn seeded_draws_match_mlx_lm_with_global_state() {
    let doc = load_json("sampler_cases.json");
    let logits = inputs(&doc);
    for case in doc["sampler"].as_array().unwrap().iter().step_by(5) {
        let lp = logprobs(&logits[case["logits"].as_str().unwrap()]).unwrap();
        let cfg = settings::sampler_config(&case["settings"]);
        random::seed(case["seed"].as_u64().unwrap());
        let got = draws_with(&cfg, &lp, RandomState::global());
        assert_eq!(got, expected_draws(case), "case {case}");
    }
}

#[test]
fn filters_match_mlx_lm() {
    let doc = load_json("sampler_cases.json");
    let logits = inputs(&doc);
    for case in doc["filters"].as_array().unwrap() {
        let lp = logprobs(&logits[case["logits"].as_str().unwrap()]).unwrap();
        let a = &case["args"];
        let out = match case["filter"].as_str().unwrap() {
            "top_p" => apply_top_p(&lp, a[0].as_f64().unwrap()),
            "min_p" => apply_min_p(&lp, a[0].as_f64().unwrap(), a[1].as_u64().unwrap() as usize),
            "top_k" => apply_top_k(&lp, a[0].as_u64().unwrap() as usize),
            "xtc" => {
                let special: Vec<u32> = a[2]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap() as u32)
                    .collect();
                apply_xtc(
                    &lp,
                    a[0].as_f64().unwrap(),
                    a[1].as_f64().unwrap(),
                    &special,
                    None,
                )
            }
            other => panic!("unknown filter {other}"),
        }
        .unwrap();
        assert_eq!(
            to_rows(&out),
            rows_of(&case["out"]),
            "case {} {}",
            case["filter"],
            case["args"]
        );
    }
}

#[test]
fn processors_match_mlx_lm() {
    let doc = load_json("sampler_cases.json");
    let logits = inputs(&doc);
    for case in doc["processors"].as_array().unwrap() {
        let x = &logits[case["logits"].as_str().unwrap()];
        let ctx: Vec<u32> = case["context"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        let ctx = Array::from_slice(&ctx, &[ctx.len() as i32]).unwrap();
        let out = settings::processor_config(&case["settings"])
            .apply(&ctx, x)
            .unwrap();
        assert_eq!(out.dtype(), x.dtype());
        assert_eq!(
            to_rows(&out),
            rows_of(&case["out"]),
            "case {}",
            case["settings"]
        );
    }
}
