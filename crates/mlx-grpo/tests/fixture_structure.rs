//! The loss, mask and gamma-weight sections of the TRL fixture are complete
//! and well-formed (their numbers are checked by the MLX loss tests).

mod common;

use common::{fixture, num, vec1, vec2};
use mlx_grpo::config::{ImportanceSamplingLevel, LossType};

fn shape(rows: &[Vec<f64>]) -> (usize, usize) {
    let cols = rows.first().map_or(0, Vec::len);
    assert!(rows.iter().all(|r| r.len() == cols), "ragged matrix");
    (rows.len(), cols)
}

#[test]
fn loss_cases_cover_every_combination_and_are_consistent() {
    let fixture = fixture();
    let cases = fixture["loss"].as_array().expect("loss section");
    for &loss in LossType::ALL {
        for level in [
            ImportanceSamplingLevel::Token,
            ImportanceSamplingLevel::Sequence,
        ] {
            for beta in ["0.0", "0.04"] {
                let name = format!("{loss}/{level}/beta={beta}");
                assert!(
                    cases.iter().any(|c| c["name"] == name.as_str()),
                    "missing loss case {name}"
                );
            }
        }
    }
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let cfg = &case["config"];
        assert!(
            cfg["loss_type"]
                .as_str()
                .expect("loss_type")
                .parse::<LossType>()
                .is_ok(),
            "{name}"
        );
        let inputs = &case["inputs"];
        let mask = vec2(&inputs["completion_mask"]);
        let (b, t) = shape(&mask);
        assert!(
            mask.iter().flatten().all(|&v| v == 0.0 || v == 1.0),
            "{name}: mask not 0/1"
        );
        for key in [
            "per_token_logps",
            "old_per_token_logps",
            "ref_per_token_logps",
            "entropies",
        ] {
            if !inputs[key].is_null() {
                assert_eq!(shape(&vec2(&inputs[key])), (b, t), "{name}: {key}");
            }
        }
        assert_eq!(
            inputs["ref_per_token_logps"].is_null(),
            num(&cfg["beta"]) == 0.0,
            "{name}: ref logps vs beta"
        );
        assert_eq!(vec1(&inputs["advantages"]).len(), b, "{name}: advantages");
        let tokens: f64 = mask.iter().flatten().sum();
        assert!(
            num(&inputs["num_items_in_batch"]) >= tokens,
            "{name}: num_items_in_batch below the mask's tokens"
        );
        let expected = &case["expected"];
        assert!(num(&expected["loss"]).is_finite(), "{name}: loss");
        assert_eq!(
            shape(&vec2(&expected["grad_per_token_logps"])),
            (b, t),
            "{name}: grad"
        );
        assert!(
            expected["metrics"]["entropy"].is_number(),
            "{name}: entropy metric"
        );
    }
}

#[test]
fn mask_and_weight_cases_are_well_formed() {
    let fixture = fixture();
    for case in fixture["entropy_mask"].as_array().expect("entropy_mask") {
        let mask = vec2(&case["mask"]);
        let out = vec2(&case["expected"]);
        assert_eq!(shape(&out), shape(&mask));
        let outside = out
            .iter()
            .flatten()
            .zip(mask.iter().flatten())
            .any(|(&o, &m)| o == 1.0 && m == 0.0);
        assert!(!outside, "{}: selected a padded token", case["name"]);
    }
    for case in fixture["off_policy_mask"]
        .as_array()
        .expect("off_policy_mask")
    {
        let out = vec2(&case["expected"]);
        assert_eq!(shape(&out), (vec2(&case["mask"]).len(), 1));
    }
    for case in fixture["gamma_weights"].as_array().expect("gamma_weights") {
        let phi = vec2(&case["expected"]);
        assert!(
            phi.iter().flatten().all(|p| p.is_finite() && *p >= 0.0),
            "{}",
            case["name"]
        );
    }
}
