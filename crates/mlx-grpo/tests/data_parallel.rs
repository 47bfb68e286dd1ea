//! Data-parallel training: two ring ranks on 127.0.0.1 (each rank this test
//! binary re-invoked to run one ignored `rank_*` test) train the same
//! parameters as one process with the same global batch, and ranks started
//! with different configs fail at start instead of hanging.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mlx_grpo::config::{GrpoConfig, LossType, Optim};
use mlx_grpo::dataset::{Dataset, Prompt, Row};
use mlx_grpo::rewards::{RewardInput, RewardSet, per_sample};
use mlx_grpo::trainer::Trainer;
use mlx_launch::{Backend as LaunchBackend, run_test_ranks};
use mlx_lm::Tokenizer;
use mlx_lm::loader::random_model;
use mlx_lm::models::{ModelConfig, Qwen3Config};
use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_nn::ModuleExt;
use mlx_tensor::Dtype;
use mlx_tensor::distributed::{Backend, Group};
use tempfile::TempDir;

/// Optimizer steps of every run.
const STEPS: i64 = 2;
/// One comparison of two ranks against one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// `dapo`, 4 completions per rank, generation chunks of 3 prompts (one
    /// process batches prompts 0-2 and 3, each rank its own 2 prompts):
    /// the chunks change no completion.
    Dapo,
    /// `grpo`, 4 completions per rank, no `generation_chunk_prompts`: each
    /// rank generates only its 2 prompts, one process all 4 at once.
    Grpo,
    /// `dapo` with one prompt of 4 generations per micro-step, 2 of its
    /// completions on each rank, no `generation_chunk_prompts`: the group
    /// straddles the ranks (each samples only its half of it) and its
    /// advantages need both halves.
    Straddle,
    /// `dapo` as [`Case::Grpo`] lays it out, with generation overlapped with
    /// training (and the rollout correction it requires): each rank samples
    /// its rows of the next generation on its second thread.
    Overlap,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Dapo => "dapo",
            Case::Grpo => "grpo",
            Case::Straddle => "straddle",
            Case::Overlap => "overlap",
        }
    }

    fn loss(self) -> LossType {
        match self {
            Case::Grpo => LossType::Grpo,
            Case::Dapo | Case::Straddle | Case::Overlap => LossType::Dapo,
        }
    }

    /// Completions per rank per micro-step in the two-rank runs.
    fn per_rank(self) -> usize {
        match self {
            Case::Straddle => 2,
            Case::Dapo | Case::Grpo | Case::Overlap => 4,
        }
    }

    fn num_generations(self) -> usize {
        match self {
            Case::Straddle => 4,
            Case::Dapo | Case::Grpo | Case::Overlap => 2,
        }
    }

    fn chunk_prompts(self) -> Option<usize> {
        match self {
            Case::Dapo => Some(3),
            Case::Grpo | Case::Straddle | Case::Overlap => None,
        }
    }
}
/// Largest relative difference allowed between a parameter of the
/// two-rank run and of the one-process run (the ranks average two halves
/// of each gradient where one process sums them in one reduction).
const TOLERANCE: f64 = 1e-5;

fn tokenizer() -> Tokenizer {
    VocabTokenizerBuilder::char_level("0123456789+=".chars())
        .pad("<pad>")
        .eos("<|endoftext|>")
        .build()
        .expect("tokenizer")
}

fn model(tok: &Tokenizer) -> mlx_lm::models::Model {
    let config: Qwen3Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tok.vocab_size(), "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "rope_theta": 10000.0, "max_position_embeddings": 32, "tie_word_embeddings": true
    }))
    .expect("model config");
    random_model(&ModelConfig::Qwen3(config), 7, Dtype::F32).expect("model")
}

fn dataset() -> Dataset {
    let rows = (0..12u32)
        .map(|i| Row {
            prompt: Prompt::Text(format!("{}+{}=", i % 5, i / 5)),
            answer: Some((i % 5 + i / 5).to_string()),
            extra: Default::default(),
        })
        .collect();
    Dataset::from_rows(rows, "sums").expect("dataset")
}

fn rewards() -> RewardSet {
    // A reward of the completion's characters gives the groups of a random
    // model a spread of rewards, hence non-zero advantages.
    let mut set = RewardSet::new();
    set.add(per_sample("characters", |x: &RewardInput| {
        x.completion
            .raw_text
            .chars()
            .map(|c| (u32::from(c) % 7) as f32)
            .sum::<f32>()
    }))
    .expect("reward");
    set
}

/// Two optimizer steps of two accumulated micro-steps, each micro-step
/// its own generation of `per_device` completions per process.
fn config(dir: &Path, case: Case, per_device: usize) -> GrpoConfig {
    GrpoConfig {
        generation_chunk_prompts: case.chunk_prompts(),
        output_dir: dir.to_path_buf(),
        num_generations: case.num_generations(),
        per_device_train_batch_size: per_device,
        gradient_accumulation_steps: 2,
        steps_per_generation: Some(1),
        max_completion_length: 4,
        // Plain SGD without clipping: the update is the averaged gradient
        // itself, so any error in its scale shows in the parameters.
        optim: Optim::Sgd,
        max_grad_norm: 0.0,
        learning_rate: 1.0,
        loss_type: case.loss(),
        max_steps: STEPS,
        logging_steps: 1,
        save_steps: 100,
        seed: 5,
        overlap_generation: case == Case::Overlap,
        vllm_importance_sampling_correction: case == Case::Overlap,
        ..GrpoConfig::default()
    }
}

/// Where the ranks of the parent test `parent` write `what` (the ranks are
/// its children, so they find it by the parent's process id).
fn shared_dir(parent: u32, what: &str) -> PathBuf {
    std::env::temp_dir().join(shared_dir_name(parent, what))
}

fn shared_dir_name(parent: u32, what: &str) -> String {
    format!("mlx-grpo-dp-{parent}-{what}")
}

/// Creates this test's [`shared_dir`] for `what` for its ranks; it is
/// removed, with all the ranks wrote, when the guard is dropped.
fn create_shared_dir(what: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&shared_dir_name(std::process::id(), what))
        .rand_bytes(0)
        .tempdir_in(std::env::temp_dir())
        .expect("create the ranks' shared directory")
}

type Params = BTreeMap<String, Vec<f32>>;

/// Trains `config` (as one rank of `group` when given) and returns the
/// parameters and the logged losses.
fn train(config: GrpoConfig, group: Option<Group>) -> (Params, Vec<f64>) {
    let tok = tokenizer();
    let mut trainer = match group {
        Some(group) => Trainer::new_in_group(
            config,
            model(&tok),
            tok.clone(),
            dataset(),
            rewards(),
            group,
        ),
        None => Trainer::new(config, model(&tok), tok.clone(), dataset(), rewards()),
    }
    .expect("trainer")
    .with_progress(false);
    let out = trainer.train().expect("train");
    let params = trainer
        .model()
        .parameters()
        .into_iter()
        .map(|(k, v)| (k, v.to_vec::<f32>().expect("read")))
        .collect();
    let losses = out.log_history.iter().map(|r| r.metrics["loss"]).collect();
    (params, losses)
}

/// One rank's body: trains its half of the batch and writes the
/// parameters' bits to a file the parent reads.
fn rank_body(case: Case) {
    let group = Group::init(Backend::Ring).expect("ring group");
    assert_eq!(group.size(), 2);
    let rank = group.rank();
    let dir = shared_dir(std::os::unix::process::parent_id(), case.name());
    let (params, losses) = train(config(&dir, case, case.per_rank()), Some(group));
    let bits: BTreeMap<String, Vec<u32>> = params
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(f32::to_bits).collect()))
        .collect();
    let path = dir.join(format!("params-rank-{rank}.json"));
    std::fs::write(&path, serde_json::to_string(&(bits, losses)).expect("json")).expect("write");
    println!("rank {rank}: trained");
}

fn read_rank(dir: &Path, rank: usize) -> (Params, Vec<f64>) {
    let path = dir.join(format!("params-rank-{rank}.json"));
    let text = std::fs::read_to_string(&path).expect("rank output");
    let (bits, losses): (BTreeMap<String, Vec<u32>>, Vec<f64>) =
        serde_json::from_str(&text).expect("parse");
    let params = bits
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(f32::from_bits).collect()))
        .collect();
    (params, losses)
}

/// The largest relative difference between two parameter sets (relative to
/// the largest magnitude of each tensor).
fn max_relative_difference(a: &Params, b: &Params) -> f64 {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "parameter names"
    );
    let mut worst = 0.0f64;
    for (name, x) in a {
        let y = &b[name];
        assert_eq!(x.len(), y.len(), "{name}");
        let scale = x.iter().map(|v| f64::from(v.abs())).fold(1e-12, f64::max);
        for (u, v) in x.iter().zip(y) {
            worst = worst.max(f64::from(u - v).abs() / scale);
        }
    }
    worst
}

/// Two ranks of `case.per_rank()` completions per micro-step against one
/// process of twice as many.
fn two_ranks_match_one_process(case: Case, rank_test: &str) {
    let shared = create_shared_dir(case.name());
    let dir = shared.path();
    let run = run_test_ranks(LaunchBackend::Ring, 2, rank_test, Duration::from_secs(60))
        .expect("start ranks");
    for rank in 0..2 {
        let output = run.output_of(rank);
        assert!(
            output.contains(&format!("rank {rank}: trained")),
            "rank {rank} did not finish; {}:\n{output}",
            run.report.summary()
        );
    }
    assert!(run.report.success(), "{}", run.report.summary());
    let (rank0, losses0) = read_rank(dir, 0);
    let (rank1, losses1) = read_rank(dir, 1);
    assert_eq!(rank0, rank1, "the ranks' parameters differ");
    assert_eq!(losses0, losses1, "the ranks' logged losses differ");
    // Only rank 0 writes the run's files.
    assert!(dir.join("metrics.jsonl").is_file());
    assert!(dir.join(format!("checkpoint-{STEPS}")).is_dir());

    let single_dir = dir.join("single");
    let (single, single_losses) = train(config(&single_dir, case, 2 * case.per_rank()), None);
    let initial: Params = model(&tokenizer())
        .parameters()
        .into_iter()
        .map(|(k, v)| (k, v.to_vec::<f32>().expect("read")))
        .collect();
    let moved = max_relative_difference(&single, &initial);
    assert!(moved > 100.0 * TOLERANCE, "training barely moved: {moved}");
    let diff = max_relative_difference(&rank0, &single);
    println!(
        "{}: two ranks vs one process: max relative parameter difference {diff:.3e} \
         (training moved them by {moved:.3e}); losses {losses0:?} vs {single_losses:?}",
        case.name()
    );
    assert!(diff <= TOLERANCE, "{diff} > {TOLERANCE}");
    for (a, b) in losses0.iter().zip(&single_losses) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-3), "loss {a} vs {b}");
    }
}

#[test]
fn two_ring_ranks_train_like_one_process_dapo() {
    two_ranks_match_one_process(Case::Dapo, "rank_train_dapo");
}

#[test]
fn two_ring_ranks_train_like_one_process_grpo() {
    two_ranks_match_one_process(Case::Grpo, "rank_train_grpo");
}

/// One rank of [`two_ring_ranks_train_like_one_process_dapo`].
#[test]
#[ignore = "a rank body, started by two_ring_ranks_train_like_one_process_dapo"]
fn rank_train_dapo() {
    rank_body(Case::Dapo);
}

/// One rank of [`two_ring_ranks_train_like_one_process_grpo`].
#[test]
#[ignore = "a rank body, started by two_ring_ranks_train_like_one_process_grpo"]
fn rank_train_grpo() {
    rank_body(Case::Grpo);
}

#[test]
fn two_ring_ranks_train_like_one_process_with_a_group_across_ranks() {
    two_ranks_match_one_process(Case::Straddle, "rank_train_straddle");
}

/// One rank of [`two_ring_ranks_train_like_one_process_with_a_group_across_ranks`].
#[test]
#[ignore = "a rank body, started by two_ring_ranks_train_like_one_process_with_a_group_across_ranks"]
fn rank_train_straddle() {
    rank_body(Case::Straddle);
}

#[test]
fn two_ring_ranks_train_like_one_process_with_overlapped_generation() {
    two_ranks_match_one_process(Case::Overlap, "rank_train_overlap");
}

#[test]
#[ignore = "a rank body, started by two_ring_ranks_train_like_one_process_with_overlapped_generation"]
fn rank_train_overlap() {
    rank_body(Case::Overlap);
}

#[test]
fn ranks_with_different_configs_fail_at_start() {
    let run = run_test_ranks(
        LaunchBackend::Ring,
        2,
        "rank_mismatched_config",
        Duration::from_secs(60),
    )
    .expect("start ranks");
    for rank in 0..2 {
        let output = run.output_of(rank);
        assert!(
            output.contains(&format!("rank {rank}: mismatch reported")),
            "rank {rank} did not report the mismatch; {}:\n{output}",
            run.report.summary()
        );
    }
    assert!(run.report.success(), "{}", run.report.summary());
}

/// One rank of [`ranks_with_different_configs_fail_at_start`]: rank 1 has
/// another learning rate.
#[test]
#[ignore = "a rank body, started by ranks_with_different_configs_fail_at_start"]
fn rank_mismatched_config() {
    let group = Group::init(Backend::Ring).expect("ring group");
    let rank = group.rank();
    let dir = tempfile::tempdir().expect("create the rank's directory");
    let mut cfg = config(dir.path(), Case::Dapo, Case::Dapo.per_rank());
    cfg.learning_rate *= 1.0 + rank as f64;
    let tok = tokenizer();
    let trainer =
        Trainer::new(cfg, model(&tok), tok.clone(), dataset(), rewards()).expect("trainer");
    let err = match trainer.with_group(group) {
        Ok(_) => panic!("rank {rank}: a mismatched config was accepted"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("disagree"), "{err}");
    println!("rank {rank}: mismatch reported");
}

#[test]
fn two_ring_ranks_resume_mid_generation_exactly() {
    let _shared = create_shared_dir("resume");
    let run = run_test_ranks(
        LaunchBackend::Ring,
        2,
        "rank_resume_mid_generation",
        Duration::from_secs(60),
    )
    .expect("start ranks");
    for rank in 0..2 {
        let output = run.output_of(rank);
        assert!(
            output.contains(&format!("rank {rank}: resumed exactly")),
            "rank {rank} did not finish; {}:\n{output}",
            run.report.summary()
        );
    }
    assert!(run.report.success(), "{}", run.report.summary());
}

/// One rank of [`two_ring_ranks_resume_mid_generation_exactly`]: a run of
/// three steps, two micro-batches per generation batch and no
/// accumulation, against the same run saved after its first step (so each
/// rank's checkpoint keeps its half of the batch) and resumed.
#[test]
#[ignore = "a rank body, started by two_ring_ranks_resume_mid_generation_exactly"]
fn rank_resume_mid_generation() {
    let group = Group::init(Backend::Ring).expect("ring group");
    let rank = group.rank();
    let root = shared_dir(std::os::unix::process::parent_id(), "resume");
    let settings = |dir: &Path| {
        let mut cfg = config(dir, Case::Dapo, Case::Dapo.per_rank());
        cfg.gradient_accumulation_steps = 1;
        cfg.steps_per_generation = Some(2);
        // The third step draws a new generation batch after the resume.
        cfg.max_steps = 3;
        cfg
    };
    let tok = tokenizer();
    let start = |cfg: GrpoConfig| {
        Trainer::new(cfg, model(&tok), tok.clone(), dataset(), rewards())
            .expect("trainer")
            .with_progress(false)
            .with_group(group.clone())
            .expect("group")
    };
    let mut straight = start(settings(&root.join("straight")));
    straight.train().expect("train");
    let want = straight.model().parameters();

    let dir = root.join("resumed");
    let mut first = start(settings(&dir));
    first.train_step().expect("step");
    let checkpoint = first.save_checkpoint().expect("save");
    drop(first);
    if rank == 1 {
        assert!(
            checkpoint
                .join("rollout_buffer.rank-1.safetensors")
                .is_file()
        );
    }
    let mut cfg = settings(&dir);
    cfg.resume_from_checkpoint = Some(checkpoint);
    let mut resumed = start(cfg);
    resumed.train().expect("resumed train");
    for (name, p) in resumed.model().parameters() {
        let same = p.to_vec::<f32>().expect("read") == want[&name].to_vec::<f32>().expect("read");
        assert!(same, "rank {rank}: {name} differs after the resume");
    }
    println!("rank {rank}: resumed exactly");
}
