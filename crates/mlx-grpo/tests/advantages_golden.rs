//! Advantages and reward metrics against TRL 1.16 (fixture section `advantages`).

mod common;

use common::{close, fixture, num, vec1, vec2};
use mlx_grpo::advantages::{AdvantageSettings, compute_advantages};
use mlx_grpo::config::{MultiObjectiveAggregation, ScaleRewards};
use mlx_grpo::rewards::RewardMatrix;

#[test]
fn advantages_match_trl() {
    let fixture = fixture();
    let cases = fixture["advantages"]
        .as_array()
        .expect("advantages section");
    assert!(
        cases.len() >= 30,
        "fixture has only {} advantage cases",
        cases.len()
    );
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let cfg = &case["config"];
        let names: Vec<String> = cfg["reward_func_names"]
            .as_array()
            .expect("names")
            .iter()
            .map(|n| n.as_str().expect("name").to_string())
            .collect();
        let rows = vec2(&case["rewards_per_func"]);
        let values: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        let matrix = RewardMatrix::new(names.clone(), rows.len(), values).expect("matrix");
        let weights: Vec<f32> = vec1(&cfg["reward_weights"])
            .iter()
            .map(|&w| w as f32)
            .collect();
        let settings = AdvantageSettings {
            num_generations: cfg["num_generations"].as_u64().expect("G") as usize,
            scale_rewards: cfg["scale_rewards"]
                .as_str()
                .expect("scale")
                .parse::<ScaleRewards>()
                .expect("scale"),
            aggregation: cfg["multi_objective_aggregation"]
                .as_str()
                .expect("aggregation")
                .parse::<MultiObjectiveAggregation>()
                .expect("aggregation"),
        };

        let out = compute_advantages(&matrix, &weights, &settings)
            .unwrap_or_else(|e| panic!("{name}: {e}"));

        let want = vec1(&case["advantages"]);
        assert_eq!(out.advantages.len(), want.len(), "{name}");
        for (i, (&got, &want)) in out.advantages.iter().zip(&want).enumerate() {
            assert!(
                close(f64::from(got), want),
                "{name}: advantage[{i}] = {got}, TRL {want}"
            );
        }

        let metrics = out.metrics.to_map();
        let want_metrics = case["metrics"].as_object().expect("metrics");
        assert_eq!(
            metrics.len(),
            want_metrics.len(),
            "{name}: metric names {metrics:?} vs {want_metrics:?}"
        );
        for (key, want) in want_metrics {
            let got = *metrics
                .get(key)
                .unwrap_or_else(|| panic!("{name}: missing metric {key}"));
            assert!(close(got, num(want)), "{name}: {key} = {got}, TRL {want}");
        }
    }
}
