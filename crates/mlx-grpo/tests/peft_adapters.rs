//! GRPO on LoRA adapters: TRL's `ModelConfig` adapter fields in the config,
//! and a training step that moves the adapters and nothing else.

mod tiny_task;

use tiny_task::{dataset, dense_model as model, scratch, tokenizer};

use mlx_grpo::config::{GrpoConfig, LossType, attach_peft_adapters};
use mlx_grpo::rewards::{RewardInput, RewardSet, per_sample};
use mlx_grpo::trainer::Trainer;
use mlx_lm::loader::is_adapter_parameter;
use mlx_nn::ModuleExt;
use mlx_nn::layers::TargetModules;

fn rewards() -> RewardSet {
    // Completion lengths and characters differ within a group: non-zero
    // advantages (lengths alone can be all equal: three-token completions
    // rarely stop early).
    let mut set = RewardSet::new();
    set.add(per_sample("length", |x: &RewardInput| {
        x.completion.num_tokens as f32
    }))
    .unwrap();
    set.add(per_sample("characters", |x: &RewardInput| {
        x.completion
            .raw_text
            .chars()
            .map(|c| (u32::from(c) % 7) as f32)
            .sum::<f32>()
    }))
    .unwrap();
    set
}

#[test]
fn adapter_fields_have_trl_names_and_defaults_and_are_validated() {
    let defaults = GrpoConfig::default();
    // TRL's `ModelConfig` defaults.
    assert!(!defaults.use_peft);
    assert_eq!(defaults.lora_r, 16);
    assert_eq!(defaults.lora_alpha, 32.0);
    assert_eq!(defaults.lora_dropout, 0.05);
    assert_eq!(defaults.lora_target_modules, None);
    assert!(!defaults.use_rslora);
    assert_eq!(
        defaults.lora_targets(),
        TargetModules::Names(vec!["q_proj".into(), "v_proj".into()])
    );

    let cfg = GrpoConfig::from_toml_str(
        "use_peft = true\nlora_r = 4\nlora_alpha = 8.0\nlora_target_modules = [\"all-linear\"]\n",
    )
    .unwrap();
    assert!(cfg.use_peft);
    assert_eq!(cfg.lora_config().scaling(), 2.0);
    assert_eq!(cfg.lora_targets(), TargetModules::AllLinear);

    let mut cfg = cfg;
    cfg.set("--lora-r", "0").unwrap();
    cfg.set("lora_dropout", "1.5").unwrap();
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains("lora_r") && err.contains("lora_dropout"),
        "{err}"
    );
    // Off, the adapter fields are not checked.
    cfg.use_peft = false;
    cfg.validate().unwrap();
}

#[test]
fn without_use_peft_the_model_is_unchanged() {
    let tok = tokenizer();
    let mut m = model(&tok);
    let names = m.parameter_names();
    assert!(
        attach_peft_adapters(&mut m, &GrpoConfig::default())
            .unwrap()
            .is_empty()
    );
    assert_eq!(m.parameter_names(), names);
    assert_eq!(m.trainable_parameters().len(), names.len());
}

#[test]
fn a_grpo_step_on_adapters_moves_only_adapter_weights() {
    let tmp = scratch("step");
    let dir = tmp.path();
    let tok = tokenizer();
    let mut m = model(&tok);
    let cfg = GrpoConfig {
        output_dir: dir.to_path_buf(),
        num_generations: 4,
        per_device_train_batch_size: 8,
        max_completion_length: 3,
        learning_rate: 1e-2,
        loss_type: LossType::Dapo,
        max_steps: 1,
        logging_steps: 1,
        save_steps: 10,
        seed: 3,
        use_peft: true,
        lora_r: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.0,
        lora_target_modules: Some(vec!["all-linear".into()]),
        ..GrpoConfig::default()
    };
    let targets = attach_peft_adapters(&mut m, &cfg).unwrap();
    // q, k, v, o, gate, up, down of the one block (the head is tied).
    assert_eq!(targets.len(), 7);
    let trainable: Vec<String> = m.trainable_parameters().keys().cloned().collect();
    assert_eq!(trainable.len(), 14);
    assert!(trainable.iter().all(|n| is_adapter_parameter(n)));

    let before = m.parameters();
    let mut trainer = Trainer::new(cfg, m, tok, dataset(), rewards())
        .unwrap()
        .with_progress(false);
    trainer.train_step().unwrap();
    let after = trainer.model().parameters();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let mut moved = 0;
    for (name, p) in &before {
        let same = p.to_vec::<f32>().unwrap() == after[name].to_vec::<f32>().unwrap();
        if !is_adapter_parameter(name) {
            assert!(same, "{name} is not an adapter but changed");
        } else if !same {
            moved += 1;
        }
    }
    // B starts at zero, so the first step moves the B factors.
    assert!(moved > 0, "no adapter parameter changed");
}
