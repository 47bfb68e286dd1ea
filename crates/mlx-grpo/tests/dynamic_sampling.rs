//! Dynamic sampling in the trainer: the batch fills with informative groups
//! and only groups of one reward are dropped; the cap trains on the kept
//! groups or pads with dropped ones; the metrics count rounds and drops;
//! a run resumes exactly. The rewards make groups uniform by construction:
//! every completion of a prompt `a+0=` (or, in the cap tests, of every
//! prompt but `1+1=`) gets the same reward, the others the sum of their
//! characters' codes.

mod resume_support;
mod tiny_task;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use mlx_grpo::config::{DynamicSamplingOnCap, GrpoConfig};
use mlx_grpo::rewards::{RewardInput, RewardSet, per_sample};
use mlx_grpo::trainer::checkpoint::read_trainer_state;
use mlx_grpo::trainer::dynamic_sampling::names;
use mlx_grpo::trainer::{RolloutSample, Trainer, TrainerCallback};
use mlx_lm::Tokenizer;
use resume_support::{Scenario, assert_exact_resume, base_config, dense_model};
use tiny_task::{dataset, scratch, tokenizer};

/// The reward of a completion of `prompt`: constant for the prompts
/// `uniform` selects, else the sum of the completion's character codes.
fn reward_of(prompt: &str, text: &str, uniform: fn(&str) -> bool) -> f32 {
    if uniform(prompt) {
        0.5
    } else {
        text.chars().map(|c| c as u32).sum::<u32>() as f32
    }
}

fn plus_zero(prompt: &str) -> bool {
    prompt.ends_with("+0=")
}

fn all_but_one_plus_one(prompt: &str) -> bool {
    prompt != "1+1="
}

fn reward_set(uniform: fn(&str) -> bool) -> RewardSet {
    let mut set = RewardSet::new();
    set.add(per_sample("chars", move |x: &RewardInput| {
        reward_of(x.prompt.last_user_text(), &x.completion.raw_text, uniform)
    }))
    .unwrap();
    set
}

fn plus_zero_rewards() -> RewardSet {
    reward_set(plus_zero)
}

/// What the callbacks saw, in order.
#[derive(Debug, Clone)]
enum Event {
    /// One generation round: `(dataset row, completion text)` per completion.
    Round(Vec<(usize, String)>),
    /// A finished batch: `(prompt, completion text)` per completion.
    Batch(Vec<(String, String)>),
    /// A step's metrics.
    Step(BTreeMap<String, f64>),
}

struct Recorder {
    tokenizer: Tokenizer,
    events: Rc<RefCell<Vec<Event>>>,
}

impl TrainerCallback for Recorder {
    fn on_rollout(&mut self, samples: &mut [RolloutSample]) {
        let round = samples
            .iter()
            .map(|s| {
                let text = self.tokenizer.decode(&s.completion_ids, true).unwrap();
                (s.row_index, text)
            })
            .collect();
        self.events.borrow_mut().push(Event::Round(round));
    }

    fn on_advantages(&mut self, inputs: &[RewardInput], _advantages: &mut [f32]) {
        let batch = inputs
            .iter()
            .map(|x| {
                (
                    x.prompt.last_user_text().to_string(),
                    x.completion.raw_text.clone(),
                )
            })
            .collect();
        self.events.borrow_mut().push(Event::Batch(batch));
    }

    fn on_step_end(&mut self, _step: usize, metrics: &BTreeMap<String, f64>) {
        self.events.borrow_mut().push(Event::Step(metrics.clone()));
    }
}

const G: usize = 4;

/// Trains `steps` steps of two prompts per generation batch (two
/// micro-batches of four) with dynamic sampling, recording the events.
fn run(
    name: &str,
    uniform: fn(&str) -> bool,
    steps: i64,
    adjust: impl FnOnce(&mut GrpoConfig),
) -> Vec<Event> {
    let dir = scratch(name);
    let tok = tokenizer();
    let mut cfg = base_config(dir.path(), steps);
    cfg.steps_per_generation = Some(2);
    cfg.dynamic_sampling = true;
    adjust(&mut cfg);
    let events = Rc::new(RefCell::new(Vec::new()));
    let recorder = Recorder {
        tokenizer: tok.clone(),
        events: events.clone(),
    };
    let mut trainer = Trainer::new(cfg, dense_model(&tok), tok, dataset(), reward_set(uniform))
        .unwrap()
        .with_progress(false)
        .with_callback(recorder);
    trainer.train().unwrap();

    events.borrow().clone()
}

/// A generation: its rounds' groups, the batch it trained on, and the
/// metrics of its steps.
struct Generation {
    groups: Vec<Vec<(String, String)>>,
    batch: Vec<(String, String)>,
    rounds: usize,
    steps: Vec<BTreeMap<String, f64>>,
}

fn generations(events: &[Event]) -> Vec<Generation> {
    let rows = dataset();
    let prompt = |row: usize| rows.rows()[row].prompt.last_user_text().to_string();
    let mut out: Vec<Generation> = Vec::new();
    let mut pending: Vec<Vec<(String, String)>> = Vec::new();
    let mut rounds = 0;
    for event in events {
        match event {
            Event::Round(samples) => {
                rounds += 1;
                for group in samples.chunks(G) {
                    pending.push(group.iter().map(|(r, t)| (prompt(*r), t.clone())).collect());
                }
            }
            Event::Batch(batch) => out.push(Generation {
                groups: std::mem::take(&mut pending),
                batch: batch.clone(),
                rounds: std::mem::take(&mut rounds),
                steps: Vec::new(),
            }),
            Event::Step(m) => out
                .last_mut()
                .expect("a step before a batch")
                .steps
                .push(m.clone()),
        }
    }
    out
}

fn is_uniform(group: &[(String, String)], uniform: fn(&str) -> bool) -> bool {
    let rewards: Vec<f32> = group
        .iter()
        .map(|(p, t)| reward_of(p, t, uniform))
        .collect();
    rewards.iter().all(|&r| r == rewards[0])
}

#[test]
fn fills_the_batch_dropping_only_uniform_groups() {
    let events = run("dynamic-fill", plus_zero, 6, |c| {
        c.dynamic_sampling_max_extra_rounds = 8;
        // Slow enough that the policy still samples varied completions
        // (informative groups) in its third generation.
        c.learning_rate = 1e-3;
    });
    let gens = generations(&events);
    assert_eq!(gens.len(), 3);
    let mut dropped_any = false;
    for (k, round) in gens.iter().enumerate() {
        let informative: Vec<&Vec<(String, String)>> = gens[k]
            .groups
            .iter()
            .filter(|g| !is_uniform(g, plus_zero))
            .collect();
        let dropped = round.groups.len() - informative.len();
        dropped_any |= dropped > 0;
        // The batch is full: the first two informative groups, in order.
        assert!(
            informative.len() >= 2,
            "generation {k}: the rounds found too few groups"
        );
        let expected: Vec<(String, String)> = informative[..2]
            .iter()
            .flat_map(|g| g.iter().cloned())
            .collect();
        assert_eq!(round.batch, expected, "generation {k}");
        assert!(
            round.batch.iter().all(|(p, _)| !plus_zero(p)),
            "generation {k}"
        );
        // Rounds stop as soon as the batch is full.
        let last_round = &round.groups[round.groups.len() - 2..];
        assert!(
            last_round.iter().any(|g| !is_uniform(g, plus_zero)),
            "generation {k}"
        );
        assert_eq!(round.steps.len(), 2);
        for m in &round.steps {
            assert_eq!(
                m[names::GENERATION_ROUNDS],
                round.rounds as f64,
                "generation {k}"
            );
            assert_eq!(
                m[names::FRAC_GROUPS_DROPPED],
                dropped as f64 / round.groups.len() as f64,
                "generation {k}"
            );
            assert_eq!(m[names::FRAC_BATCH_FILLED], 1.0);
            assert_eq!(m["frac_reward_zero_std"], 0.0);
        }
    }
    assert!(
        dropped_any,
        "no uniform group was drawn: the test shows nothing"
    );
}

/// The prompts of a batch, one per group.
fn batch_prompts(batch: &[(String, String)]) -> Vec<String> {
    batch.chunks(G).map(|g| g[0].0.clone()).collect()
}

fn cap_run(name: &str, on_cap: DynamicSamplingOnCap) -> Vec<Generation> {
    // Unshuffled, batches of two prompts: rows (0, 1), (2, 3), (4, 5), (6, 7),
    // i.e. 0+0 1+0 | 2+0 3+0 | 4+0 0+1 | 1+1 2+1. Only 1+1 is informative.
    let events = run(name, all_but_one_plus_one, 4, |c| {
        c.shuffle_dataset = false;
        c.dynamic_sampling_max_extra_rounds = 1;
        c.dynamic_sampling_on_cap = on_cap;
    });
    let gens = generations(&events);
    assert_eq!(gens.len(), 2);
    for round in &gens {
        assert_eq!(round.rounds, 2, "the cap of one extra round");
        assert_eq!(round.groups.len(), 4);
    }
    assert!(
        gens[0]
            .groups
            .iter()
            .all(|g| is_uniform(g, all_but_one_plus_one))
    );
    let informative: Vec<String> = gens[1]
        .groups
        .iter()
        .filter(|g| !is_uniform(g, all_but_one_plus_one))
        .map(|g| g[0].0.clone())
        .collect();
    assert_eq!(
        informative,
        ["1+1="],
        "the group of 1+1 should have a spread"
    );
    gens
}

#[test]
fn cap_trains_on_the_kept_groups() {
    let gens = cap_run("dynamic-cap-kept", DynamicSamplingOnCap::TrainOnKept);
    // No informative group: one dropped group, so that each of the two
    // micro-batches has a completion.
    assert_eq!(batch_prompts(&gens[0].batch), ["0+0="]);
    assert_eq!(gens[0].batch, gens[0].groups[0]);
    assert_eq!(batch_prompts(&gens[1].batch), ["1+1="]);
    for (round, filled, dropped) in [(&gens[0], 0.0, 1.0), (&gens[1], 0.5, 0.75)] {
        for m in &round.steps {
            assert_eq!(m[names::FRAC_BATCH_FILLED], filled);
            assert_eq!(m[names::FRAC_GROUPS_DROPPED], dropped);
            assert_eq!(m[names::GENERATION_ROUNDS], 2.0);
        }
    }
}

#[test]
fn cap_pads_with_dropped_groups() {
    let gens = cap_run("dynamic-cap-pad", DynamicSamplingOnCap::PadWithDropped);
    assert_eq!(batch_prompts(&gens[0].batch), ["0+0=", "1+0="]);
    assert_eq!(batch_prompts(&gens[1].batch), ["1+1=", "4+0="]);
    let expected: Vec<(String, String)> = [&gens[1].groups[2], &gens[1].groups[0]]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    assert_eq!(gens[1].batch, expected);
    for m in &gens[1].steps {
        assert_eq!(m[names::FRAC_BATCH_FILLED], 0.5);
    }
}

#[test]
fn dynamic_sampling_resumes_exactly() {
    let (straight, dir) = assert_exact_resume(&Scenario {
        name: "dynamic-sampling",
        adjust: |c| {
            c.dynamic_sampling = true;
            c.steps_per_generation = Some(2);
            c.per_device_train_batch_size = 4;
            // Slow enough that every generation still finds informative
            // groups to fill its batch with.
            c.learning_rate = 1e-3;
        },
        model: dense_model,
        rewards: plus_zero_rewards,
        steps: 5,
        stop: 3,
        mid_batch: true,
    });
    let state = read_trainer_state(&dir.path().join("checkpoint-3")).unwrap();
    assert!(
        state.extra_generation_batches > 0,
        "no extra round before the checkpoint: the test shows nothing"
    );
    assert!(
        straight
            .history
            .iter()
            .all(|r| r.metrics[names::FRAC_BATCH_FILLED] == 1.0)
    );
}

#[test]
fn overlapped_dynamic_sampling_resumes_exactly() {
    // Extra rounds are sampled on the training thread with the current
    // weights, then the next batch starts on the second thread: the
    // checkpoint at step 2 holds extra batches and a batch sampled ahead.
    let (_, dir) = assert_exact_resume(&Scenario {
        name: "dynamic-sampling-overlap",
        adjust: |c| {
            c.dynamic_sampling = true;
            c.overlap_generation = true;
            c.vllm_importance_sampling_correction = true;
        },
        model: dense_model,
        rewards: plus_zero_rewards,
        steps: 4,
        stop: 2,
        mid_batch: false,
    });
    let state = read_trainer_state(&dir.path().join("checkpoint-2")).unwrap();
    assert!(
        state.extra_generation_batches > 0,
        "no extra round before the checkpoint"
    );
    assert!(
        state.pending_rollout,
        "no batch sampled ahead at the checkpoint"
    );
}

#[test]
fn resume_checks_count_the_extra_batches() {
    use mlx_grpo::dataset::SamplerPosition;
    use mlx_grpo::trainer::{RunShape, TrainerState, check_trainer_state};
    let shape = RunShape {
        seed: 3,
        total_steps: 10,
        batches_per_epoch: 6,
        micro_steps_per_generation: 2,
        micro_steps_per_step: 1,
    };
    // Two steps use one generation batch; two extra rounds drew two more.
    let state = |index: usize, generations: u64, extra: u64| TrainerState {
        global_step: 2,
        sampler_position: SamplerPosition { epoch: 0, index },
        generations,
        extra_generation_batches: extra,
        ..TrainerState::start(3, SamplerPosition::default())
    };
    let path = std::path::Path::new("trainer_state.json");
    assert!(check_trainer_state(&state(3, 3, 2), path, &shape).is_ok());
    assert!(check_trainer_state(&state(1, 1, 0), path, &shape).is_ok());
    let err = check_trainer_state(&state(3, 3, 0), path, &shape).unwrap_err();
    assert!(err.to_string().contains("sampler_position"), "{err}");
    let err = check_trainer_state(&state(3, 1, 2), path, &shape).unwrap_err();
    assert!(err.to_string().contains("generations"), "{err}");
}
