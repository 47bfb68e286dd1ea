//! Qwen3-MoE under GRPO: each micro-batch's loss gets TRL's
//! `router_aux_loss_coef × aux_loss / gradient_accumulation_steps`, with the
//! router load-balancing loss over the real (unpadded) tokens, and the
//! gradient includes it. The reference value is transformers' `aux_loss` of
//! the mlx-lm fixture model (`scripts/gen_lm_fixtures.py`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use mlx_grpo::config::{GrpoConfig, LrSchedulerType, Optim};
use mlx_grpo::loss::{EntropyControl, GrpoLoss};
use mlx_grpo::rewards::FinishReason;
use mlx_grpo::trainer::{MicroBatch, RolloutSample, build_optimizer, optimize_step};
use mlx_lm::LanguageModel;
use mlx_lm::loader::load_model;
use mlx_lm::models::Model;
use mlx_nn::{ModuleExt, ParamMap, value_and_grad};
use mlx_tensor::{Array, Dtype};

fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../mlx-lm/tests/fixtures/lm")
        .join(name)
}

fn fixture_inputs(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir(name).join("inputs.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture's token row (16 ids).
fn fixture_tokens(name: &str) -> Vec<u32> {
    fixture_inputs(name)["tokens"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn load(name: &str) -> Model {
    let mut model = load_model(fixture_dir(name), Some(Dtype::F32)).unwrap();
    // As the trainer runs it (TRL's default).
    model.set_gradient_checkpointing(true);
    model
}

/// Two completions whose rows both hold exactly the fixture's tokens, split
/// at different points: laid out together, one row gets left padding and
/// the other right padding. Padding must not count, so the batch's router
/// statistics are those of the fixture row alone.
fn samples(tokens: &[u32]) -> Vec<RolloutSample> {
    [10usize, 8]
        .iter()
        .map(|&split| RolloutSample {
            row_index: 0,
            prompt_ids: tokens[..split].to_vec(),
            completion_ids: tokens[split..].to_vec(),
            sampling_logps: vec![0.0; tokens.len() - split],
            finish_reason: FinishReason::Stop,
            tools: None,
        })
        .collect()
}

fn config(coef: f64) -> GrpoConfig {
    GrpoConfig {
        num_generations: 2,
        per_device_train_batch_size: 2,
        gradient_accumulation_steps: 2,
        router_aux_loss_coef: coef,
        // Plain gradient steps of size 1, unclipped: the update is -grad.
        optim: Optim::Sgd,
        learning_rate: 1.0,
        lr_scheduler_type: LrSchedulerType::Constant,
        max_grad_norm: 0.0,
        max_steps: 1,
        ..GrpoConfig::default()
    }
}

/// One optimizer step over two identical micro-batches: the metrics and the
/// parameters after it.
fn step(name: &str, coef: f64) -> (BTreeMap<String, f64>, ParamMap) {
    let mut model = load(name);
    let config = config(coef);
    let tokens = fixture_tokens(name);
    let samples = samples(&tokens);
    let num_items = samples.iter().map(|s| s.completion_ids.len() as f64).sum();
    let micro: Vec<MicroBatch> = (0..2)
        .map(|_| {
            MicroBatch::build(
                &[0, 1],
                &samples,
                &[1.0, -1.0],
                0,
                num_items,
                &config,
                &model,
                None,
            )
            .unwrap()
        })
        .collect();
    let mut optimizer = build_optimizer(&config, 1).unwrap();
    let loss = GrpoLoss::from_config(&config);
    let mut entropy = EntropyControl::from_config(&config);
    let metrics = optimize_step(
        &mut model,
        &mut optimizer,
        &loss,
        &mut entropy,
        &config,
        &micro,
    )
    .unwrap();
    (metrics, model.parameters())
}

#[test]
fn moe_loss_adds_the_scaled_router_aux_loss_of_transformers() {
    let reference = fixture_inputs("qwen3_moe")["aux_loss"].as_f64().unwrap();
    let coef = 0.5;
    let (without, _) = step("qwen3_moe", 0.0);
    let (with, _) = step("qwen3_moe", coef);
    assert!(!without.contains_key("aux_loss"));
    let aux = with["aux_loss"];
    assert!(
        (aux - reference).abs() <= 1e-5 * reference,
        "aux_loss {aux} vs transformers {reference}"
    );
    // Two micro-batches, each adding coef × aux / 2: the logged (summed) loss
    // grows by coef × aux.
    let added = with["loss"] - without["loss"];
    assert!(
        (added - coef * reference).abs() <= 1e-5,
        "loss grew by {added}, expected {}",
        coef * reference
    );
}

#[test]
fn moe_gradient_includes_the_router_aux_loss() {
    let coef = 0.5;
    let (_, after_without) = step("qwen3_moe", 0.0);
    let (_, after_with) = step("qwen3_moe", coef);
    // The gradient of the aux loss alone, on the fixture row unpadded.
    let model = load("qwen3_moe");
    let tokens = fixture_tokens("qwen3_moe");
    let row = Array::from_slice(&tokens, &[1, tokens.len() as i32]).unwrap();
    let aux_grads = value_and_grad(&model, |m| {
        let (_, aux) = m.forward_hidden_with_aux(&row, None, None)?;
        Ok(vec![aux.expect("an MoE model has an aux loss")])
    })
    .unwrap()
    .grads;
    // With SGD at lr 1, after_without - after_with = grad_with - grad_without.
    let mut largest = 0.0f32;
    for (name, g) in &aux_grads {
        let got = after_without[name]
            .subtract(&after_with[name])
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let want: Vec<f32> = g
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v * coef as f32)
            .collect();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 2e-5 + 1e-3 * b.abs(), "{name}: {a} vs {b}");
            largest = largest.max(b.abs());
        }
    }
    // The router's gate does get a gradient from the aux loss.
    assert!(largest > 1e-3, "largest aux gradient {largest}");
}

#[test]
fn dense_models_get_no_aux_loss() {
    let (metrics, _) = step("qwen3_tied", 0.5);
    assert!(!metrics.contains_key("aux_loss"), "{metrics:?}");
    assert!(metrics["loss"].is_finite());
}
