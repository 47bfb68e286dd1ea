//! GRPO on LoRA adapters in the trainer: checkpoints that hold the
//! adapters (PEFT's layout) and resume bit for bit, over a dense and a
//! quantized base; the reference model as the base with the adapters
//! switched off; adapter dropout off in rollouts and on in training; the
//! merged model in Hugging Face's layout, and over a quantized base
//! re-quantized or dequantized.

mod resume_support;
mod tiny_task;

use std::sync::{Arc, Mutex};

use mlx_grpo::config::GrpoConfig;
use mlx_grpo::trainer::adapters::MergedFormat;
use mlx_grpo::trainer::checkpoint::read_trainer_state;
use mlx_grpo::trainer::{RolloutBuffer, RolloutSample, Trainer, TrainerCallback};
use mlx_lm::loader::{
    QuantizationSpec, SaveOptions, attach_lora, is_adapter_parameter, load_adapters, load_model,
    load_quantized_model, quantization_config, save_quantized_model,
};
use mlx_lm::models::Model;
use mlx_lm::score::{ScoreOptions, score};
use mlx_lm::{LanguageModel, Tokenizer};
use mlx_nn::layers::{LayerSelection, LoraConfig, TargetModules};
use mlx_nn::{ModuleExt, ParamMap};
use mlx_tensor::{Array, Dtype, random};
use resume_support::{Scenario, assert_exact_resume, base_config, dense_model, rewards};
use tiny_task::{dataset, scratch, tokenizer};

fn lora(dropout: f32) -> LoraConfig {
    LoraConfig {
        lora_dropout: dropout,
        ..LoraConfig::new(4, 8.0)
    }
}

/// Fresh adapters (B = 0) on every linear layer.
fn attach(model: &mut Model, config: LoraConfig) {
    attach_lora(
        model,
        config,
        TargetModules::AllLinear,
        LayerSelection::All,
        11,
    )
    .unwrap();
}

/// The tiny model with adapters (dropout 0.1) on every linear layer.
fn adapted_dense(tok: &Tokenizer) -> Model {
    let mut m = dense_model(tok);
    attach(&mut m, lora(0.1));
    m
}

/// The tiny model quantized as mlx-lm does (8 bits, groups of 32), loaded
/// packed.
fn quantized_base(tok: &Tokenizer) -> Model {
    let dir_guard = scratch("quantized-base");
    let dir = dir_guard.path();
    let spec = QuantizationSpec {
        group_size: 32,
        bits: 8,
    };
    save_quantized_model(&dense_model(tok), dir, spec, &SaveOptions::default()).unwrap();
    load_quantized_model(dir, None).unwrap()
}

/// [`quantized_base`] with adapters over it (QLoRA).
fn adapted_quantized(tok: &Tokenizer) -> Model {
    let mut m = quantized_base(tok);
    attach(&mut m, lora(0.1));
    m
}

/// Adapters whose `B` is not zero, so that the adapted model differs from
/// its base from the start.
fn with_trained_looking_adapters(mut m: Model, dropout: f32) -> Model {
    attach(&mut m, lora(dropout));
    let mut values = ParamMap::new();
    for (i, (name, p)) in m.parameters().into_iter().enumerate() {
        if name.ends_with(".lora_B.weight") {
            let key = random::key(100 + i as u64).unwrap();
            let b = random::normal(&p.shape().0, Dtype::F32, 0.0, 0.3, Some(&key)).unwrap();
            values.insert(name, b);
        }
    }
    m.update(&values).unwrap();
    m
}

fn lora_settings(c: &mut GrpoConfig) {
    // β > 0: the reference is the base with the adapters off.
    c.beta = 0.1;
    c.num_iterations = 2;
}

fn bytes(a: &Array) -> Vec<u8> {
    a.to_bytes().unwrap()
}

/// The run moved adapter factors and left every base tensor bit for bit.
fn assert_only_adapters_moved(start: &ParamMap, end: &ParamMap, what: &str) {
    assert_eq!(
        start.keys().collect::<Vec<_>>(),
        end.keys().collect::<Vec<_>>()
    );
    let mut moved = 0;
    for (name, p) in start {
        let same = bytes(p) == bytes(&end[name]);
        if !is_adapter_parameter(name) {
            assert!(same, "{what}: base tensor {name} changed");
        } else if !same {
            moved += 1;
        }
    }
    assert!(moved > 0, "{what}: no adapter factor moved");
}

fn assert_adapter_checkpoint(dir: &std::path::Path, step: usize) {
    let checkpoint = dir.join(format!("checkpoint-{step}"));
    assert!(checkpoint.join("adapter_config.json").is_file());
    assert!(checkpoint.join("adapter_model.safetensors").is_file());
    assert!(checkpoint.join("optimizer.safetensors").is_file());
    assert!(
        !checkpoint.join("model").exists(),
        "the whole model was saved"
    );
    assert!(
        !checkpoint.join("ref_model").exists(),
        "a reference copy was saved"
    );
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(checkpoint.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    // The checkpoint is an adapter directory: seven modules of one block.
    let (adapters, _) = load_adapters(&checkpoint).unwrap();
    assert_eq!(adapters.modules.len(), 7);
}

#[test]
fn lora_run_checkpoints_adapters_and_resumes_exactly() {
    let (straight, dir) = assert_exact_resume(&Scenario {
        name: "lora-dense",
        adjust: lora_settings,
        model: adapted_dense,
        rewards,
        steps: 5,
        stop: 3,
        mid_batch: true,
    });
    assert!(straight.ref_params.is_none(), "a reference model was built");
    assert!(
        straight.history.iter().any(|r| r.metrics["kl"] > 0.0),
        "the KL term never moved"
    );
    let start = adapted_dense(&tokenizer()).parameters();
    assert_only_adapters_moved(&start, &straight.params, "dense base");
    // The optimizer holds state for the adapters only.
    assert!(
        straight
            .optimizer
            .0
            .keys()
            .all(|k| k.contains("lora_A") || k.contains("lora_B"))
    );
    assert_adapter_checkpoint(dir.path(), 3);
}

#[test]
fn qlora_run_checkpoints_adapters_and_resumes_exactly() {
    let (straight, dir) = assert_exact_resume(&Scenario {
        name: "lora-quantized",
        adjust: lora_settings,
        model: adapted_quantized,
        rewards,
        steps: 4,
        stop: 3,
        mid_batch: true,
    });
    let start = adapted_quantized(&tokenizer()).parameters();
    assert!(
        start.keys().any(|k| k.ends_with(".scales")),
        "not quantized"
    );
    assert_only_adapters_moved(&start, &straight.params, "quantized base");
    assert_adapter_checkpoint(dir.path(), 3);
}

#[test]
fn reference_log_probs_are_the_base_models_without_a_reference_copy() {
    let dir_guard = scratch("lora-reference");
    let dir = dir_guard.path();
    let tok = tokenizer();
    let model = with_trained_looking_adapters(dense_model(&tok), 0.0);
    let mut cfg = base_config(dir, 2);
    lora_settings(&mut cfg);
    cfg.save_steps = 1;
    let params_before = model.num_parameters();
    let mut trainer = Trainer::new(cfg.clone(), model.clone(), tok, dataset(), rewards())
        .unwrap()
        .with_progress(false);
    assert!(trainer.ref_model().is_none());
    trainer.train().unwrap();
    assert_eq!(trainer.model().num_parameters(), params_before);

    // Step 1 is the middle of a generation batch: its micro-batches, with
    // their reference and old log-probabilities, are in the checkpoint.
    let checkpoint = dir.join("checkpoint-1");
    let state = read_trainer_state(&checkpoint).unwrap();
    let buffer = RolloutBuffer::load(
        &checkpoint.join("rollout_buffer.safetensors"),
        state.buffered_micro_steps,
    )
    .unwrap();
    let base = dense_model(&tokenizer());
    let options = ScoreOptions {
        temperature: cfg.temperature as f32,
        ..Default::default()
    };
    for mb in &buffer.micro_batches {
        let reference = mb.ref_logps.as_ref().expect("reference log-probs");
        let of_base = score(&base, &mb.layout, &options).unwrap().logprobs;
        assert_eq!(bytes(reference), bytes(&of_base), "reference != base");
        // The adapters matter: the policy's log-probs are not the base's.
        let old = mb.old_logps.as_ref().expect("old log-probs");
        let of_policy = score(&model, &mb.layout, &options).unwrap().logprobs;
        assert_eq!(bytes(old), bytes(&of_policy), "old != adapted model");
        assert_ne!(bytes(old), bytes(reference));
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Keeps every rollout's samples.
struct Rollouts(Arc<Mutex<Vec<RolloutSample>>>);

impl TrainerCallback for Rollouts {
    fn on_rollout(&mut self, samples: &mut [RolloutSample]) {
        self.0.lock().unwrap().extend(samples.iter().cloned());
    }
}

/// One step with adapters of dropout `p`: the rollout's samples and the
/// parameters after the step.
fn one_step(p: f32, name: &str) -> (Vec<RolloutSample>, ParamMap) {
    let dir_guard = scratch(name);
    let dir = dir_guard.path();
    let tok = tokenizer();
    let model = with_trained_looking_adapters(dense_model(&tok), p);
    let mut cfg = base_config(dir, 1);
    cfg.temperature = 1.0;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut trainer = Trainer::new(cfg, model, tok, dataset(), rewards())
        .unwrap()
        .with_progress(false)
        .with_callback(Rollouts(seen.clone()));
    trainer.train_step().unwrap();
    let params = trainer.model().parameters();
    let _ = std::fs::remove_dir_all(dir);
    let samples = seen.lock().unwrap().clone();
    (samples, params)
}

#[test]
fn adapter_dropout_is_off_in_rollouts_and_on_in_training() {
    let (plain, plain_params) = one_step(0.0, "dropout-0");
    let (dropped, dropped_params) = one_step(0.5, "dropout-half");
    assert!(!plain.is_empty());
    // Rollouts: the same completions and sampling log-probs as without
    // dropout, bit for bit.
    assert_eq!(plain.len(), dropped.len());
    for (a, b) in plain.iter().zip(&dropped) {
        assert_eq!(a.completion_ids, b.completion_ids);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.sampling_logps), bits(&b.sampling_logps));
    }
    // Training: the same rollout gives another update under dropout.
    let differs = plain_params
        .iter()
        .filter(|(n, _)| is_adapter_parameter(n))
        .any(|(n, p)| bytes(p) != bytes(&dropped_params[n]));
    assert!(differs, "dropout did not change the training forward");
    // ... and the same update again with the same seed.
    let (_, again) = one_step(0.5, "dropout-half-again");
    for (n, p) in &dropped_params {
        assert_eq!(
            bytes(p),
            bytes(&again[n]),
            "{n}: dropout masks not reproducible"
        );
    }
}

#[test]
fn merged_model_is_saved_in_hf_layout_with_the_adapted_logits() {
    let dir_guard = scratch("lora-merged");
    let dir = dir_guard.path();
    let tok = tokenizer();
    let model = with_trained_looking_adapters(dense_model(&tok), 0.0);
    let trainer = Trainer::new(
        base_config(dir, 1),
        model.clone(),
        tok,
        dataset(),
        rewards(),
    )
    .unwrap()
    .with_progress(false);
    let out = dir.join("merged");
    trainer.save_merged_model(&out).unwrap();
    let merged = load_model(&out, None).unwrap();
    assert!(merged.parameters().keys().all(|k| !k.contains("lora")));
    let ids = Array::from_slice(&[3u32, 1, 4, 1, 5], &[1, 5]).unwrap();
    let want = model.forward(&ids, None).unwrap().to_vec::<f32>().unwrap();
    let got = merged.forward(&ids, None).unwrap().to_vec::<f32>().unwrap();
    let worst = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "merged logits differ by {worst}");
    let adapted_vs_base = dense_model(&tokenizer())
        .forward(&ids, None)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(
        want.iter()
            .zip(&adapted_vs_base)
            .any(|(a, b)| (a - b).abs() > 1e-3)
    );

    let _ = std::fs::remove_dir_all(dir);
}

/// Over a quantized base (QLoRA) the merged model is written as mlx-lm's
/// `fuse` writes it: by default the adapted layers quantized again (mlx-lm's
/// quantized layout, loaded packed), or dequantized into a dense model.
/// (The re-quantized and dequantized tensors are checked against mlx-lm's
/// in `mlx-lm/tests/qlora_merge.rs`.)
#[test]
fn merged_model_over_a_quantized_base_is_requantized_or_dequantized() {
    let qdir_guard = scratch("lora-merged-q");
    let qdir = qdir_guard.path();
    let tok = tokenizer();
    let model = with_trained_looking_adapters(quantized_base(&tok), 0.0);
    let trainer = Trainer::new(
        base_config(qdir, 1),
        model.clone(),
        tok,
        dataset(),
        rewards(),
    )
    .unwrap()
    .with_progress(false);
    let ids = Array::from_slice(&[3u32, 1, 4, 1, 5], &[1, 5]).unwrap();
    let logits = |m: &Model| m.forward(&ids, None).unwrap().to_vec::<f32>().unwrap();
    let worst = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let want = logits(&model);
    let base_gap = worst(&want, &logits(&quantized_base(&tokenizer())));
    assert!(
        base_gap > 1e-2,
        "the adapters change the model ({base_gap})"
    );

    let requantized_dir = qdir.join("merged");
    trainer.save_merged_model(&requantized_dir).unwrap();
    let q = quantization_config(&requantized_dir).unwrap().unwrap();
    assert_eq!(
        q.default,
        QuantizationSpec {
            group_size: 32,
            bits: 8
        }
    );
    let requantized = load_model(&requantized_dir, None).unwrap();
    let params = requantized.parameters();
    assert!(params.keys().all(|k| !k.contains("lora")));
    let packed = "model.layers.0.self_attn.q_proj.weight";
    assert_eq!(params[packed].dtype(), Dtype::U32);
    // Quantizing the fused weights again costs far less than the adapters
    // change.
    let gap = worst(&want, &logits(&requantized));
    assert!(gap < 0.05 * base_gap, "re-quantized logits differ by {gap}");

    let dense_dir = qdir.join("merged-dense");
    trainer
        .save_merged_model_as(&dense_dir, MergedFormat::Dequantized)
        .unwrap();
    assert!(quantization_config(&dense_dir).unwrap().is_none());
    let dense = load_model(&dense_dir, None).unwrap();
    assert!(dense.parameters().values().all(|v| v.dtype().is_float()));
    let gap = worst(&want, &logits(&dense));
    assert!(gap < 1e-4, "dequantized merged logits differ by {gap}");
    let _ = std::fs::remove_dir_all(qdir);
}

#[test]
fn resuming_with_other_adapters_or_none_is_an_error_naming_the_file() {
    let dir_guard = scratch("lora-mismatch");
    let dir = dir_guard.path();
    let tok = tokenizer();
    let mut cfg = base_config(dir, 1);
    let mut trainer = Trainer::new(cfg.clone(), adapted_dense(&tok), tok, dataset(), rewards())
        .unwrap()
        .with_progress(false);
    trainer.train().unwrap();
    let checkpoint = dir.join("checkpoint-1");
    cfg.max_steps = 2;

    // Adapters of another rank.
    let tok = tokenizer();
    let mut other = dense_model(&tok);
    attach(&mut other, LoraConfig::new(2, 8.0));
    let mut t = Trainer::new(cfg.clone(), other, tok, dataset(), rewards()).unwrap();
    let err = t.resume_from(&checkpoint).unwrap_err().to_string();
    assert!(err.contains("adapter_config.json"), "{err}");

    // No adapters: the checkpoint holds no whole model to load.
    let tok = tokenizer();
    let mut t = Trainer::new(cfg.clone(), dense_model(&tok), tok, dataset(), rewards()).unwrap();
    let err = t.resume_from(&checkpoint).unwrap_err().to_string();
    assert!(err.contains("checkpoint-1"), "{err}");

    // Adapters, and a checkpoint of a model without them.
    let plain_dir_guard = scratch("lora-mismatch-plain");
    let plain_dir = plain_dir_guard.path();
    let tok = tokenizer();
    let mut plain = Trainer::new(
        base_config(plain_dir, 1),
        dense_model(&tok),
        tok,
        dataset(),
        rewards(),
    )
    .unwrap()
    .with_progress(false);
    plain.train().unwrap();
    let tok = tokenizer();
    let mut t = Trainer::new(cfg, adapted_dense(&tok), tok, dataset(), rewards()).unwrap();
    let err = t
        .resume_from(&plain_dir.join("checkpoint-1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("adapter_model.safetensors"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(plain_dir);
}

#[test]
fn tr_dpo_reference_sync_with_adapters_is_refused() {
    let dir_guard = scratch("lora-sync");
    let dir = dir_guard.path();
    let tok = tokenizer();
    let mut cfg = base_config(dir, 1);
    cfg.beta = 0.1;
    cfg.sync_ref_model = true;
    let err = Trainer::new(cfg, adapted_dense(&tok), tok, dataset(), rewards())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("sync_ref_model"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
