//! Random numbers: explicit keys make draws reproducible, split keys give
//! different streams, and each distribution has the right support and
//! (loosely checked) moments or frequencies.

mod common;

use mlx_tensor::random::{self, key};
use mlx_tensor::{Array, Axes, Dtype};
use proptest::prelude::*;

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
}

fn std(v: &[f32]) -> f64 {
    let m = mean(v);
    (v.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

proptest! {
    #![proptest_config(common::cases(8))]

    #[test]
    fn same_key_same_draws(seed in any::<u64>()) {
        let k = key(seed).unwrap();
        let k2 = key(seed).unwrap();
        prop_assert_eq!(k.to_vec::<u32>().unwrap(), k2.to_vec::<u32>().unwrap());
        // Every distribution's draws, read back as f64 (exact for all of them).
        let draws = |k: &Array| -> Vec<Vec<f64>> {
            let logits = Array::from_slice(&[0.0f32, 1.0, 2.0], &[3]).unwrap();
            let p = Array::scalar(0.3f32).unwrap();
            [
                random::normal(&[50], Dtype::F32, 0.0, 1.0, Some(k)),
                random::uniform(-1.0, 1.0, &[50], Dtype::F32, Some(k)),
                random::randint(0, 100, &[50], Dtype::I32, Some(k)),
                random::categorical(&logits, 0, Some(50), Some(k)),
                random::bernoulli(&p, &[50], Some(k)),
                random::permutation(20, Some(k)),
                random::gumbel(&[50], Dtype::F32, Some(k)),
            ]
            .into_iter()
            .map(|a| a.unwrap().to_vec::<f64>().unwrap())
            .collect()
        };
        let a = draws(&k);
        prop_assert_eq!(&a, &draws(&k2));
        // A different key gives different draws.
        let other = draws(&key(seed.wrapping_add(1)).unwrap());
        for (i, (x, y)) in a.iter().zip(&other).enumerate() {
            if i != 4 {
                // (50 Bernoulli draws could coincide; the others cannot.)
                prop_assert_ne!(x, y, "distribution {}", i);
            }
        }
    }

    #[test]
    fn split_keys_differ(seed in any::<u64>(), n in 2i32..6) {
        let k = key(seed).unwrap();
        let keys = random::split(&k, n).unwrap();
        prop_assert_eq!(keys.shape().0, vec![n, 2]);
        prop_assert_eq!(keys.dtype(), Dtype::U32);
        let rows: Vec<Vec<u32>> = keys.to_vec::<u32>().unwrap().chunks(2).map(<[u32]>::to_vec).collect();
        let parent = k.to_vec::<u32>().unwrap();
        for i in 0..rows.len() {
            prop_assert_ne!(&rows[i], &parent);
            for j in 0..i {
                prop_assert_ne!(&rows[i], &rows[j]);
            }
        }
        // Draws from the subkeys differ from each other.
        let (a, b) = random::split2(&k).unwrap();
        let da = random::normal(&[16], Dtype::F32, 0.0, 1.0, Some(&a)).unwrap().to_vec::<f32>().unwrap();
        let db = random::normal(&[16], Dtype::F32, 0.0, 1.0, Some(&b)).unwrap().to_vec::<f32>().unwrap();
        prop_assert_ne!(da, db);
        // Splitting is deterministic.
        prop_assert_eq!(random::split(&k, n).unwrap().to_vec::<u32>().unwrap(), keys.to_vec::<u32>().unwrap());
    }

    #[test]
    fn supports_and_moments(seed in any::<u64>(), lo in -5.0f64..0.0, width in 0.5f64..5.0) {
        let keys = random::split(&key(seed).unwrap(), 8).unwrap();
        let k = |i: u32| keys.take(&Array::scalar(i).unwrap(), Some(0)).unwrap();
        let n = 20_000;
        // Uniform in [lo, hi) with mean (lo + hi) / 2.
        let hi = lo + width;
        let u = random::uniform(lo, hi, &[n], Dtype::F32, Some(&k(0))).unwrap().to_vec::<f32>().unwrap();
        prop_assert!(u.iter().all(|&v| f64::from(v) >= lo && f64::from(v) < hi + 1e-6));
        prop_assert!((mean(&u) - (lo + hi) / 2.0).abs() < 0.05 * width);
        // randint in [low, high), every value drawn.
        let r = random::randint(-3, 4, &[n], Dtype::I32, Some(&k(1))).unwrap().to_vec::<i32>().unwrap();
        prop_assert!(r.iter().all(|v| (-3..4).contains(v)));
        for v in -3..4 {
            prop_assert!(r.contains(&v));
        }
        // Normal with the requested location and scale.
        let z = random::normal(&[n], Dtype::F32, 1.5, 2.0, Some(&k(2))).unwrap().to_vec::<f32>().unwrap();
        prop_assert!((mean(&z) - 1.5).abs() < 0.1, "normal mean {}", mean(&z));
        prop_assert!((std(&z) - 2.0).abs() < 0.1, "normal std {}", std(&z));
        // Bernoulli frequency close to p.
        let p = 0.05 + 0.9 * (width - 0.5) / 4.5;
        let pa = Array::scalar(p as f32).unwrap();
        let b = random::bernoulli(&pa, &[n], Some(&k(3))).unwrap();
        prop_assert_eq!(b.dtype(), Dtype::Bool);
        let freq = b.as_type(Dtype::F32).unwrap().mean(Axes::All, false).unwrap().item::<f32>().unwrap();
        prop_assert!((f64::from(freq) - p).abs() < 0.02, "bernoulli {} vs {}", freq, p);
        // Truncated normal stays in its bounds.
        let t = random::truncated_normal(lo, hi, &[n], Dtype::F32, Some(&k(4))).unwrap().to_vec::<f32>().unwrap();
        prop_assert!(t.iter().all(|&v| f64::from(v) >= lo - 1e-5 && f64::from(v) <= hi + 1e-5));
        // Gumbel samples are finite with mean near Euler's constant.
        let g = random::gumbel(&[n], Dtype::F32, Some(&k(5))).unwrap().to_vec::<f32>().unwrap();
        prop_assert!(g.iter().all(|v| v.is_finite()));
        prop_assert!((mean(&g) - 0.5772).abs() < 0.05, "gumbel mean {}", mean(&g));
        // A permutation holds every index once.
        let mut perm = random::permutation(100, Some(&k(6))).unwrap().to_vec::<u32>().unwrap();
        perm.sort();
        prop_assert_eq!(perm, (0..100).collect::<Vec<u32>>());
    }
}

#[test]
fn categorical_frequencies_follow_softmax() {
    let logits = [0.0f32, 1.0, 3.0, 0.5, f32::NEG_INFINITY];
    let probs = common::softmax(&logits.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
    let la = Array::from_slice(&logits, &[5]).unwrap();
    let n = 40_000;
    let draws = random::categorical(&la, 0, Some(n), Some(&key(3).unwrap())).unwrap();
    assert_eq!(draws.dtype(), Dtype::U32);
    assert_eq!(draws.shape().dims(), [n]);
    let mut counts = [0usize; 5];
    for d in draws.to_vec::<u32>().unwrap() {
        counts[d as usize] += 1;
    }
    assert_eq!(counts[4], 0, "a -inf logit is never drawn");
    for i in 0..5 {
        let freq = counts[i] as f64 / f64::from(n);
        assert!(
            (freq - probs[i]).abs() < 0.01,
            "category {i}: {freq} vs {}",
            probs[i]
        );
    }
    // A batch of distributions along the last axis: one draw per row.
    let batch = Array::from_slice(&[0.0f32, 50.0, 0.0, 50.0, 0.0, 0.0], &[2, 3]).unwrap();
    let one = random::categorical(&batch, -1, None, Some(&key(4).unwrap())).unwrap();
    assert_eq!(one.shape().dims(), [2]);
    assert_eq!(one.to_vec::<u32>().unwrap(), [1, 0]);
    let many = random::categorical(&batch, -1, Some(7), Some(&key(4).unwrap())).unwrap();
    assert_eq!(many.shape().dims(), [2, 7]);
    assert_eq!(many.to_vec::<u32>().unwrap(), [[1; 7], [0; 7]].concat());
}

#[test]
fn seed_makes_the_global_sequence_reproducible_on_this_thread() {
    random::seed(7);
    let a = random::normal(&[8], Dtype::F32, 0.0, 1.0, None)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let b = random::normal(&[8], Dtype::F32, 0.0, 1.0, None)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_ne!(a, b, "the global key advances");
    random::seed(7);
    let c = random::normal(&[8], Dtype::F32, 0.0, 1.0, None)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(a, c);
    // Low-precision draws come out in the requested dtype.
    let h = random::uniform(0.0, 1.0, &[4], Dtype::BF16, Some(&key(1).unwrap())).unwrap();
    assert_eq!(h.dtype(), Dtype::BF16);
    assert_eq!(key(42).unwrap().to_vec::<u32>().unwrap(), [0, 42]);
}
