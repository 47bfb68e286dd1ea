//! The exact small cases of mlx-lm's own sampler tests
//! (`tests/test_sample_utils.py`), on the same inputs.

mod sample_support;

use mlx_lm::sample::{LogitsProcessorConfig, apply_min_p, apply_top_k, apply_top_p, apply_xtc};
use mlx_tensor::{Array, Dtype};
use sample_support::{close, log_probs, round, softmax, to_rows};

fn softmax_rows(a: &Array) -> Vec<Vec<f32>> {
    to_rows(&a.softmax(-1, true).unwrap())
}

#[test]
fn top_p() {
    let logits = log_probs(&[&[0.9, 0.0, 0.0, 0.1]]);
    assert_eq!(
        softmax(&apply_top_p(&logits, 0.3).unwrap()),
        vec![1.0, 0.0, 0.0, 0.0]
    );
    assert!(close(
        &softmax(&apply_top_p(&logits, 0.95).unwrap()),
        &[0.9, 0.0, 0.0, 0.1],
        1e-5
    ));

    let logits = log_probs(&[&[0.0, 0.5, 0.4, 0.1]]);
    assert_eq!(
        softmax(&apply_top_p(&logits, 0.4).unwrap()),
        vec![0.0, 1.0, 0.0, 0.0]
    );
    assert_eq!(
        round(&softmax(&apply_top_p(&logits, 0.6).unwrap()), 4),
        vec![0.0, 0.5556, 0.4444, 0.0]
    );
    let p = softmax(&apply_top_p(&logits, 0.95).unwrap());
    assert_eq!(round(&p, 4), vec![0.0, 0.5, 0.4, 0.1]);
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);

    let logits = log_probs(&[&[0.9, 0.0, 0.0, 0.1], &[0.0, 0.8, 0.1, 0.1]]);
    let p = softmax_rows(&apply_top_p(&logits, 0.5).unwrap());
    assert_eq!(p, vec![vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 0.0, 0.0]]);
}

#[test]
fn min_p() {
    let logits = log_probs(&[&[0.9, 0.0, 0.0, 0.1]]);
    assert_eq!(
        softmax(&apply_min_p(&logits, 0.8, 1).unwrap()),
        vec![1.0, 0.0, 0.0, 0.0]
    );
    assert!(close(
        &softmax(&apply_min_p(&logits, 0.05, 1).unwrap()),
        &[0.9, 0.0, 0.0, 0.1],
        1e-5
    ));

    let logits = log_probs(&[&[0.9, 0.0, 0.0, 0.1], &[0.0, 0.8, 0.0, 0.1]]);
    let p = softmax_rows(&apply_min_p(&logits, 0.7, 1).unwrap());
    assert_eq!(p, vec![vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 0.0, 0.0]]);
}

#[test]
fn top_k() {
    let logits = log_probs(&[&[0.9, 0.0, 0.0, 0.1]]);
    assert_eq!(
        softmax(&apply_top_k(&logits, 1).unwrap()),
        vec![1.0, 0.0, 0.0, 0.0]
    );

    let logits = log_probs(&[&[0.6, 0.0, 0.1, 0.3]]);
    assert_eq!(
        round(&softmax(&apply_top_k(&logits, 2).unwrap()), 4),
        vec![0.6667, 0.0, 0.0, 0.3333]
    );

    let logits = log_probs(&[&[0.9, 0.0, 0.0, 0.1], &[0.0, 0.8, 0.0, 0.1]]);
    let p = softmax_rows(&apply_top_k(&logits, 1).unwrap());
    assert_eq!(p, vec![vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 0.0, 0.0]]);
}

#[test]
fn xtc() {
    let logits = log_probs(&[&[0.4, 0.3, 0.15, 0.15]]);
    let p = softmax(&apply_xtc(&logits, 1.0, 0.2, &[], None).unwrap());
    assert!(close(&p, &[0.0, 0.5, 0.25, 0.25], 1e-5));
    let p = softmax(&apply_xtc(&logits, 1.0, 0.1, &[], None).unwrap());
    assert!(close(&p, &[0.0, 0.0, 0.5, 0.5], 1e-5));
    let p = softmax(&apply_xtc(&logits, 1.0, 0.1, &[0], None).unwrap());
    assert!(close(&p, &[4.0 / 7.0, 0.0, 1.5 / 7.0, 1.5 / 7.0], 1e-5));
    let p = softmax(&apply_xtc(&logits, 0.0, 0.1, &[0], None).unwrap());
    assert!(close(&p, &[0.4, 0.3, 0.15, 0.15], 1e-5));
}

fn apply(cfg: &LogitsProcessorConfig, context: &[u32], logits: &Array) -> Vec<f32> {
    let ctx = Array::from_slice(context, &[context.len() as i32]).unwrap();
    cfg.apply(&ctx, logits)
        .unwrap()
        .reshape(&[-1])
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
}

#[test]
fn presence_penalty() {
    let cfg = LogitsProcessorConfig {
        presence_penalty: Some(0.5),
        presence_context_size: 5,
        ..Default::default()
    };
    let out = apply(
        &cfg,
        &[0, 0, 0, 1, 1],
        &Array::zeros(&[1, 4], Dtype::F32).unwrap(),
    );
    assert!(close(&out, &[-0.5, -0.5, 0.0, 0.0], 1e-7));
}

#[test]
fn frequency_penalty() {
    let cfg = LogitsProcessorConfig {
        frequency_penalty: Some(0.5),
        frequency_context_size: 5,
        ..Default::default()
    };
    let out = apply(
        &cfg,
        &[0, 0, 0, 1, 1],
        &Array::zeros(&[1, 4], Dtype::F32).unwrap(),
    );
    assert!(close(&out, &[-1.5, -1.0, 0.0, 0.0], 1e-7));
}

#[test]
fn all_processors_together() {
    let cfg = LogitsProcessorConfig {
        repetition_penalty: Some(1.5),
        repetition_context_size: 5,
        presence_penalty: Some(0.5),
        presence_context_size: 5,
        frequency_penalty: Some(0.25),
        frequency_context_size: 5,
        ..Default::default()
    };
    let logits = Array::from_slice(&[1.0f32, 0.5, 0.0, -0.5], &[1, 4]).unwrap();
    let out = apply(&cfg, &[0, 0, 0, 1, 1], &logits);
    assert!(close(&out, &[-0.5833, -0.6667, 0.0, -0.5], 1e-4), "{out:?}");
}
