//! The memory-saving paths of a training step (checkpointed score chunks,
//! entropies outside the differentiated graph, per-layer gradient
//! checkpointing) give the plain path's losses and gradients.

use mlx_grpo::config::GrpoConfig;
use mlx_grpo::loss::{EntropyControl, GrpoLoss};
use mlx_grpo::rewards::FinishReason;
use mlx_grpo::trainer::{MicroBatch, RolloutSample, build_optimizer, optimize_step};
use mlx_lm::LanguageModel;
use mlx_lm::loader::random_model;
use mlx_lm::models::{Model, ModelConfig, Qwen3Config};
use mlx_lm::score::{ScoreBatch, ScoreGradients, ScoreOptions, score_tokens_with};
use mlx_nn::{ModuleExt, ParamMap, value_and_grad};
use mlx_tensor::{Array, Axes};

fn model(tied: bool) -> Model {
    model_of(tied, mlx_tensor::Dtype::F32)
}

fn model_of(tied: bool, dtype: mlx_tensor::Dtype) -> Model {
    let config: Qwen3Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 40, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": tied
    }))
    .unwrap();
    random_model(&ModelConfig::Qwen3(config), 11, dtype).unwrap()
}

fn batch() -> ScoreBatch {
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = vec![
        (vec![1, 2, 3], vec![4, 5, 6, 7, 8]),
        (vec![9], vec![10, 11]),
        (vec![12, 13], vec![14, 15, 16, 17, 18, 19, 20]),
    ];
    let refs: Vec<(&[u32], &[u32])> = pairs
        .iter()
        .map(|(p, c)| (p.as_slice(), c.as_slice()))
        .collect();
    ScoreBatch::new(&refs, 0).unwrap()
}

fn max_diff(a: &Array, b: &Array) -> f32 {
    a.subtract(b)
        .unwrap()
        .abs()
        .unwrap()
        .max(Axes::All, false)
        .unwrap()
        .item::<f32>()
        .unwrap()
}

/// Loss, logprobs, entropies and gradients of `Σ w·logp (+ 0.3 Σ entropy)`.
fn run(
    model: &Model,
    grad: ScoreGradients,
    entropy_in_loss: bool,
) -> (f32, Array, Array, ParamMap) {
    let b = batch();
    let options = ScoreOptions {
        temperature: 0.7,
        entropies: true,
        chunk_tokens: 6,
    };
    let weights = Array::from_slice(
        &(0..21).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
        &[3, 7],
    )
    .unwrap();
    let out = value_and_grad(model, |m| {
        let (lp, ent) = score_tokens_with(
            m,
            &b.tokens,
            &b.left_padding,
            b.completion_width,
            &options,
            &grad,
        )?;
        let ent = ent.unwrap();
        let mut loss = lp
            .multiply(&weights)?
            .multiply(&b.mask)?
            .sum(Axes::All, false)?;
        if entropy_in_loss {
            let bonus = ent
                .multiply(&b.mask)?
                .sum(Axes::All, false)?
                .mul_scalar(0.3)?;
            loss = loss.add(&bonus)?;
        }
        Ok(vec![loss, lp, ent])
    })
    .unwrap();
    let loss = out.loss.item::<f32>().unwrap();
    (loss, out.aux[0].clone(), out.aux[1].clone(), out.grads)
}

fn assert_same(a: &(f32, Array, Array, ParamMap), b: &(f32, Array, Array, ParamMap)) {
    assert!(
        (a.0 - b.0).abs() <= 1e-5 * a.0.abs().max(1.0),
        "loss {} vs {}",
        a.0,
        b.0
    );
    assert!(max_diff(&a.1, &b.1) <= 1e-6, "logprobs differ");
    assert!(max_diff(&a.2, &b.2) <= 1e-6, "entropies differ");
    assert_eq!(a.3.len(), b.3.len());
    for (name, g) in &a.3 {
        let d = max_diff(g, &b.3[name]);
        assert!(d <= 1e-5, "gradient of {name} differs by {d}");
    }
}

#[test]
fn checkpointed_scoring_matches_the_plain_graph() {
    for tied in [true, false] {
        let plain = model(tied);
        let mut layered = plain.clone();
        layered.set_gradient_checkpointing(true);
        assert!(layered.gradient_checkpointing() && !plain.gradient_checkpointing());
        for entropy_in_loss in [false, true] {
            let reference = run(&plain, ScoreGradients::default(), entropy_in_loss);
            let chunks = ScoreGradients {
                checkpoint_chunks: true,
                entropy_gradients: entropy_in_loss,
            };
            assert_same(&reference, &run(&plain, chunks, entropy_in_loss));
            assert_same(&reference, &run(&layered, chunks, entropy_in_loss));
            assert_same(
                &reference,
                &run(&layered, ScoreGradients::default(), entropy_in_loss),
            );
        }
    }
}

fn micro_batches(model: &Model, config: &GrpoConfig) -> Vec<MicroBatch> {
    let samples: Vec<RolloutSample> = (0..8u32)
        .map(|i| RolloutSample {
            row_index: (i / 4) as usize,
            prompt_ids: vec![1 + i / 4, 2, 3 + i / 4],
            completion_ids: (0..(3 + i % 4)).map(|j| (5 + 3 * i + j) % 40).collect(),
            sampling_logps: vec![0.0; (3 + i % 4) as usize],
            finish_reason: FinishReason::Stop,
            tools: None,
        })
        .collect();
    let advantages: Vec<f32> = (0..8).map(|i| (i as f32 - 3.5) / 2.0).collect();
    let items: f64 = samples.iter().map(|s| s.completion_ids.len() as f64).sum();
    [[0usize, 1, 2, 3], [4, 5, 6, 7]]
        .iter()
        .map(|part| {
            MicroBatch::build(part, &samples, &advantages, 0, items, config, model, None).unwrap()
        })
        .collect()
}

/// Two optimizer steps over the two micro-batches of [`micro_batches`].
fn two_step_config() -> GrpoConfig {
    GrpoConfig {
        num_generations: 4,
        per_device_train_batch_size: 4,
        gradient_accumulation_steps: 2,
        learning_rate: 1e-2,
        max_steps: 2,
        ..GrpoConfig::default()
    }
}

#[test]
fn optimize_step_with_gradient_checkpointing_matches() {
    let config = two_step_config();
    let loss = GrpoLoss::from_config(&config);
    let mut results = Vec::new();
    for checkpointing in [false, true] {
        let mut m = model(true);
        m.set_gradient_checkpointing(checkpointing);
        let mut optimizer = build_optimizer(&config, 2).unwrap();
        let micro = micro_batches(&m, &config);
        let mut metrics = Vec::new();
        for _ in 0..2 {
            metrics.push(
                optimize_step(
                    &mut m,
                    &mut optimizer,
                    &loss,
                    &mut EntropyControl::from_config(&config),
                    &config,
                    &micro,
                )
                .unwrap(),
            );
        }
        results.push((metrics, m.parameters()));
    }
    let (plain, ckpt) = (&results[0], &results[1]);
    for (a, b) in plain.0.iter().zip(&ckpt.0) {
        for key in ["loss", "grad_norm"] {
            assert!(
                (a[key] - b[key]).abs() <= 1e-5 * a[key].abs().max(1.0),
                "{key}"
            );
        }
    }
    for (name, p) in &plain.1 {
        assert!(max_diff(p, &ckpt.1[name]) <= 1e-5, "{name} differs");
    }
}

/// AdamW's moments keep the parameters' dtype (as torch's do), so a bf16
/// model's optimizer state is bf16 too, and the update keeps the
/// parameters' dtype.
#[test]
fn optimizer_state_keeps_the_parameter_dtype() {
    let config = GrpoConfig {
        num_generations: 4,
        per_device_train_batch_size: 4,
        gradient_accumulation_steps: 2,
        max_steps: 1,
        gradient_checkpointing: true,
        ..GrpoConfig::default()
    };
    let loss = GrpoLoss::from_config(&config);
    let mut m = model_of(true, mlx_tensor::Dtype::BF16);
    m.set_gradient_checkpointing(true);
    let mut optimizer = build_optimizer(&config, 1).unwrap();
    let micro = micro_batches(&m, &config);
    optimize_step(
        &mut m,
        &mut optimizer,
        &loss,
        &mut EntropyControl::from_config(&config),
        &config,
        &micro,
    )
    .unwrap();
    let params = m.parameters();
    assert!(!optimizer.state().is_empty());
    for (name, state) in optimizer.state() {
        assert_eq!(params[name].dtype(), mlx_tensor::Dtype::BF16, "{name}");
        for (slot, a) in state.iter() {
            assert_eq!(a.dtype(), mlx_tensor::Dtype::BF16, "{name}.{slot}");
        }
    }
}

/// `offload_optimizer_state`: the optimizer state lives on the host between
/// steps, and two steps give the same bits (parameters and metrics) as with
/// the state in MLX arrays.
#[test]
fn offloaded_optimizer_state_gives_the_same_steps() {
    let mut results = Vec::new();
    for offload in [false, true] {
        let config = GrpoConfig {
            offload_optimizer_state: offload,
            ..two_step_config()
        };
        let loss = GrpoLoss::from_config(&config);
        let mut m = model_of(true, mlx_tensor::Dtype::BF16);
        let mut optimizer = build_optimizer(&config, 2).unwrap();
        assert_eq!(optimizer.state_on_host(), offload);
        let micro = micro_batches(&m, &config);
        let mut metrics = Vec::new();
        for _ in 0..2 {
            metrics.push(
                optimize_step(
                    &mut m,
                    &mut optimizer,
                    &loss,
                    &mut EntropyControl::from_config(&config),
                    &config,
                    &micro,
                )
                .unwrap(),
            );
        }
        let param_bytes: usize = m.parameters().values().map(Array::nbytes).sum();
        if offload {
            assert!(optimizer.state().is_empty());
            assert_eq!(optimizer.host_state_bytes(), 2 * param_bytes);
        } else {
            assert_eq!(optimizer.host_state_bytes(), 0);
        }
        results.push((metrics, m.parameters()));
    }
    let (device, host) = (&results[0], &results[1]);
    assert_eq!(device.0, host.0, "metrics");
    for (name, p) in &device.1 {
        assert_eq!(
            p.to_bytes().unwrap(),
            host.1[name].to_bytes().unwrap(),
            "{name} differs"
        );
    }
}
