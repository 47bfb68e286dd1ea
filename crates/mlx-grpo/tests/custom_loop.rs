//! A training loop built by hand from the public pieces of `mlx-grpo`
//! (the loop of docs/GUIDE.md, "Build your own trainer from the pieces")
//! takes the same steps as `Trainer::train_step`: parameters and step
//! metrics bit for bit alike.

mod resume_support;
mod tiny_task;

use std::collections::{BTreeMap, VecDeque};

use mlx_grpo::Result;
use mlx_grpo::advantages::{AdvantageSettings, compute_advantages};
use mlx_grpo::config::GrpoConfig;
use mlx_grpo::dataset::{Dataset, GenerationSampler, SamplerSpec, SplitMix64};
use mlx_grpo::loss::{EntropyControl, GrpoLoss};
use mlx_grpo::rewards::{FinishReason, RewardSet};
use mlx_grpo::trainer::batch::completion_metrics;
use mlx_grpo::trainer::rollout::{
    PromptTruncation, generate, generation_seed, render_prompt, reward_inputs,
};
use mlx_grpo::trainer::{MicroBatch, Trainer, build_optimizer, optimize_step};
use mlx_lm::generate::pack_weights;
use mlx_lm::models::Model;
use mlx_lm::{LanguageModel, Tokenizer};
use mlx_nn::ModuleExt;
use resume_support::{assert_same_params, base_config, dataset, dense_model, rewards, tokenizer};

/// `steps` optimizer steps of GRPO from the public pieces: dataset →
/// rollout → rewards → advantages → micro-batches → loss and gradients →
/// optimizer. Returns the trained model and each step's metrics (the
/// step's and its generation's, as `Trainer::train_step` returns them).
fn train_by_hand(
    config: &GrpoConfig,
    mut model: Model,
    tokenizer: &Tokenizer,
    dataset: &Dataset,
    rewards: &RewardSet,
    steps: usize,
) -> Result<(Model, Vec<BTreeMap<String, f64>>)> {
    config.validate()?;
    model.set_gradient_checkpointing(config.gradient_checkpointing);
    let ref_model = (config.beta != 0.0).then(|| {
        let mut r = model.clone();
        r.freeze();
        r
    });
    let mut sampler = GenerationSampler::new(dataset.len(), SamplerSpec::from_config(config))?;
    let mut optimizer = build_optimizer(config, steps)?;
    let loss = GrpoLoss::from_config(config);
    let mut entropy = EntropyControl::from_config(config);
    let mut truncation = PromptTruncation::new(config.max_prompt_length);
    let pad_id = tokenizer
        .pad_token_id()
        .or(tokenizer.eos_token_id())
        .unwrap_or(0);
    let accumulation = config.gradient_accumulation_steps.max(1);
    let mut generation = 0u64;
    // Micro-batches of the current generation not used yet.
    let mut queue: VecDeque<MicroBatch> = VecDeque::new();
    let mut rollout_metrics = BTreeMap::new();
    let mut logs = Vec::with_capacity(steps);
    for _ in 0..steps {
        let mut micro = Vec::with_capacity(accumulation);
        while micro.len() < accumulation {
            if queue.is_empty() {
                // Dataset → rollout.
                let batch = sampler.next_batch();
                let mut prompts = Vec::with_capacity(batch.prompt_indices.len());
                for &row in &batch.prompt_indices {
                    let ids = render_prompt(tokenizer, &dataset.rows()[row].prompt)?;
                    prompts.push(truncation.apply(ids));
                }
                pack_weights(&mut model)?;
                let seed = generation_seed(config.seed, generation);
                let samples = generate(
                    &model,
                    tokenizer,
                    &batch.prompt_indices,
                    &prompts,
                    config,
                    seed,
                )?;
                // Rewards → advantages.
                let inputs = reward_inputs(tokenizer, dataset.rows(), &samples)?;
                let matrix = rewards.score(&inputs)?;
                let weights = config
                    .reward_weights
                    .clone()
                    .unwrap_or_else(|| rewards.weights());
                let settings = AdvantageSettings::from_config(config);
                let advantages = compute_advantages(&matrix, &weights, &settings)?;
                rollout_metrics = advantages.metrics.to_map();
                rollout_metrics.extend(completion_metrics(&samples));
                // Micro-batches: the slots shuffled with the generation's
                // stream, the loss normalised by the batch's loss tokens.
                let num_items: f64 = samples
                    .iter()
                    .filter(|s| {
                        !(config.mask_truncated_completions
                            && s.finish_reason == FinishReason::Length)
                    })
                    .map(|s| s.completion_ids.len() as f64)
                    .sum();
                let mut rng = SplitMix64::for_stream(config.seed, generation);
                let mut built = Vec::new();
                for part in batch.micro_batches(&mut rng) {
                    built.push(MicroBatch::build(
                        &part,
                        &samples,
                        &advantages.advantages,
                        pad_id,
                        num_items,
                        config,
                        &model,
                        ref_model.as_ref(),
                    )?);
                }
                for _ in 0..config.num_iterations.max(1) {
                    queue.extend(built.iter().cloned());
                }
                generation += 1;
            }
            micro.extend(queue.pop_front());
        }
        // Loss → gradients → clipping → optimizer update.
        let mut metrics = optimize_step(
            &mut model,
            &mut optimizer,
            &loss,
            &mut entropy,
            config,
            &micro,
        )?;
        metrics.extend(rollout_metrics.clone());
        logs.push(metrics);
    }
    Ok((model, logs))
}

/// A step's metrics as bits (NaN equals NaN), without the wall clock and
/// the run's token counter, which the trainer keeps besides the step.
fn step_metric_bits(metrics: &BTreeMap<String, f64>) -> BTreeMap<String, u64> {
    metrics
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "step_time" | "num_tokens"))
        .map(|(name, value)| (name.clone(), value.to_bits()))
        .collect()
}

/// Two steps of the trainer and of the hand-built loop, from the same
/// model, end with the same parameters and step metrics, and the
/// parameters moved.
fn assert_loops_agree(name: &str, adjust: impl Fn(&mut GrpoConfig)) {
    const STEPS: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path(), STEPS as i64);
    adjust(&mut config);
    let tok = tokenizer();
    let initial = dense_model(&tok).parameters();

    let mut trainer = Trainer::new(
        config.clone(),
        dense_model(&tok),
        tok.clone(),
        dataset(),
        rewards(),
    )
    .unwrap()
    .with_progress(false);
    let trainer_logs: Vec<_> = (0..STEPS).map(|_| trainer.train_step().unwrap()).collect();

    let (model, logs) = train_by_hand(
        &config,
        dense_model(&tok),
        &tok,
        &dataset(),
        &rewards(),
        STEPS,
    )
    .unwrap();

    assert_same_params(
        &trainer.model().parameters(),
        &model.parameters(),
        &format!("hand-built loop vs Trainer::train_step, {name}"),
    );
    for (step, (t, h)) in trainer_logs.iter().zip(&logs).enumerate() {
        assert_eq!(
            step_metric_bits(t),
            step_metric_bits(h),
            "{name}: metrics of step {}",
            step + 1
        );
        assert!(
            h["grad_norm"] > 0.0,
            "{name}: step {} has no gradient",
            step + 1
        );
    }
    let moved = model
        .parameters()
        .iter()
        .any(|(k, p)| p.to_bytes().unwrap() != initial[k].to_bytes().unwrap());
    assert!(moved, "{name}: two steps left every parameter unchanged");
}

#[test]
fn hand_built_loop_equals_train_step_with_accumulation_and_reference_model() {
    // Each step samples its own generation (two micro-batches, accumulated),
    // and the KL term scores a frozen reference model.
    assert_loops_agree("accumulation + beta", |c| {
        c.gradient_accumulation_steps = 2;
        c.steps_per_generation = Some(2);
        c.beta = 0.04;
    });
}

#[test]
fn hand_built_loop_equals_train_step_reusing_a_generation() {
    // One generation serves both steps twice over (num_iterations = 2), so
    // the loss uses the old log-probabilities and one prompt is truncated.
    assert_loops_agree("num_iterations = 2", |c| {
        c.steps_per_generation = Some(2);
        c.num_iterations = 2;
        c.max_prompt_length = Some(3);
    });
}

#[test]
fn the_guide_shows_the_tested_loop() {
    let this_file = include_str!("custom_loop.rs");
    let guide = include_str!("../../../docs/GUIDE.md");
    let start = this_file.find("fn train_by_hand(").unwrap();
    let len = this_file[start..].find("\n}\n").unwrap() + 2;
    let tested = &this_file[start..start + len];
    assert!(
        guide.contains(tested),
        "docs/GUIDE.md (\"Build your own trainer from the pieces\") must show `train_by_hand` of \
         this file as it is"
    );
}
