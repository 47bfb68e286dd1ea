//! Seeded generation on a tiny random Qwen3 checkpoint compared with
//! mlx-lm's `generate_step` and `batch_generate` on the same checkpoint
//! (fixtures from `scripts/fixtures/gen_sample_fixtures.py`).

mod sample_support;

use mlx_lm::generate::{BatchOptions, GenerateOptions, generate_batch, generate_step};
use mlx_lm::sample::RandomState;
use mlx_tensor::random;
use sample_support::settings;
use sample_support::{ids_of, load_json, tiny_model};
use serde_json::Value;

fn options(doc: &Value, case: &Value) -> GenerateOptions {
    GenerateOptions {
        max_tokens: Some(doc["max_tokens"].as_u64().unwrap() as usize),
        prefill_step_size: doc["prefill_step_size"].as_u64().unwrap() as usize,
        sampler: settings::sampler_config(&case["settings"]["sampler"]),
        processors: case["settings"]
            .get("processors")
            .map(settings::processor_config)
            .unwrap_or_default(),
        ..GenerateOptions::default()
    }
}

#[test]
fn seeded_generation_matches_mlx_lm() {
    let doc = load_json("generate_cases.json");
    let model = tiny_model();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 50);
    for case in cases {
        let opts = options(&doc, case);
        let prompt = ids_of(&case["prompt"]);
        let rng = RandomState::from_seed(case["seed"].as_u64().unwrap()).unwrap();
        let out: Vec<_> = generate_step(&model, &prompt, &opts, rng)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let tokens: Vec<u32> = out.iter().map(|t| t.token).collect();
        assert_eq!(tokens, ids_of(&case["tokens"]), "case {}", case["settings"]);
        for (t, want) in out.iter().zip(case["logprobs"].as_array().unwrap()) {
            let want = want.as_f64().unwrap() as f32;
            assert!(
                (t.logprob - want).abs() < 1e-4,
                "logprob {} vs {want} in {}",
                t.logprob,
                case["settings"]
            );
        }
    }
}

#[test]
fn global_key_sequence_matches_mlx_lm_too() {
    let doc = load_json("generate_cases.json");
    let model = tiny_model();
    for case in doc["cases"].as_array().unwrap().iter().skip(6).step_by(7) {
        let opts = options(&doc, case);
        random::seed(case["seed"].as_u64().unwrap());
        let tokens: Vec<u32> = generate_step(
            &model,
            &ids_of(&case["prompt"]),
            &opts,
            RandomState::global(),
        )
        .unwrap()
        .map(|t| t.unwrap().token)
        .collect();
        assert_eq!(tokens, ids_of(&case["tokens"]), "case {}", case["settings"]);
    }
}

#[test]
fn greedy_batch_matches_mlx_lm_batch_generate() {
    let doc = load_json("generate_cases.json");
    let b = &doc["batch_greedy"];
    let model = tiny_model();
    let prompts: Vec<Vec<u32>> = b["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids_of)
        .collect();
    let options = BatchOptions {
        max_tokens: b["max_tokens"].as_u64().unwrap() as usize,
        eos_token_ids: ids_of(&b["eos"]),
        ..BatchOptions::default()
    };
    let out = generate_batch(
        &model,
        &prompts,
        &options,
        &mut RandomState::from_seed(0).unwrap(),
    )
    .unwrap();
    for (c, want) in out.completions.iter().zip(b["tokens"].as_array().unwrap()) {
        // mlx-lm leaves the end-of-sequence token out of its token ids.
        assert_eq!(c.content_tokens(), ids_of(want).as_slice());
    }
    for (c, want) in out
        .completions
        .iter()
        .zip(b["logprobs"].as_array().unwrap())
    {
        for (got, want) in c.sampler_logprobs.iter().zip(want.as_array().unwrap()) {
            assert!((got - want.as_f64().unwrap() as f32).abs() < 1e-4);
        }
    }
}
