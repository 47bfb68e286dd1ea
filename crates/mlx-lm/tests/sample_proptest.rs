//! Invariants of the sampling chain on random inputs: filters never remove
//! the most likely token, top-k keeps exactly k distinct values, draws
//! follow the filtered distribution.

mod sample_support;

use mlx_lm::sample::{
    LogitsProcessorConfig, RandomState, SamplerConfig, apply_min_p, apply_top_k, apply_top_p,
    apply_xtc, logprobs,
};
use mlx_tensor::{Array, Dtype};
use proptest::prelude::*;
use sample_support::to_rows;

fn logits_strategy() -> impl Strategy<Value = (usize, Vec<f32>)> {
    (1usize..4, 2usize..40).prop_flat_map(|(rows, vocab)| {
        (
            Just(vocab),
            proptest::collection::vec(-8.0f32..8.0, rows * vocab),
        )
    })
}

fn array(vocab: usize, values: &[f32]) -> Array {
    let rows = values.len() / vocab;
    Array::from_slice(values, &[rows as i32, vocab as i32]).unwrap()
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

fn check_keeps_top(input: &Array, output: &Array) {
    for (inp, out) in to_rows(input).iter().zip(to_rows(output)) {
        let top = argmax(inp);
        assert!(
            out[top].is_finite(),
            "top token {top} removed: {inp:?} -> {out:?}"
        );
        let max = inp[top];
        for (i, (a, b)) in inp.iter().zip(&out).enumerate() {
            if *a == max {
                assert!(
                    b.is_finite(),
                    "a token tied with the top one ({i}) was removed"
                );
            }
            assert!(*b == *a || *b == f32::NEG_INFINITY, "a kept value changed");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn top_p_keeps_the_top_token((vocab, values) in logits_strategy(), p in 0.001f64..0.999) {
        let lp = logprobs(&array(vocab, &values)).unwrap();
        check_keeps_top(&lp, &apply_top_p(&lp, p).unwrap());
    }

    #[test]
    fn top_p_keeps_at_least_the_mass((vocab, values) in logits_strategy(), p in 0.001f64..0.999) {
        let lp = logprobs(&array(vocab, &values)).unwrap();
        for (inp, out) in to_rows(&lp).iter().zip(to_rows(&apply_top_p(&lp, p).unwrap())) {
            let total: f64 = inp.iter().map(|x| f64::from(x.exp())).sum();
            let kept: f64 = out.iter().filter(|x| x.is_finite()).map(|x| f64::from(x.exp())).sum();
            prop_assert!(kept >= p * total - 1e-5, "kept {kept} < {p} of {total}");
        }
    }

    #[test]
    fn min_p_keeps_the_top_tokens(
        (vocab, values) in logits_strategy(),
        p in 0.0f64..=1.0,
        keep in 1usize..4,
    ) {
        let lp = logprobs(&array(vocab, &values)).unwrap();
        let keep = keep.min(vocab);
        let out = apply_min_p(&lp, p, keep).unwrap();
        check_keeps_top(&lp, &out);
        for row in to_rows(&out) {
            prop_assert!(row.iter().filter(|x| x.is_finite()).count() >= keep);
        }
    }

    #[test]
    fn top_k_keeps_exactly_k_distinct(vocab in 2usize..40, rows in 1usize..4, k_frac in 0.0f64..1.0, seed in 0u64..1000) {
        // Distinct values: a shuffled ramp per row.
        let mut values = Vec::with_capacity(rows * vocab);
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        for _ in 0..rows {
            let mut row: Vec<f32> = (0..vocab).map(|i| i as f32 * 0.37 - 3.0).collect();
            for i in (1..vocab).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = (state >> 33) as usize % (i + 1);
                row.swap(i, j);
            }
            values.extend(row);
        }
        let k = 1 + ((vocab - 2) as f64 * k_frac) as usize;
        let lp = logprobs(&array(vocab, &values)).unwrap();
        let out = apply_top_k(&lp, k).unwrap();
        check_keeps_top(&lp, &out);
        for (inp, row) in to_rows(&lp).iter().zip(to_rows(&out)) {
            prop_assert_eq!(row.iter().filter(|x| x.is_finite()).count(), k);
            let mut sorted = inp.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            for (a, b) in inp.iter().zip(&row) {
                prop_assert_eq!(b.is_finite(), *a >= sorted[k - 1]);
            }
        }
    }

    #[test]
    fn xtc_always_leaves_a_token((vocab, values) in logits_strategy(), thr in 0.0f64..=0.5) {
        let lp = logprobs(&array(vocab, &values)).unwrap();
        let out = apply_xtc(&lp, 1.0, thr, &[], None).unwrap();
        for (inp, row) in to_rows(&lp).iter().zip(to_rows(&out)) {
            prop_assert!(row.iter().any(|x| x.is_finite()));
            // Tokens at or below the threshold are never removed.
            for (a, b) in inp.iter().zip(&row) {
                if f64::from(a.exp()) < thr * 0.999 {
                    prop_assert!(b.is_finite());
                }
            }
        }
    }

    #[test]
    fn greedy_picks_the_argmax((vocab, values) in logits_strategy()) {
        let logits = array(vocab, &values);
        let mut rng = RandomState::from_seed(0).unwrap();
        let got = SamplerConfig::greedy().sample(&logprobs(&logits).unwrap(), &mut rng).unwrap();
        let want: Vec<u32> = values.chunks(vocab).map(|r| argmax(r) as u32).collect();
        prop_assert_eq!(got.to_vec::<u32>().unwrap(), want);
    }

    #[test]
    fn sampled_tokens_survive_the_filters(
        (vocab, values) in logits_strategy(),
        top_p in 0.05f64..1.0,
        min_p in 0.0f64..0.5,
        seed in 0u64..10_000,
    ) {
        let cfg = SamplerConfig { temperature: 0.8, top_p, min_p, top_k: (vocab / 2).max(1), ..Default::default() };
        let lp = logprobs(&array(vocab, &values)).unwrap();
        let mut rng = RandomState::from_seed(seed).unwrap();
        let tokens = cfg.sample(&lp, &mut rng).unwrap().to_vec::<u32>().unwrap();
        let mut filtered = apply_top_p(&lp, top_p).unwrap();
        if min_p > 0.0 {
            filtered = apply_min_p(&filtered, min_p, 1).unwrap();
        }
        if cfg.top_k < vocab {
            filtered = apply_top_k(&filtered, cfg.top_k).unwrap();
        }
        for (t, row) in tokens.iter().zip(to_rows(&filtered)) {
            prop_assert!(row[*t as usize].is_finite(), "sampled a removed token {t}");
        }
    }

    #[test]
    fn processors_never_touch_unseen_tokens(
        (vocab, values) in logits_strategy(),
        context in proptest::collection::vec(0u32..40, 0..30),
        rep in 0.5f64..2.0,
        pres in -1.0f64..1.0,
        freq in -1.0f64..1.0,
    ) {
        let context: Vec<u32> = context.into_iter().map(|t| t % vocab as u32).collect();
        let cfg = LogitsProcessorConfig {
            repetition_penalty: Some(rep),
            presence_penalty: Some(pres),
            frequency_penalty: Some(freq),
            ..Default::default()
        };
        let logits = array(vocab, &values);
        let ctx = Array::from_slice(&context, &[context.len() as i32]).unwrap();
        let out = cfg.apply(&ctx, &logits).unwrap();
        let recent: std::collections::HashSet<u32> = context.iter().rev().take(20).copied().collect();
        for (inp, row) in to_rows(&logits).iter().zip(to_rows(&out)) {
            for (i, (a, b)) in inp.iter().zip(&row).enumerate() {
                if !recent.contains(&(i as u32)) {
                    prop_assert_eq!(a, b);
                }
            }
        }
    }
}

/// Frequencies of many draws against the filtered, tempered distribution.
fn check_frequencies(cfg: &SamplerConfig, logits: &[f32], draws: usize) {
    let vocab = logits.len();
    let row = Array::from_slice(logits, &[1, vocab as i32]).unwrap();
    let lp = logprobs(&row.broadcast_to(&[draws as i32, vocab as i32]).unwrap()).unwrap();
    let mut rng = RandomState::from_seed(1234).unwrap();
    let tokens = cfg.sample(&lp, &mut rng).unwrap().to_vec::<u32>().unwrap();
    let mut counts = vec![0usize; vocab];
    for t in tokens {
        counts[t as usize] += 1;
    }
    // Expected: the filters' output (same for every row), tempered.
    let mut filtered = logprobs(&row).unwrap();
    if 0.0 < cfg.top_p && cfg.top_p < 1.0 {
        filtered = apply_top_p(&filtered, cfg.top_p).unwrap();
    }
    if cfg.min_p > 0.0 {
        filtered = apply_min_p(&filtered, cfg.min_p, cfg.min_tokens_to_keep).unwrap();
    }
    if cfg.top_k > 0 {
        filtered = apply_top_k(&filtered, cfg.top_k).unwrap();
    }
    let expected = filtered
        .mul_scalar(1.0 / cfg.temperature)
        .unwrap()
        .softmax(-1, true)
        .unwrap();
    let expected = expected
        .as_type(Dtype::F32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    for (i, (c, p)) in counts.iter().zip(&expected).enumerate() {
        let freq = *c as f64 / draws as f64;
        let p = f64::from(*p);
        let sd = (p * (1.0 - p) / draws as f64).sqrt();
        assert!(
            (freq - p).abs() <= 5.0 * sd + 1e-9,
            "token {i}: frequency {freq} vs probability {p} ({cfg:?})"
        );
        if p == 0.0 {
            assert_eq!(*c, 0, "token {i} was filtered out but drawn");
        }
    }
}

#[test]
fn draws_follow_the_filtered_distribution() {
    let logits = [1.0f32, 0.5, 2.0, -1.0, 0.0, 1.5, -0.5, 0.3];
    let n = 40_000;
    check_frequencies(&SamplerConfig::with_temperature(1.0), &logits, n);
    check_frequencies(&SamplerConfig::with_temperature(0.5), &logits, n);
    check_frequencies(
        &SamplerConfig {
            temperature: 1.0,
            top_k: 3,
            ..Default::default()
        },
        &logits,
        n,
    );
    check_frequencies(
        &SamplerConfig {
            temperature: 1.2,
            top_p: 0.7,
            ..Default::default()
        },
        &logits,
        n,
    );
    check_frequencies(
        &SamplerConfig {
            temperature: 1.0,
            min_p: 0.3,
            ..Default::default()
        },
        &logits,
        n,
    );
}

#[test]
fn xtc_draws_follow_the_mixture() {
    // p = [0.5, 0.3, 0.2]: XTC (threshold 0.25) removes token 0 half of the
    // time; every row of one call shares the one uniform draw, so count over
    // many calls.
    let logits: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
    let cfg = SamplerConfig {
        temperature: 1.0,
        xtc_probability: 0.5,
        xtc_threshold: 0.25,
        ..Default::default()
    };
    let lp = logprobs(&Array::from_slice(&logits, &[1, 3]).unwrap()).unwrap();
    let mut rng = RandomState::from_seed(7).unwrap();
    let mut counts = [0usize; 3];
    let n = 3000;
    for _ in 0..n {
        let t = cfg.sample(&lp, &mut rng).unwrap().to_vec::<u32>().unwrap()[0];
        counts[t as usize] += 1;
    }
    // Mixture: 0.5 * [0.5, 0.3, 0.2] + 0.5 * [0, 0.6, 0.4].
    let expected = [0.25, 0.45, 0.3];
    for (c, p) in counts.iter().zip(expected) {
        let freq = *c as f64 / n as f64;
        assert!((freq - p).abs() < 0.04, "{counts:?}");
    }
}
