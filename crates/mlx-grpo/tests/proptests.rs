//! Property tests: parsers never panic, samplers and advantages keep their
//! invariants, reward functions stay in range.

use mlx_grpo::advantages::{AdvantageSettings, compute_advantages};
use mlx_grpo::config::{GrpoConfig, MultiObjectiveAggregation, ScaleRewards};
use mlx_grpo::dataset::{Dataset, GenerationSampler, Prompt, SamplerSpec, SplitMix64};
use mlx_grpo::rewards::answer;
use mlx_grpo::rewards::{RepetitionPenalty, RewardMatrix, SoftOverlongPunishment};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("(role|content|prompt|answer|[a-z]{1,4})", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn answer_parsers_never_panic(text in "\\PC{0,40}", gold in "[0-9$,./\\\\{}a-z -]{0,12}") {
        let _ = answer::parse_number(&text);
        let _ = answer::last_number(&text);
        let _ = answer::extract_boxed(&text);
        let _ = answer::extract_tag(&text, "answer");
        let _ = answer::normalize_text(&text);
        let _ = answer::answers_match(&text, &gold, 1e-6);
        let _ = answer::answers_match(&gold, &text, 1e-6);
    }

    #[test]
    fn numbers_round_trip(x in -1.0e9f64..1.0e9) {
        let text = format!("{x}");
        prop_assert_eq!(answer::parse_number(&text), Some(x));
        let sentence = format!("so the total is {x} dollars");
        prop_assert_eq!(answer::last_number(&sentence), Some(x));
    }

    #[test]
    fn dataset_and_prompt_parsing_never_panic(text in "\\PC{0,60}", value in json_value()) {
        let _ = Dataset::from_jsonl_str(&text, "prop");
        let _ = Prompt::from_json(&value);
        let line = serde_json::json!({ "prompt": value.clone(), "answer": value }).to_string();
        let _ = Dataset::from_jsonl_str(&line, "prop");
    }

    #[test]
    fn config_set_never_panics(key in "[a-z_-]{0,24}", value in "\\PC{0,16}") {
        let mut cfg = GrpoConfig::default();
        let before = cfg.clone();
        if cfg.set(&key, &value).is_err() {
            prop_assert_eq!(cfg, before);
        }
    }

    #[test]
    fn permutations_are_permutations(seed in any::<u64>(), n in 0usize..200) {
        let mut p = SplitMix64::new(seed).permutation(n);
        p.sort_unstable();
        prop_assert_eq!(p, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn sampler_epochs_partition_rows(
        rows in 1usize..60, g in 1usize..5, p in 1usize..8, spg in 1usize..4, iters in 1usize..3,
        shuffle in any::<bool>(), seed in any::<u64>(), resume_at in 0usize..20,
    ) {
        let spec = SamplerSpec {
            num_generations: g, prompts_per_generation: p, steps_per_generation: spg,
            num_iterations: iters, shuffle, seed,
        };
        let Ok(mut sampler) = GenerationSampler::new(rows, spec) else {
            prop_assert!(rows < p);
            return Ok(());
        };
        let per_epoch = sampler.batches_per_epoch();
        prop_assert_eq!(per_epoch, rows / p);
        let batches: Vec<_> = (0..per_epoch * 2 + 1).map(|_| sampler.next_batch()).collect();
        for epoch in batches.chunks(per_epoch).take(2) {
            let mut seen: Vec<usize> = epoch.iter().flat_map(|b| b.prompt_indices.clone()).collect();
            prop_assert!(seen.iter().all(|&i| i < rows));
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), per_epoch * p, "rows repeat within an epoch");
        }
        let b = &batches[0];
        let slots = b.sample_indices();
        prop_assert_eq!(slots.len(), p * g);
        prop_assert!(slots.chunks(g).all(|grp| grp.iter().all(|&i| i == grp[0])));
        prop_assert_eq!(b.micro_steps(), spg * iters);
        let k = resume_at.min(batches.len() - 1);
        let mut resumed = GenerationSampler::resume(rows, spec, batches[k].position).expect("resume");
        for expected in &batches[k..] {
            prop_assert_eq!(&resumed.next_batch(), expected);
        }
    }

    #[test]
    fn advantages_are_centred_and_finite(
        groups in 1usize..5, g in 2usize..5, f in 1usize..4,
        seed in any::<u64>(), nan_rate in 0u64..4,
        scale in prop::sample::select(ScaleRewards::ALL.to_vec()),
        aggregation in prop::sample::select(MultiObjectiveAggregation::ALL.to_vec()),
    ) {
        let b = groups * g;
        let mut rng = SplitMix64::new(seed);
        let values: Vec<f32> = (0..b * f)
            .map(|_| if rng.below(8) < nan_rate { f32::NAN } else { (rng.next_f64() * 4.0 - 2.0) as f32 })
            .collect();
        let names = (0..f).map(|j| format!("f{j}")).collect();
        let matrix = RewardMatrix::new(names, b, values).expect("matrix");
        let weights: Vec<f32> = (0..f).map(|j| 0.5 + j as f32).collect();
        let settings = AdvantageSettings { num_generations: g, scale_rewards: scale, aggregation };
        let Ok(out) = compute_advantages(&matrix, &weights, &settings) else {
            prop_assert_eq!(matrix.unscorable_samples().len(), b);
            return Ok(());
        };
        prop_assert!(out.advantages.iter().all(|a| a.is_finite()));
        prop_assert!(out.unscorable.iter().all(|&i| out.advantages[i] == 0.0));
        if nan_rate == 0 {
            let centred_groups = match aggregation {
                MultiObjectiveAggregation::SumThenNormalize => out.advantages.chunks(g).collect::<Vec<_>>(),
                MultiObjectiveAggregation::NormalizeThenSum => vec![&out.advantages[..]],
            };
            for grp in centred_groups {
                let sum: f32 = grp.iter().sum();
                let scale: f32 = grp.iter().map(|a| a.abs()).sum::<f32>().max(1.0);
                prop_assert!(sum.abs() <= 1e-4 * scale, "group sum {}", sum);
            }
        }
    }

    #[test]
    fn length_and_repetition_rewards_stay_in_range(
        max_len in 1usize..200, cache_frac in 0.0f64..=1.0, len_a in 0usize..300, len_b in 0usize..300,
        words in prop::collection::vec("[ab]", 0..30), n in 1usize..5,
    ) {
        let cache = (max_len as f64 * cache_frac) as usize;
        let p = SoftOverlongPunishment::new(max_len, cache).expect("valid");
        let (lo, hi) = (len_a.min(len_b), len_a.max(len_b));
        prop_assert!((-1.0..=0.0).contains(&p.punishment(lo)));
        prop_assert!(p.punishment(hi) <= p.punishment(lo));
        let r = RepetitionPenalty::new(n, -2.0).expect("valid").penalty(&words);
        prop_assert!((-2.0..=0.0).contains(&r));
    }
}
