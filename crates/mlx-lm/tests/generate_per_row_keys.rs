//! Per-row sampling keys: with `RandomState::PerRow`, a row's completion
//! depends only on its own key, so sampling it alone, with the whole batch
//! or in another batch (other prompts, part of its group, rows that stop
//! early around it) gives the same tokens; in multi-turn generation too.

// Batches of one prompt take a one-element slice of generation ranges.
#![allow(clippy::single_range_in_vec_init)]

mod sample_support;

use std::collections::BTreeMap;
use std::ops::Range;

use mlx_lm::generate::{
    BatchOptions, Completion, FinishReason, TurnEnd, TurnHandler, generate_batch,
    generate_batch_groups, generate_turns_groups,
};
use mlx_lm::sample::{RandomState, SamplerConfig};
use mlx_lm::{Error, Model};
use sample_support::tiny_model;

const G: usize = 2;

fn prompts() -> Vec<Vec<u32>> {
    vec![
        vec![1, 45, 67, 89, 12, 200],
        vec![1, 5],
        vec![9, 8, 7, 6, 5, 4, 3, 3, 250, 13, 77, 31],
        vec![17],
    ]
}

/// The key seed of completion `gen` of prompt `p` (its global row).
fn seed_of(p: usize, generation: usize) -> u64 {
    1000 + (p * G + generation) as u64
}

/// Samples completions `gens[k]` of prompt `ps[k]` in one batch, each row
/// with the key of its global row; keyed by `(prompt, generation)`.
fn sample(
    model: &Model,
    ps: &[usize],
    gens: &[Range<usize>],
    options: &BatchOptions,
) -> BTreeMap<(usize, usize), Completion> {
    let all = prompts();
    let part: Vec<Vec<u32>> = ps.iter().map(|&p| all[p].clone()).collect();
    let seeds: Vec<u64> = ps
        .iter()
        .zip(gens)
        .flat_map(|(&p, r)| r.clone().map(move |i| seed_of(p, i)))
        .collect();
    let mut opts = options.clone();
    opts.prompt_samplers = options
        .prompt_samplers
        .as_ref()
        .map(|s| ps.iter().map(|&p| s[p].clone()).collect());
    let mut rng = RandomState::per_row_from_seeds(&seeds).unwrap();
    let out = generate_batch_groups(model, &part, gens, &opts, &mut rng).unwrap();
    assert_eq!(out.completions.len(), seeds.len());
    out.completions
        .into_iter()
        .map(|c| ((ps[c.prompt_index], c.generation_index), c))
        .collect()
}

fn options(sampler: SamplerConfig, eos: Vec<u32>) -> BatchOptions {
    BatchOptions {
        num_generations: G,
        max_tokens: 10,
        sampler,
        eos_token_ids: eos,
        ..BatchOptions::default()
    }
}

/// Settings that draw random numbers: plain sampling, top-p with min-p,
/// XTC (a uniform draw per row), and different settings per prompt (each
/// row sampled on its own).
fn samplers() -> Vec<(&'static str, SamplerConfig, Option<Vec<SamplerConfig>>)> {
    let plain = SamplerConfig::with_temperature(1.0);
    let filtered = SamplerConfig {
        top_p: 0.9,
        min_p: 0.02,
        ..plain.clone()
    };
    let xtc = SamplerConfig {
        xtc_probability: 0.5,
        xtc_threshold: 0.01,
        ..plain.clone()
    };
    let mixed = vec![plain.clone(), filtered.clone(), xtc.clone(), plain.clone()];
    vec![
        ("plain", plain.clone(), None),
        ("top-p and min-p", filtered, None),
        ("xtc", xtc, None),
        ("per-prompt settings", plain, Some(mixed)),
    ]
}

#[test]
fn a_row_samples_the_same_tokens_in_any_batch() {
    let model = tiny_model();
    let everything = [0, 1, 2, 3];
    let whole = vec![0..G; 4];
    for (name, sampler, per_prompt) in samplers() {
        // Without an end-of-sequence id every row runs to the limit; the
        // third token of row (0, 0) then ends it early in the runs below
        // (the tokens before it do not depend on the id).
        let mut opts = options(sampler.clone(), Vec::new());
        opts.prompt_samplers = per_prompt.clone();
        let long = sample(&model, &everything, &whole, &opts);
        let eos = long[&(0, 0)].tokens[2];
        opts.eos_token_ids = vec![eos];

        let full = sample(&model, &everything, &whole, &opts);
        let early = &full[&(0, 0)];
        assert_eq!(early.finish_reason, FinishReason::Stop, "{name}");
        assert!(early.len() <= 3, "{name}");
        // The groups' rows differ (each has its own key).
        assert!(
            (0..4).any(|p| full[&(p, 0)].tokens != full[&(p, 1)].tokens),
            "{name}: every row of a group sampled the same tokens"
        );
        // Each row alone.
        for (&(p, g), c) in &full {
            let alone = sample(&model, &[p], &[g..g + 1], &opts);
            assert_eq!(
                alone[&(p, g)].tokens,
                c.tokens,
                "{name}: row ({p}, {g}) alone"
            );
            assert_eq!(alone[&(p, g)].finish_reason, c.finish_reason, "{name}");
        }
        // Other compositions: prompts in another order, half a group, and
        // the row that stops early among rows that do not.
        for (ps, gens) in [
            (vec![3, 1], vec![1..2, 0..2]),
            (vec![0, 2], vec![0..1, 1..2]),
            (vec![2, 0, 3], vec![0..2, 0..2, 1..2]),
        ] {
            for (key, c) in sample(&model, &ps, &gens, &opts) {
                assert_eq!(
                    c.tokens, full[&key].tokens,
                    "{name}: row {key:?} with {ps:?}"
                );
            }
        }
        // `generate_batch` with per-row keys is the whole-group case.
        let seeds: Vec<u64> = (0..4)
            .flat_map(|p| (0..G).map(move |g| seed_of(p, g)))
            .collect();
        let mut rng = RandomState::per_row_from_seeds(&seeds).unwrap();
        let out = generate_batch(&model, &prompts(), &opts, &mut rng).unwrap();
        for c in out.completions {
            let key = (c.prompt_index, c.generation_index);
            assert_eq!(
                c.tokens, full[&key].tokens,
                "{name}: generate_batch row {key:?}"
            );
        }
    }
}

#[test]
fn keys_and_groups_that_do_not_match_the_rows_are_typed_errors() {
    let model = tiny_model();
    let opts = options(SamplerConfig::with_temperature(1.0), Vec::new());
    let p = prompts();
    let mut three = RandomState::per_row_from_seeds(&[1, 2, 3]).unwrap();
    let err = generate_batch(&model, &p, &opts, &mut three).unwrap_err();
    assert!(matches!(err, Error::InvalidGeneration { .. }), "{err}");
    let mut eight = RandomState::per_row_from_seeds(&[0; 8]).unwrap();
    for groups in [
        vec![0..2; 3],
        vec![0..2, 0..2, 0..2, 2..2],
        vec![0..2, 0..2, 0..2, 1..3],
    ] {
        let err = generate_batch_groups(&model, &p, &groups, &opts, &mut eight).unwrap_err();
        assert!(
            matches!(err, Error::InvalidGeneration { .. }),
            "{groups:?}: {err}"
        );
    }
    assert!(RandomState::per_row_from_seeds(&[]).is_err());
    let mut rng = RandomState::per_row_from_seeds(&[1, 2]).unwrap();
    assert!(matches!(rng.next_key(), Err(Error::InvalidSampling { .. })));
    // Keeping or reading a row the states do not have is an error, not a
    // read past the keys.
    assert!(matches!(
        rng.keep_rows(&[0, 2]),
        Err(Error::InvalidSampling { .. })
    ));
    assert!(matches!(rng.row(2), Err(Error::InvalidSampling { .. })));
    rng.keep_rows(&[1]).unwrap();
    assert_eq!(rng.rows().unwrap(), Some(1));
}

/// Continues each row after its first two turns with tokens of its own
/// prompt (`.0[prompt_index]`, the global index) and generation (never of
/// its position in the batch).
struct Continue(Vec<usize>);

impl TurnHandler for Continue {
    type Error = Error;

    fn turn_ended(&mut self, end: &TurnEnd<'_>) -> Result<Option<Vec<u32>>, Error> {
        if end.turn >= 2 {
            return Ok(None);
        }
        let tokens = vec![
            30 + self.0[end.prompt_index] as u32,
            40 + end.generation_index as u32,
            50 + end.turn as u32,
        ];
        Ok((tokens.len() <= end.room).then_some(tokens))
    }
}

#[test]
fn a_multi_turn_row_samples_the_same_tokens_in_any_batch() {
    let model = tiny_model();
    let all = prompts();
    let run = |ps: &[usize], gens: &[Range<usize>], opts: &BatchOptions| {
        let part: Vec<Vec<u32>> = ps.iter().map(|&p| all[p].clone()).collect();
        let seeds: Vec<u64> = ps
            .iter()
            .zip(gens)
            .flat_map(|(&p, r)| r.clone().map(move |i| seed_of(p, i)))
            .collect();
        let mut rng = RandomState::per_row_from_seeds(&seeds).unwrap();
        let out = generate_turns_groups(
            &model,
            &part,
            gens,
            opts,
            &mut Continue(ps.to_vec()),
            &mut rng,
        )
        .unwrap();
        out.completions
            .into_iter()
            .map(|c| {
                let key = (ps[c.completion.prompt_index], c.completion.generation_index);
                (key, (c.completion.tokens, c.sampled))
            })
            .collect::<BTreeMap<_, _>>()
    };
    let mut opts = options(SamplerConfig::with_temperature(1.0), Vec::new());
    opts.max_tokens = 24;
    let whole = vec![0..G; 4];
    // End turns at a token that row (1, 0) samples early, so that rows end
    // turns (and leave and rejoin the batch) at different steps.
    let long = run(&[0, 1, 2, 3], &whole, &opts);
    opts.eos_token_ids = vec![long[&(1, 0)].0[1]];
    let full = run(&[0, 1, 2, 3], &whole, &opts);
    let continued = full.values().filter(|(_, s)| s.contains(&false)).count();
    assert!(continued > 0, "no row was continued after a turn");
    for (&(p, g), c) in &full {
        assert_eq!(
            run(&[p], &[g..g + 1], &opts)[&(p, g)],
            *c,
            "row ({p}, {g}) alone"
        );
    }
    for (key, c) in run(&[3, 1], &[0..1, 0..2], &opts) {
        assert_eq!(c, full[&key], "row {key:?} with prompts 3 and 1");
    }
}

#[test]
fn a_row_samples_what_its_key_samples_for_it_alone() {
    // Per-row keys on a batch of logits: row `r` gets the tokens that its
    // key gives it sampled alone (a one-row state), draw after draw, for
    // each setting that draws random numbers.
    let logits = mlx_tensor::random::normal(
        &[5, 64],
        mlx_tensor::Dtype::F32,
        0.0,
        2.0,
        Some(&mlx_tensor::random::key(8).unwrap()),
    )
    .unwrap();
    let lp = mlx_lm::sample::logprobs(&logits).unwrap();
    let seeds = [4u64, 9, 9, 1, 30];
    for (name, sampler, _) in samplers() {
        let mut rows = RandomState::per_row_from_seeds(&seeds).unwrap();
        let mut batch = Vec::new();
        // Three draws in a row: each row's state advances on its own.
        for _ in 0..3 {
            batch.push(
                sampler
                    .sample(&lp, &mut rows)
                    .unwrap()
                    .to_vec::<u32>()
                    .unwrap(),
            );
        }
        for (r, &seed) in seeds.iter().enumerate() {
            let row = lp.slice_axis(0, r as i32, Some(r as i32 + 1), 1).unwrap();
            let mut alone = RandomState::per_row_from_seeds(&[seed]).unwrap();
            for (step, tokens) in batch.iter().enumerate() {
                let token = sampler
                    .sample(&row, &mut alone)
                    .unwrap()
                    .to_vec::<u32>()
                    .unwrap();
                assert_eq!(token, vec![tokens[r]], "{name}: row {r}, draw {step}");
            }
        }
    }
}

#[test]
fn per_row_draws_follow_the_softmax() {
    // 4000 rows of the same logits, each with its own key: the tokens'
    // frequencies are softmax(logits / T) (within 4 standard errors), for
    // plain sampling and for XTC's removal probability.
    let n = 4000usize;
    let logits = [0.0f32, 1.0, -0.5, 2.0];
    let rows: Vec<f32> = logits.iter().copied().cycle().take(n * 4).collect();
    let lp =
        mlx_lm::sample::logprobs(&mlx_tensor::Array::from_slice(&rows, &[n as i32, 4]).unwrap())
            .unwrap();
    let seeds: Vec<u64> = (0..n as u64).map(|s| s * 7 + 3).collect();
    let t = 0.8f64;
    let weights: Vec<f64> = logits.iter().map(|&l| (f64::from(l) / t).exp()).collect();
    let total: f64 = weights.iter().sum();
    let check = |tokens: &[u32], probs: &[f64], what: &str| {
        for (k, p) in probs.iter().enumerate() {
            let count = tokens.iter().filter(|&&x| x as usize == k).count() as f64;
            let se = (p * (1.0 - p) / n as f64).sqrt();
            let freq = count / n as f64;
            assert!(
                (freq - p).abs() <= 4.0 * se + 1e-9,
                "{what}: token {k}: {freq} vs {p}"
            );
        }
    };
    let mut rng = RandomState::per_row_from_seeds(&seeds).unwrap();
    let plain = SamplerConfig::with_temperature(t);
    let tokens: Vec<u32> = plain.sample(&lp, &mut rng).unwrap().to_vec().unwrap();
    let probs: Vec<f64> = weights.iter().map(|w| w / total).collect();
    check(&tokens, &probs, "plain");
    // XTC with threshold 0.1 removes every token more likely than the least
    // likely one over 0.1 (softmax(logits) = [0.09, 0.23, 0.05, 0.63]:
    // tokens 1 and 3 are over it, so 3 goes) with probability 0.5 per row.
    let xtc = SamplerConfig {
        xtc_probability: 0.5,
        xtc_threshold: 0.1,
        ..SamplerConfig::with_temperature(t)
    };
    let tokens: Vec<u32> = xtc.sample(&lp, &mut rng).unwrap().to_vec().unwrap();
    let kept = weights[0] + weights[1] + weights[2];
    let probs: Vec<f64> = (0..4)
        .map(|k| {
            let removed = if k == 3 { 0.0 } else { weights[k] / kept };
            0.5 * probs[k] + 0.5 * removed
        })
        .collect();
    check(&tokens, &probs, "xtc");
}
