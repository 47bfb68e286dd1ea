//! End-to-end trainer tests on a tiny random model: exact resume, atomic
//! checkpoints, frozen parameters, and clear errors for bad inputs.

mod tiny_task;

use std::path::Path;
use tiny_task::{dataset, dense_model as model, scratch, tokenizer};

use mlx_grpo::Error;
use mlx_grpo::config::{GrpoConfig, LossType};
use mlx_grpo::dataset::Dataset;
use mlx_grpo::rewards::{AccuracyReward, RewardInput, RewardSet, per_sample};
use mlx_grpo::trainer::checkpoint::{CheckpointManager, TrainerState, read_trainer_state};
use mlx_grpo::trainer::{TrainOutput, Trainer};
use mlx_lm::Tokenizer;
use mlx_lm::loader::load_model;
use mlx_nn::{ModuleExt, ParamMap};
use mlx_tensor::Dtype;

fn config(dir: &Path, steps: i64) -> GrpoConfig {
    GrpoConfig {
        output_dir: dir.to_path_buf(),
        num_generations: 4,
        per_device_train_batch_size: 8,
        max_completion_length: 3,
        learning_rate: 1e-2,
        loss_type: LossType::Dapo,
        max_steps: steps,
        logging_steps: 1,
        save_steps: 2,
        seed: 3,
        ..GrpoConfig::default()
    }
}

fn rewards() -> RewardSet {
    // Accuracy is almost always 0 for a random model; a length reward and a
    // reward of the completion's characters give the groups a spread of
    // rewards, hence non-zero advantages (lengths alone can be all equal:
    // three-token completions rarely stop early).
    let mut set = RewardSet::new();
    set.add(AccuracyReward::default()).unwrap();
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

fn losses(history: &[mlx_grpo::trainer::LogRecord]) -> Vec<f64> {
    history.iter().map(|r| r.metrics["loss"]).collect()
}

/// A 4-step run's log and final parameters, trained straight through.
fn straight_run(name: &str, tok: &Tokenizer) -> (TrainOutput, ParamMap) {
    let tmp = scratch(name);
    let dir = tmp.path();
    let mut trainer = Trainer::new(
        config(dir, 4),
        model(tok),
        tok.clone(),
        dataset(),
        rewards(),
    )
    .unwrap()
    .with_progress(false);
    let out = trainer.train().unwrap();
    (out, trainer.model().parameters())
}

/// The same run stopped and saved after two steps (its config adjusted by
/// `first`), then resumed from that checkpoint (adjusted by `then`): the
/// resumed run's log and final parameters.
fn stopped_and_resumed(
    name: &str,
    tok: &Tokenizer,
    first: impl Fn(&mut GrpoConfig),
    then: impl Fn(&mut GrpoConfig),
) -> (TrainOutput, ParamMap) {
    let tmp = scratch(name);
    let dir = tmp.path();
    let mut cfg = config(dir, 4);
    first(&mut cfg);
    let mut trainer = Trainer::new(cfg, model(tok), tok.clone(), dataset(), rewards())
        .unwrap()
        .with_progress(false);
    trainer.train_step().unwrap();
    trainer.train_step().unwrap();
    trainer.save_checkpoint().unwrap();
    drop(trainer);
    let mut cfg = config(dir, 4);
    then(&mut cfg);
    cfg.resume_from_checkpoint = Some(dir.join("checkpoint-2"));
    let mut trainer = Trainer::new(cfg, model(tok), tok.clone(), dataset(), rewards())
        .unwrap()
        .with_progress(false);
    let out = trainer.train().unwrap();
    (out, trainer.model().parameters())
}

/// The last two logged losses and every parameter agree bit for bit.
fn assert_same_end(a: &(TrainOutput, ParamMap), b: &(TrainOutput, ParamMap), what: &str) {
    assert_eq!(a.0.global_step, b.0.global_step, "{what}");
    let tail = |h: &[mlx_grpo::trainer::LogRecord]| losses(&h[h.len() - 2..]);
    assert_eq!(tail(&a.0.log_history), tail(&b.0.log_history), "{what}");
    for (name, p) in &a.1 {
        assert_eq!(
            p.to_vec::<f32>().unwrap(),
            b.1[name].to_vec::<f32>().unwrap(),
            "{name} differs: {what}"
        );
    }
}

#[test]
fn resume_continues_the_exact_trajectory() {
    let tok = tokenizer();
    let straight = straight_run("straight", &tok);
    let resumed = stopped_and_resumed("resumed", &tok, |_| {}, |_| {});
    assert_same_end(&straight, &resumed, "resumed");
}

/// With `offload_optimizer_state` the run follows the same trajectory as
/// with the state on the device, and its checkpoints (optimizer state
/// written from host memory) resume in either placement.
#[test]
fn offloaded_optimizer_state_trains_and_resumes_the_same() {
    let tok = tokenizer();
    let straight = straight_run("offload-straight", &tok);
    for on_host in [true, false] {
        let resumed = stopped_and_resumed(
            &format!("offload-resumed-{on_host}"),
            &tok,
            |c| c.offload_optimizer_state = true,
            |c| c.offload_optimizer_state = on_host,
        );
        assert_same_end(
            &straight,
            &resumed,
            &format!("state on the host, resumed with it on the host: {on_host}"),
        );
    }
}

#[test]
fn interrupted_save_keeps_the_previous_checkpoint() {
    let tmp = scratch("atomic");
    let dir = tmp.path();
    let tok = tokenizer();
    let mut trainer = Trainer::new(
        config(dir, 2),
        model(&tok),
        tok.clone(),
        dataset(),
        rewards(),
    )
    .unwrap()
    .with_progress(false);
    trainer.train().unwrap();
    let good = dir.join("checkpoint-2");
    assert!(good.join("trainer_state.json").is_file());

    // A save that dies half-way (the writer fails after writing some files).
    let manager = CheckpointManager::new(dir, None);
    let state = read_trainer_state(&good).unwrap();
    let failed = manager.save(
        4,
        &TrainerState {
            global_step: 4,
            ..state.clone()
        },
        |tmp| {
            std::fs::write(tmp.join("model.safetensors"), b"half").unwrap();
            Err(Error::InvalidConfig {
                message: "killed".into(),
            })
        },
    );
    assert!(failed.is_err());
    // A process killed mid-save leaves its temporary directory behind.
    std::fs::create_dir_all(dir.join(".tmp-checkpoint-6-999999")).unwrap();
    std::fs::write(
        dir.join(".tmp-checkpoint-6-999999/model.safetensors"),
        b"partial",
    )
    .unwrap();

    assert_eq!(manager.latest().unwrap(), Some(good.clone()));
    let reloaded = load_model(good.join("model"), Some(Dtype::F32)).unwrap();
    assert_eq!(
        reloaded.parameter_names(),
        trainer.model().parameter_names()
    );
}

#[test]
fn frozen_parameters_do_not_move() {
    let tmp = scratch("frozen");
    let dir = tmp.path();
    let tok = tokenizer();
    let mut m = model(&tok);
    m.freeze_path("model.embed_tokens");
    let before = m.parameters();
    let mut trainer = Trainer::new(config(dir, 1), m, tok, dataset(), rewards())
        .unwrap()
        .with_progress(false);
    trainer.train_step().unwrap();
    let after = trainer.model().parameters();
    let mut moved = 0;
    for (name, p) in &before {
        let same = p.to_vec::<f32>().unwrap() == after[name].to_vec::<f32>().unwrap();
        if name.starts_with("model.embed_tokens") {
            assert!(same, "{name} is frozen but changed");
        } else if !same {
            moved += 1;
        }
    }
    assert!(moved > 0, "no trainable parameter changed");
}

#[test]
fn nan_rewards_empty_dataset_and_bad_counts_are_clear_errors() {
    let tmp = scratch("errors");
    let dir = tmp.path();
    let tok = tokenizer();

    let mut nan = RewardSet::new();
    nan.add(per_sample("always_nan", |_: &RewardInput| f32::NAN))
        .unwrap();
    let mut trainer = Trainer::new(config(dir, 1), model(&tok), tok.clone(), dataset(), nan)
        .unwrap()
        .with_progress(false);
    let err = trainer.train_step().unwrap_err().to_string();
    assert!(
        err.to_lowercase().contains("nan") || err.contains("scor"),
        "{err}"
    );

    assert!(Dataset::from_rows(Vec::new(), "empty").is_err());

    let mut wrong = RewardSet::new();
    wrong
        .add(mlx_grpo::rewards::reward_fn(
            "short",
            |_: &[RewardInput]| Ok(vec![1.0]),
        ))
        .unwrap();
    let mut trainer = Trainer::new(config(dir, 1), model(&tok), tok, dataset(), wrong)
        .unwrap()
        .with_progress(false);
    let err = trainer.train_step().unwrap_err().to_string();
    assert!(err.contains("short"), "{err}");
}
