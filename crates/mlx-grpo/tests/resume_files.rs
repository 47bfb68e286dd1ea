//! The files a resume reads: metrics that read back exactly (NaN and
//! infinities too), `metrics.jsonl` cut back to the checkpoint, what an
//! interrupted save leaves behind, and trainer states that cannot be
//! resumed from.

use std::collections::BTreeMap;
use std::path::Path;

use mlx_grpo::Error;
use mlx_grpo::dataset::SamplerPosition;
use mlx_grpo::trainer::checkpoint::{CheckpointManager, TrainerState};
use mlx_grpo::trainer::metrics_log::{MetricsLog, read_metrics};
use mlx_grpo::trainer::{LogRecord, RunShape, check_trainer_state};

fn record(step: usize, values: &[(&str, f64)]) -> LogRecord {
    LogRecord {
        step,
        metrics: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

fn bits(m: &BTreeMap<String, f64>) -> Vec<(String, u64)> {
    m.iter().map(|(k, v)| (k.clone(), v.to_bits())).collect()
}

/// Values whose shortest decimal form needs all 17 digits, and the
/// non-finite ones.
fn awkward_values() -> Vec<(&'static str, f64)> {
    vec![
        ("nan", f64::NAN),
        ("inf", f64::INFINITY),
        ("neg_inf", f64::NEG_INFINITY),
        ("sum", 0.1 + 0.2),
        ("from_f32", f64::from(0.1f32)),
        ("tiny", 5e-324),
        ("max", f64::MAX),
        ("neg_zero", -0.0),
        ("third", 1.0 / 3.0),
    ]
}

#[test]
fn log_records_read_back_bit_for_bit_with_nan_and_infinities() {
    let r = record(7, &awkward_values());
    let text = serde_json::to_string(&r).unwrap();
    assert!(text.contains(r#""nan":"NaN""#), "{text}");
    assert!(text.contains(r#""inf":"Infinity""#), "{text}");
    assert!(text.contains(r#""neg_inf":"-Infinity""#), "{text}");
    let back: LogRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back.step, 7);
    assert_eq!(bits(&back.metrics), bits(&r.metrics));
}

#[test]
fn null_metrics_of_older_files_read_as_nan_and_bad_strings_are_errors() {
    let back: LogRecord =
        serde_json::from_str(r#"{"step":2,"metrics":{"reward":null,"loss":1.5}}"#).unwrap();
    assert!(back.metrics["reward"].is_nan());
    assert_eq!(back.metrics["loss"], 1.5);
    assert!(
        serde_json::from_str::<LogRecord>(r#"{"step":2,"metrics":{"reward":"nan?"}}"#).is_err()
    );
}

fn state(global_step: usize) -> TrainerState {
    let mut s = TrainerState::start(3, SamplerPosition { epoch: 1, index: 2 });
    s.global_step = global_step;
    s
}

#[test]
fn trainer_state_reads_back_with_pending_nan_logs_and_counters() {
    let mut s = state(9);
    s.log_history = vec![record(4, &awkward_values()), record(8, &[("loss", 0.25)])];
    s.pending_logs = vec![
        awkward_values()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    ];
    s.num_tokens = 12345.0;
    s.generations = 9;
    s.buffered_micro_steps = 1;
    let text = serde_json::to_string_pretty(&s).unwrap();
    let back: TrainerState = serde_json::from_str(&text).unwrap();
    assert_eq!(back.global_step, 9);
    assert_eq!(back.generations, 9);
    assert_eq!(back.buffered_micro_steps, 1);
    assert_eq!(back.num_tokens, 12345.0);
    assert_eq!(bits(&back.pending_logs[0]), bits(&s.pending_logs[0]));
    for (a, b) in back.log_history.iter().zip(&s.log_history) {
        assert_eq!(bits(&a.metrics), bits(&b.metrics));
    }
}

#[test]
fn trainer_state_of_older_files_reads_with_defaults() {
    let text = r#"{"global_step":2,"sampler_position":{"epoch":0,"index":2},"seed":3,
        "log_history":[{"step":1,"metrics":{"loss":null}}],"ref_sync_counter":0}"#;
    let s: TrainerState = serde_json::from_str(text).unwrap();
    assert_eq!((s.generations, s.buffered_micro_steps), (0, 0));
    assert_eq!(s.num_tokens, 0.0);
    assert!(s.pending_logs.is_empty());
    assert!(s.log_history[0].metrics["loss"].is_nan());
}

fn write_lines(path: &Path, records: &[LogRecord], tail: &str) {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).unwrap());
        text.push('\n');
    }
    text.push_str(tail);
    std::fs::write(path, text).unwrap();
}

#[test]
fn resuming_cuts_metrics_after_the_checkpoint_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("metrics.jsonl");
    let all: Vec<LogRecord> = (1..=5)
        .map(|s| record(s, &[("loss", s as f64 / 3.0)]))
        .collect();
    // The interrupted run logged steps 1–5 and died writing step 6.
    write_lines(&path, &all, r#"{"step":6,"metr"#);
    let before = std::fs::read_to_string(&path).unwrap();
    let mut log = MetricsLog::resume(dir, all[..3].to_vec(), 3).unwrap();
    let after = std::fs::read_to_string(&path).unwrap();
    let cut = before
        .lines()
        .take(3)
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    assert_eq!(
        after, cut,
        "lines up to the checkpoint are kept as they were"
    );
    log.append(record(4, &[("loss", f64::NAN)])).unwrap();
    let steps: Vec<usize> = read_metrics(&path)
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, [1, 2, 3, 4]);
    assert!(read_metrics(&path).unwrap()[3].metrics["loss"].is_nan());
}

#[test]
fn resuming_restores_metrics_the_file_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("metrics.jsonl");
    let all: Vec<LogRecord> = (1..=4)
        .map(|s| record(s, &[("reward", f64::NAN)]))
        .collect();
    // Only the first line reached the disk.
    write_lines(&path, &all[..1], "");
    MetricsLog::resume(dir, all.clone(), 4).unwrap();
    let back = read_metrics(&path).unwrap();
    assert_eq!(
        back.iter().map(|r| r.step).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // No file at all: written from the history.
    std::fs::remove_file(&path).unwrap();
    MetricsLog::resume(dir, all, 4).unwrap();
    assert_eq!(read_metrics(&path).unwrap().len(), 4);
}

fn fake_checkpoint(dir: &Path, marker: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("trainer_state.json"), marker).unwrap();
}

#[test]
fn opening_clears_interrupted_saves_and_loses_no_complete_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fake_checkpoint(&dir.join("checkpoint-2"), "two");
    // A save of step 4 killed before its rename.
    std::fs::create_dir_all(dir.join(".tmp-checkpoint-4-999999")).unwrap();
    std::fs::write(
        dir.join(".tmp-checkpoint-4-999999/model.safetensors"),
        b"half",
    )
    .unwrap();
    // A re-save of step 2 that completed but died before removing the old copy.
    fake_checkpoint(&dir.join(".old-checkpoint-2-999998"), "two, before");
    // A re-save of step 6 killed between moving the old copy aside and
    // renaming the new one in: the old copy is the only one.
    fake_checkpoint(&dir.join(".old-checkpoint-6-999997"), "six");
    fake_checkpoint(&dir.join(".tmp-checkpoint-6-999997"), "six, new, unsynced");

    let manager = CheckpointManager::open(dir, None).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["checkpoint-2", "checkpoint-6"]);
    let read = |p: &str| std::fs::read_to_string(dir.join(p).join("trainer_state.json")).unwrap();
    assert_eq!(read("checkpoint-2"), "two");
    assert_eq!(read("checkpoint-6"), "six");
    assert_eq!(manager.latest().unwrap(), Some(dir.join("checkpoint-6")));
    // Nothing left to clear.
    assert!(manager.clear_interrupted_saves().unwrap().is_empty());
}

#[test]
fn saving_leaves_no_temporary_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let manager = CheckpointManager::open(dir, Some(1)).unwrap();
    for step in [1, 2, 2] {
        manager
            .save(step, &state(step), |tmp| {
                std::fs::create_dir_all(tmp.join("model")).unwrap();
                std::fs::write(tmp.join("model/weights"), [step as u8]).unwrap();
                Ok(())
            })
            .unwrap();
    }
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["checkpoint-2"]);
}

/// 12 prompts in batches of 2 (6 per epoch), generation batches of 2
/// micro-steps, 1 micro-step per optimizer step, 20 steps.
fn shape() -> RunShape {
    RunShape {
        seed: 3,
        total_steps: 20,
        batches_per_epoch: 6,
        micro_steps_per_generation: 2,
        micro_steps_per_step: 1,
    }
}

/// A consistent state after `step` steps of [`shape`].
fn consistent(step: usize) -> TrainerState {
    let generations = step.div_ceil(2);
    let mut s = TrainerState::start(
        3,
        SamplerPosition {
            epoch: (generations / 6) as u64,
            index: generations % 6,
        },
    );
    s.global_step = step;
    s.generations = generations as u64;
    s.buffered_micro_steps = generations * 2 - step;
    s.log_history = (1..=step).map(|i| record(i, &[("loss", 1.0)])).collect();
    s
}

fn field_error(s: &TrainerState) -> String {
    let path = Path::new("/run/checkpoint-7/trainer_state.json");
    match check_trainer_state(s, path, &shape()) {
        Err(e @ Error::InvalidCheckpoint { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("/run/checkpoint-7/trainer_state.json"),
                "{text}"
            );
            text
        }
        other => panic!("expected an InvalidCheckpoint error, got {other:?}"),
    }
}

#[test]
fn consistent_states_pass_the_checks() {
    for step in [0, 1, 2, 7, 12, 13, 20] {
        check_trainer_state(&consistent(step), Path::new("x"), &shape())
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
    }
    // Files written before the generation counter was kept.
    let mut old = consistent(7);
    old.generations = 0;
    check_trainer_state(&old, Path::new("x"), &shape()).unwrap();
    // The end of an epoch, written as index = batches per epoch.
    let mut end = consistent(12);
    end.sampler_position = SamplerPosition { epoch: 0, index: 6 };
    check_trainer_state(&end, Path::new("x"), &shape()).unwrap();
}

#[test]
fn out_of_range_counters_are_errors_naming_the_field() {
    let mut s = consistent(7);
    s.global_step = 1_000_000_000_000_000_000;
    assert!(field_error(&s).contains("`global_step`"));

    let mut s = consistent(7);
    s.sampler_position.epoch = u64::MAX;
    assert!(field_error(&s).contains("`sampler_position.epoch`"));

    let mut s = consistent(7);
    s.sampler_position.index = 7;
    assert!(field_error(&s).contains("`sampler_position.index`"));

    let mut s = consistent(7);
    s.sampler_position.epoch = 1;
    assert!(field_error(&s).contains("`sampler_position`"));

    let mut s = consistent(7);
    s.generations = 5;
    assert!(field_error(&s).contains("`generations`"));

    let mut s = consistent(7);
    s.buffered_micro_steps = 0;
    assert!(field_error(&s).contains("`buffered_micro_steps`"));

    let mut s = consistent(7);
    s.seed = 4;
    assert!(field_error(&s).contains("`seed`"));

    let mut s = consistent(7);
    s.ref_sync_counter = 8;
    assert!(field_error(&s).contains("`ref_sync_counter`"));

    let mut s = consistent(7);
    s.pending_logs = vec![BTreeMap::new(); 8];
    assert!(field_error(&s).contains("`pending_logs`"));

    let mut s = consistent(7);
    s.num_tokens = f64::NAN;
    assert!(field_error(&s).contains("`num_tokens`"));

    let mut s = consistent(7);
    s.log_history.push(record(9, &[]));
    assert!(field_error(&s).contains("`log_history`"));

    let mut s = consistent(7);
    s.log_history.swap(0, 1);
    assert!(field_error(&s).contains("`log_history`"));
}
