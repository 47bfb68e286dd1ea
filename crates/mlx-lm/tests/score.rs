//! Per-token log-probabilities and entropies of completions.

mod lm_support;

use lm_support::*;
use mlx_lm::LanguageModel;
use mlx_lm::score::{ScoreBatch, ScoreOptions, score, score_tokens};
use mlx_nn::value_and_grad;
use mlx_tensor::{Array, Dtype};

/// `log_softmax(logits / temperature)` of row `pos`, from transformers' logits.
fn reference_log_softmax(logits: &[f32], vocab: usize, pos: usize, temperature: f32) -> Vec<f64> {
    let row: Vec<f64> = logits[pos * vocab..(pos + 1) * vocab]
        .iter()
        .map(|&x| f64::from(x / temperature))
        .collect();
    let max = row.iter().cloned().fold(f64::MIN, f64::max);
    let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    row.iter().map(|x| x - lse).collect()
}

#[test]
fn logprobs_and_entropies_match_transformers_logits() {
    for name in ["qwen3_tied", "qwen3_moe"] {
        let model = load(name, Dtype::F32);
        let tokens = fixture_tokens(name);
        let reference = reference_logits(name, "f32");
        let vocab = model.vocab_size() as usize;
        let prompt = 5;
        let batch = ScoreBatch::new(&[(&tokens[..prompt], &tokens[prompt..])], 0).unwrap();
        for temperature in [1.0f32, 0.7] {
            let options = ScoreOptions {
                temperature,
                entropies: true,
                chunk_tokens: 4,
            };
            let scores = score(&model, &batch, &options).unwrap();
            let logprobs = scores.logprobs.to_vec::<f32>().unwrap();
            let entropies = scores.entropies.unwrap().to_vec::<f32>().unwrap();
            assert_eq!(logprobs.len(), tokens.len() - prompt);
            for (i, &token) in tokens[prompt..].iter().enumerate() {
                let lsm = reference_log_softmax(&reference, vocab, prompt + i - 1, temperature);
                let want = lsm[token as usize];
                assert!(
                    (f64::from(logprobs[i]) - want).abs() < 2e-4,
                    "{name} t={temperature} pos {i}: {} vs {want}",
                    logprobs[i]
                );
                let entropy: f64 = -lsm.iter().map(|l| l.exp() * l).sum::<f64>();
                assert!(
                    (f64::from(entropies[i]) - entropy).abs() < 2e-4,
                    "{name} entropy {i}"
                );
            }
        }
    }
}

#[test]
fn padded_batches_score_like_single_pairs() {
    let model = load("qwen3_moe", Dtype::F32);
    let t = fixture_tokens("qwen3_moe");
    let pairs: [(&[u32], &[u32]); 3] = [
        (&t[..4], &t[4..9]),
        (&t[2..3], &t[9..11]),
        (&t[..7], &t[7..8]),
    ];
    let batch = ScoreBatch::new(&pairs, 0).unwrap();
    let options = ScoreOptions {
        entropies: true,
        ..ScoreOptions::default()
    };
    let scores = score(&model, &batch, &options).unwrap();
    let width = batch.completion_width as usize;
    assert_eq!(width, 5);
    let logprobs = scores.logprobs.to_vec::<f32>().unwrap();
    let mask = scores.mask.to_vec::<f32>().unwrap();
    for (i, pair) in pairs.iter().enumerate() {
        let alone = score(&model, &ScoreBatch::new(&[*pair], 0).unwrap(), &options).unwrap();
        let alone = alone.logprobs.to_vec::<f32>().unwrap();
        let n = pair.1.len();
        assert_eq!(&mask[i * width..i * width + n], vec![1.0; n].as_slice());
        assert!(
            mask[i * width + n..(i + 1) * width]
                .iter()
                .all(|&m| m == 0.0)
        );
        let diff = max_diff(&logprobs[i * width..i * width + n], &alone);
        assert!(diff <= 1e-4, "pair {i}: {diff}");
    }
}

#[test]
fn chunking_does_not_change_scores() {
    let model = load("qwen3_untied", Dtype::F32);
    let t = fixture_tokens("qwen3_untied");
    let tokens = Array::from_slice(&t, &[2, 8]).unwrap();
    let run = |chunk_tokens| {
        let options = ScoreOptions {
            chunk_tokens,
            entropies: true,
            ..ScoreOptions::default()
        };
        let (lp, ent) = score_tokens(&model, &tokens, &[0, 0], 6, &options).unwrap();
        (
            lp.to_vec::<f32>().unwrap(),
            ent.unwrap().to_vec::<f32>().unwrap(),
        )
    };
    let (a, ea) = run(1);
    let (b, eb) = run(1 << 20);
    assert!(max_diff(&a, &b) <= 1e-6 && max_diff(&ea, &eb) <= 1e-6);
}

#[test]
fn scores_are_differentiable() {
    let model = load("qwen3_tied", Dtype::F32);
    let t = fixture_tokens("qwen3_tied");
    let batch = ScoreBatch::new(&[(&t[..6], &t[6..12])], 0).unwrap();
    let out = value_and_grad(&model, |m| {
        let s = score(m, &batch, &ScoreOptions::default())?;
        Ok(vec![
            s.logprobs
                .multiply(&s.mask)?
                .sum(mlx_tensor::Axes::All, false)?,
        ])
    })
    .unwrap();
    let loss: f32 = out.loss.item().unwrap();
    assert!(loss.is_finite() && loss < 0.0);
    let g = &out.grads["model.embed_tokens.weight"];
    let norm: f32 = g
        .square()
        .unwrap()
        .sum(mlx_tensor::Axes::All, false)
        .unwrap()
        .item()
        .unwrap();
    assert!(norm.is_finite() && norm > 0.0);
    let q = &out.grads["model.layers.1.self_attn.q_norm.weight"];
    assert!(
        q.abs()
            .unwrap()
            .max(mlx_tensor::Axes::All, false)
            .unwrap()
            .item::<f32>()
            .unwrap()
            > 0.0
    );
}

#[test]
fn bad_inputs_are_errors() {
    let model = load("qwen3_tied", Dtype::F32);
    assert!(ScoreBatch::new(&[], 0).is_err());
    assert!(ScoreBatch::new(&[(&[], &[1, 2])], 0).is_err());
    let tokens = Array::from_slice(&[1u32, 2, 3], &[1, 3]).unwrap();
    assert!(score_tokens(&model, &tokens, &[0], 3, &ScoreOptions::default()).is_err());
    let hot = ScoreOptions {
        temperature: 0.0,
        ..ScoreOptions::default()
    };
    assert!(score_tokens(&model, &tokens, &[0], 1, &hot).is_err());
    let lp = score_tokens(&model, &tokens, &[0], 1, &ScoreOptions::default())
        .unwrap()
        .0;
    assert_eq!(lp.shape().dims(), &[1, 1]);
    assert_eq!(lp.dtype(), Dtype::F32);
}

#[test]
fn moe_scores_are_differentiable_through_the_experts() {
    let model = load("qwen3_moe", Dtype::F32);
    let t = fixture_tokens("qwen3_moe");
    // 2 rows x 16 positions x top-2: the sorted expert path.
    let pairs: [(&[u32], &[u32]); 2] = [(&t[..8], &t[8..]), (&t[4..12], &t[..8])];
    let batch = ScoreBatch::new(&pairs, 0).unwrap();
    let out = value_and_grad(&model, |m| {
        let s = score(m, &batch, &ScoreOptions::default())?;
        let (_, aux) = m.forward_hidden_with_aux(&batch.tokens, Some(&batch.left_padding), None)?;
        let aux = aux.expect("MoE aux loss");
        let total = s
            .logprobs
            .multiply(&s.mask)?
            .sum(mlx_tensor::Axes::All, false)?;
        Ok(vec![
            total.add(&aux.mul_scalar(f64::from(m.aux_loss_coef()))?)?,
        ])
    })
    .unwrap();
    assert!(out.loss.item::<f32>().unwrap().is_finite());
    for name in [
        "model.layers.1.mlp.switch_mlp.gate_proj.weight",
        "model.layers.1.mlp.switch_mlp.down_proj.weight",
        "model.layers.1.mlp.gate.weight",
    ] {
        let g = &out.grads[name];
        let norm: f32 = g
            .square()
            .unwrap()
            .sum(mlx_tensor::Axes::All, false)
            .unwrap()
            .item()
            .unwrap();
        assert!(
            norm.is_finite() && norm > 0.0,
            "{name}: gradient norm {norm}"
        );
    }
}
