//! Loading `GrpoConfig` from files, and the TRL defaults.

use std::path::PathBuf;

use mlx_grpo::Error;
use mlx_grpo::config::{
    GrpoConfig, ImportanceSamplingLevel, LossType, LrSchedulerType, MultiObjectiveAggregation,
    Optim, ScaleRewards,
};

#[test]
fn defaults_follow_trl_1_16() {
    let c = GrpoConfig::default();
    assert_eq!(
        (
            c.num_generations,
            c.max_completion_length,
            c.per_device_train_batch_size
        ),
        (8, 512, 8)
    );
    assert_eq!(
        (
            c.temperature,
            c.top_p,
            c.top_k,
            c.min_p,
            c.repetition_penalty
        ),
        (1.0, 1.0, 0, None, 1.0)
    );
    assert_eq!(
        (c.beta, c.epsilon, c.epsilon_high, c.delta, c.num_iterations),
        (0.0, 0.2, None, None, 1)
    );
    assert_eq!(c.loss_type, LossType::Dapo);
    assert_eq!(c.importance_sampling_level, ImportanceSamplingLevel::Token);
    assert_eq!(c.scale_rewards, ScaleRewards::Group);
    assert_eq!(
        c.multi_objective_aggregation,
        MultiObjectiveAggregation::SumThenNormalize
    );
    assert_eq!(
        (c.sapo_temperature_pos, c.sapo_temperature_neg),
        (1.0, 1.05)
    );
    assert_eq!(
        (
            c.vespo_k_pos,
            c.vespo_lambda_pos,
            c.vespo_k_neg,
            c.vespo_lambda_neg
        ),
        (2.0, 3.0, 3.0, 2.0)
    );
    assert!(c.use_bias_correction_kl && c.shuffle_dataset && !c.mask_truncated_completions);
    assert_eq!(
        (
            c.top_entropy_quantile,
            c.entropy_coef,
            c.off_policy_mask_threshold
        ),
        (1.0, 0.0, None)
    );
    assert_eq!(
        (c.ref_model_mixup_alpha, c.ref_model_sync_steps),
        (0.6, 512)
    );
    assert_eq!(
        (c.learning_rate, c.lr_scheduler_type, c.optim),
        (1e-6, LrSchedulerType::Linear, Optim::AdamW)
    );
    assert_eq!(
        (c.adam_beta1, c.adam_beta2, c.adam_epsilon, c.max_grad_norm),
        (0.9, 0.999, 1e-8, 1.0)
    );
    assert_eq!(
        (
            c.seed,
            c.max_steps,
            c.num_train_epochs,
            c.logging_steps,
            c.save_steps
        ),
        (42, -1, 3.0, 10, 500)
    );
    assert_eq!(c.output_dir, PathBuf::from("trainer_output"));
    // Derived like TRL's __post_init__.
    assert_eq!(
        (
            c.steps_per_generation(),
            c.generation_batch_size(),
            c.prompts_per_generation()
        ),
        (1, 8, 1)
    );
    assert_eq!(c.epsilon_high(), 0.2);
    assert!(!c.needs_old_logps());
}

#[test]
fn derived_batch_values() {
    let c = GrpoConfig {
        generation_batch_size: Some(32),
        per_device_train_batch_size: 4,
        ..GrpoConfig::default()
    };
    assert_eq!(
        (c.steps_per_generation(), c.prompts_per_generation()),
        (8, 4)
    );
    assert!(
        c.needs_old_logps(),
        "8 micro-steps per generation with 1 accumulation step"
    );
    let c = GrpoConfig {
        steps_per_generation: Some(2),
        gradient_accumulation_steps: 4,
        ..GrpoConfig::default()
    };
    assert_eq!(c.generation_batch_size(), 16);
    assert!(!c.needs_old_logps());
    let c = GrpoConfig {
        num_iterations: 2,
        ..GrpoConfig::default()
    };
    assert!(c.needs_old_logps());
}

#[test]
fn training_length_and_warmup() {
    let c = GrpoConfig {
        num_generations: 4,
        per_device_train_batch_size: 4,
        gradient_accumulation_steps: 2,
        num_train_epochs: 1.5,
        ..GrpoConfig::default()
    };
    // 2 prompts per generation batch, 2 micro-steps each, 2 micro-steps per optimiser step.
    assert_eq!(c.optimizer_steps_per_epoch(11), 5);
    assert_eq!(c.total_optimizer_steps(11), 8);
    assert_eq!(
        GrpoConfig {
            max_steps: 3,
            ..c.clone()
        }
        .total_optimizer_steps(11),
        3
    );
    assert_eq!(
        GrpoConfig {
            warmup_steps: 0.1,
            ..c.clone()
        }
        .warmup_steps_for(95),
        10
    );
    assert_eq!(
        GrpoConfig {
            warmup_steps: 7.0,
            ..c.clone()
        }
        .warmup_steps_for(95),
        7
    );
    assert_eq!(
        GrpoConfig {
            warmup_ratio: Some(0.5),
            ..c
        }
        .warmup_steps_for(9),
        5
    );
}

#[test]
fn loads_toml_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let toml_path = dir.join("grpo.toml");
    std::fs::write(
        &toml_path,
        "num_generations = 4\nper_device_train_batch_size = 4\nloss_type = \"grpo\"\nscale_rewards = false\n\
         reward_weights = [1.0, 0.5]\noutput_dir = \"runs/x\"\nepsilon_high = 0.28\n",
    )
    .expect("write toml");
    let c = GrpoConfig::from_file(&toml_path).expect("toml loads");
    assert_eq!(
        (c.num_generations, c.loss_type, c.scale_rewards),
        (4, LossType::Grpo, ScaleRewards::None)
    );
    assert_eq!(c.reward_weights, Some(vec![1.0, 0.5]));
    assert_eq!(c.epsilon_high, Some(0.28));
    assert_eq!(c.beta, 0.0, "unset fields keep their defaults");
    c.validate().expect("valid");

    let json_path = dir.join("grpo.JSON");
    std::fs::write(&json_path, c.to_json_pretty().expect("serialize")).expect("write json");
    assert_eq!(
        GrpoConfig::from_file(&json_path).expect("json loads"),
        c,
        "JSON round trip"
    );
    let toml_text = toml::to_string(&c).expect("toml serialize");
    assert_eq!(
        GrpoConfig::from_toml_str(&toml_text).expect("toml round trip"),
        c
    );
}

#[test]
fn file_errors_name_the_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let yaml = dir.join("grpo.yaml");
    std::fs::write(&yaml, "beta: 1").expect("write");
    assert!(matches!(
        GrpoConfig::from_file(&yaml),
        Err(Error::UnsupportedConfigFormat { .. })
    ));

    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "num_generation = 4\n").expect("write");
    let msg = GrpoConfig::from_file(&typo).unwrap_err().to_string();
    assert!(
        msg.contains("typo.toml") && msg.contains("num_generation"),
        "{msg}"
    );

    let wrong_type = dir.join("wrong.json");
    std::fs::write(&wrong_type, r#"{"beta": "high"}"#).expect("write");
    let msg = GrpoConfig::from_file(&wrong_type).unwrap_err().to_string();
    assert!(msg.contains("wrong.json") && msg.contains("JSON"), "{msg}");

    let bad_enum = dir.join("enum.toml");
    std::fs::write(&bad_enum, "loss_type = \"ppo\"\n").expect("write");
    let msg = GrpoConfig::from_file(&bad_enum).unwrap_err().to_string();
    assert!(msg.contains("ppo") && msg.contains("dapo"), "{msg}");

    let missing = dir.join("missing.toml");
    assert!(matches!(
        GrpoConfig::from_file(&missing),
        Err(Error::Io { .. })
    ));
}

#[test]
fn gradient_checkpointing_is_on_by_default_as_in_trl_and_settable() {
    assert!(GrpoConfig::default().gradient_checkpointing);
    let c = GrpoConfig::from_toml_str("gradient_checkpointing = false\n").unwrap();
    assert!(!c.gradient_checkpointing);
    let mut c = GrpoConfig::default();
    c.set("--gradient-checkpointing", "false").unwrap();
    assert!(!c.gradient_checkpointing);
    c.validate().unwrap();
}

#[test]
fn generation_chunk_prompts_must_be_positive() {
    assert_eq!(GrpoConfig::default().generation_chunk_prompts, None);
    let mut c = GrpoConfig::default();
    c.set("generation_chunk_prompts", "2").unwrap();
    assert_eq!(c.generation_chunk_prompts, Some(2));
    c.validate().unwrap();
    c.set("generation_chunk_prompts", "0").unwrap();
    assert!(c.validate().is_err());
}

#[test]
fn memory_settings_parse_and_validate() {
    let c = GrpoConfig::default();
    assert_eq!(c.generation_memory_headroom_mb, None);
    assert!(!c.offload_optimizer_state);
    let mut c = GrpoConfig::default();
    c.apply_overrides([
        "--generation-memory-headroom-mb=512",
        "offload_optimizer_state=true",
    ])
    .unwrap();
    assert_eq!(c.generation_memory_headroom_mb, Some(512));
    assert!(c.offload_optimizer_state);
    c.validate().unwrap();
    c.set("generation_memory_headroom_mb", "none").unwrap();
    assert_eq!(c.generation_memory_headroom_mb, None);
    c.set("generation_memory_headroom_mb", "0").unwrap();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("generation_memory_headroom_mb"), "{err}");
    assert!(c.set("offload_optimizer_state", "sometimes").is_err());
}
