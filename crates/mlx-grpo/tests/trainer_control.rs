//! Steering a tiny real run between steps: pause (no step is taken while
//! paused), save now (a checkpoint of the current step, also while
//! paused), stop (a checkpoint, then `train` returns early), through the
//! shared handle and through the control file; and the samples the trainer
//! writes for watchers.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use mlx_grpo::config::{GrpoConfig, LossType};
use mlx_grpo::dataset::{Dataset, Prompt, Row};
use mlx_grpo::rewards::{AccuracyReward, RewardInput, RewardSet, per_sample};
use mlx_grpo::trainer::checkpoint::read_trainer_state;
use mlx_grpo::trainer::control::{CONTROL_FILE, SAMPLES_FILE};
use mlx_grpo::trainer::{
    ControlRequest, RunState, RunStatus, SampleRecord, TrainOutput, Trainer, TrainerControl,
};
use mlx_lm::loader::random_model;
use mlx_lm::models::{ModelConfig, Qwen3Config};
use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_tensor::Dtype;

/// Far more steps than a test waits for: every run here ends by `stop`.
const TOTAL_STEPS: i64 = 1000;
/// The longest a test waits for the trainer to reach a state.
const PATIENCE: Duration = Duration::from_secs(60);

/// Trains a tiny random model into `dir` on its own thread (MLX arrays stay
/// there), with `control` attached when given and samples written.
fn spawn_run(dir: &Path, control: Option<TrainerControl>) -> Option<Run> {
    let dir = dir.to_path_buf();
    Some(thread::spawn(move || {
        let tok = VocabTokenizerBuilder::char_level("0123456789+=".chars())
            .pad("<pad>")
            .eos("<|endoftext|>")
            .build()?;
        let config: Qwen3Config = serde_json::from_value(serde_json::json!({
            "vocab_size": tok.vocab_size(), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 16, "rope_theta": 10000.0, "max_position_embeddings": 32,
            "tie_word_embeddings": true
        }))
        .map_err(|e| mlx_grpo::Error::InvalidConfig {
            message: e.to_string(),
        })?;
        let model = random_model(&ModelConfig::Qwen3(config), 7, Dtype::F32)?;
        let rows = (0..12u32)
            .map(|i| Row {
                prompt: Prompt::Text(format!("{}+{}=", i % 5, i / 5)),
                answer: Some((i % 5 + i / 5).to_string()),
                extra: Default::default(),
            })
            .collect();
        let dataset = Dataset::from_rows(rows, "sums")?;
        let mut rewards = RewardSet::new();
        rewards.add(AccuracyReward::default())?;
        rewards.add(per_sample("length", |x: &RewardInput| {
            x.completion.num_tokens as f32
        }))?;
        let cfg = GrpoConfig {
            output_dir: dir,
            num_generations: 4,
            per_device_train_batch_size: 8,
            max_completion_length: 3,
            learning_rate: 1e-2,
            loss_type: LossType::Dapo,
            max_steps: TOTAL_STEPS,
            logging_steps: 1,
            save_steps: TOTAL_STEPS as usize,
            seed: 3,
            ..GrpoConfig::default()
        };
        let mut trainer = Trainer::new(cfg, model, tok, dataset, rewards)?
            .with_progress(false)
            .with_samples(true);
        if let Some(control) = control {
            trainer = trainer.with_control(control);
        }
        trainer.train()
    }))
}

/// Joins a run that was asked to stop.
fn finish(run: Option<Run>) -> TrainOutput {
    run.expect("the run's thread").join().unwrap().unwrap()
}

/// A run's thread: joined here when it ends before the test expects it to,
/// so that its error is reported.
type Run = thread::JoinHandle<mlx_grpo::Result<TrainOutput>>;

/// Waits until the run's status satisfies `ready`; returns that status.
fn wait_for(
    dir: &Path,
    run: &mut Option<Run>,
    what: &str,
    ready: impl Fn(&RunStatus) -> bool,
) -> RunStatus {
    let start = Instant::now();
    loop {
        if run.as_ref().is_some_and(|r| r.is_finished()) {
            let ended = run.take().map(|r| r.join());
            panic!("the run ended before {what}: {ended:?}");
        }
        if let Ok(Some(status)) = RunStatus::read(dir)
            && ready(&status)
        {
            return status;
        }
        assert!(start.elapsed() < PATIENCE, "the run never got {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn checkpoint_step(dir: &Path, step: usize) -> PathBuf {
    let path = dir.join(format!("checkpoint-{step}"));
    let state = read_trainer_state(&path).unwrap();
    assert_eq!(state.global_step, step, "{}", path.display());
    path
}

#[test]
fn pause_save_and_stop_through_the_handle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let control = TrainerControl::new();
    let mut run = spawn_run(dir, Some(control.clone()));
    let running = wait_for(dir, &mut run, "to step 2", |s| s.step >= 2);
    assert_eq!(running.total_steps, TOTAL_STEPS as usize);

    control.pause();
    let paused = wait_for(dir, &mut run, "paused", |s| s.state == RunState::Paused);
    thread::sleep(Duration::from_millis(300));
    let still = RunStatus::read(dir).unwrap().unwrap();
    assert_eq!(still.state, RunState::Paused);
    assert_eq!(still.step, paused.step, "a step was taken while paused");

    control.request_save();
    let saved = wait_for(dir, &mut run, "a save while paused", |s| {
        s.last_checkpoint.is_some() && s.state == RunState::Paused
    });
    assert_eq!(saved.step, paused.step);
    assert_eq!(
        saved.last_checkpoint,
        Some(checkpoint_step(dir, paused.step))
    );

    control.resume();
    wait_for(dir, &mut run, "past the pause", |s| {
        s.step >= paused.step + 2
    });
    control.request_stop();
    let out = finish(run);
    assert!(out.global_step >= paused.step + 2 && out.global_step < TOTAL_STEPS as usize);
    let last = checkpoint_step(dir, out.global_step);
    assert_eq!(out.last_checkpoint.as_deref(), Some(last.as_path()));
    let stopped = RunStatus::read(dir).unwrap().unwrap();
    assert_eq!(stopped.state, RunState::Stopped);
    assert_eq!(stopped.step, out.global_step);
    assert_eq!(stopped.last_checkpoint, Some(last));
    // One record per step taken.
    assert_eq!(out.log_history.len(), out.global_step);
}

#[test]
fn the_control_file_steers_a_run_from_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut run = spawn_run(dir, None);
    wait_for(dir, &mut run, "to step 1", |s| s.step >= 1);
    let file = dir.join(CONTROL_FILE);
    ControlRequest {
        paused: true,
        save: 1,
        stop: false,
    }
    .write(&file)
    .unwrap();
    let paused = wait_for(dir, &mut run, "paused and saved", |s| {
        s.state == RunState::Paused && s.last_checkpoint.is_some()
    });
    checkpoint_step(dir, paused.step);
    ControlRequest {
        paused: true,
        save: 1,
        stop: true,
    }
    .write(&file)
    .unwrap();
    let out = finish(run);
    // Stopped while paused: no step after the pause.
    assert_eq!(out.global_step, paused.step);
    assert_eq!(
        RunStatus::read(dir).unwrap().unwrap().state,
        RunState::Stopped
    );
}

#[test]
fn samples_carry_each_reward_and_their_weighted_sum() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let control = TrainerControl::new();
    let mut run = spawn_run(dir, Some(control.clone()));
    wait_for(dir, &mut run, "to step 2", |s| s.step >= 2);
    control.request_stop();
    let out = finish(run);
    let text = std::fs::read_to_string(dir.join(SAMPLES_FILE)).unwrap();
    let samples: Vec<SampleRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One generation batch per step here: 8 completions (2 prompts x 4).
    assert_eq!(samples.len(), 8 * out.global_step);
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(s.step, i / 8 + 1);
        let names: Vec<&str> = s.rewards.keys().map(String::as_str).collect();
        assert_eq!(names, ["accuracy_reward", "length"]);
        // Default weights are 1: the reward is the plain sum.
        let sum: f64 = s.rewards.values().sum();
        assert!((s.reward.unwrap() - sum).abs() < 1e-5, "{s:?}");
        assert_eq!(s.rewards["length"], s.num_tokens as f64);
        assert!(s.prompt.ends_with('='));
    }
}
