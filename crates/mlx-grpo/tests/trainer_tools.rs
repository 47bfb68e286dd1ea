//! Training with tools on a tiny task: multi-turn rollouts through an
//! environment and stateless tools (one unknown to the model's calls, one
//! that panics), their tool tokens masked out of the loss, the tool
//! metrics logged, and a run with tools that resumes exactly.

mod resume_support;
mod tiny_task;

use std::path::Path;
use std::sync::Arc;

use mlx_grpo::config::GrpoConfig;
use mlx_grpo::dataset::{Dataset, Message, Prompt, Row};
use mlx_grpo::rewards::{RewardInput, RewardSet, per_sample};
use mlx_grpo::tools::{Environment, Tool, Tools, generate_rows_with_tools};
use mlx_grpo::trainer::checkpoint::read_trainer_state;
use mlx_grpo::trainer::{MicroBatch, Trainer};
use mlx_lm::Tokenizer;
use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_tensor::Dtype;
use resume_support::{assert_same, base_config, dense_model, run, scratch};
use serde_json::{Value, json};

const CALL_SUM: &str = r#"<tool_call>{"name": "sum_row", "arguments": {}}</tool_call>"#;
const CALL_UNKNOWN: &str = r#"<tool_call>{"name": "nope", "arguments": {}}</tool_call>"#;
const CALL_PANIC: &str = r#"<tool_call>{"name": "boom", "arguments": {}}</tool_call>"#;

/// A word-level tokenizer whose tool calls are single tokens that end a
/// turn, with a chat template that lists the tools and renders tool
/// results.
fn tokenizer() -> Tokenizer {
    let words: Vec<String> = (0..10)
        .map(|d| d.to_string())
        .chain(["+", "=", "sum_row", "boom"].map(String::from))
        .collect();
    let template = "{%- if tools %}[S] {% for t in tools %}{{ t.function.name }} {% endfor %}{% endif -%}\
        {%- for m in messages -%}\
        {%- if m.role == 'user' %}[U] {{ m.content }} \
        {% elif m.role == 'assistant' %}[A] {{ m.content }} <eos> \
        {% elif m.role == 'tool' %}[T] {{ m.content }} [/T] {% endif -%}\
        {%- endfor -%}\
        {%- if add_generation_prompt %}[A] {% endif -%}";
    let tok = VocabTokenizerBuilder::word_level(words)
        .pad("<pad>")
        .eos("<eos>")
        .unk("<unk>")
        .special_token("[S]")
        .special_token("[U]")
        .special_token("[A]")
        .special_token("[T]")
        .special_token("[/T]")
        .added_token(CALL_SUM)
        .added_token(CALL_UNKNOWN)
        .added_token(CALL_PANIC)
        .chat_template(template)
        .build()
        .unwrap();
    // A tool call ends the assistant's turn (as `</tool_call><|im_end|>`
    // would), so that the random model makes many multi-turn rollouts.
    let calls: Vec<u32> = [CALL_SUM, CALL_UNKNOWN, CALL_PANIC]
        .iter()
        .map(|c| tok.token_to_id(c).unwrap())
        .collect();
    tok.with_eos_token_ids(calls)
}

/// Keeps the row's answer and hands it out through `sum_row`; rewards a
/// rollout that asked for it.
#[derive(Default)]
struct SumEnv {
    answer: String,
    asked: usize,
}

impl Environment for SumEnv {
    fn tools(&self) -> Vec<Tool> {
        vec![Tool::new(
            "sum_row",
            "The sum of the row's numbers.",
            json!({"type": "object", "properties": {}}),
            |_| Err("answered by the environment".into()),
        )]
    }

    fn reset(&mut self, row: &Row) -> Result<(), String> {
        self.answer = row.answer.clone().ok_or("a row without an answer")?;
        self.asked = 0;
        Ok(())
    }

    fn call(&mut self, name: &str, _: &Value) -> Result<String, String> {
        match name {
            "sum_row" => {
                self.asked += 1;
                Ok(self.answer.clone())
            }
            other => Err(format!("Tool {other} not found.")),
        }
    }

    fn reward(&self) -> Option<f64> {
        Some(self.asked.min(1) as f64)
    }
}

fn tools() -> Tools {
    let boom = Tool::new("boom", "Panics.", json!({"type": "object"}), |_| {
        panic!("the boom tool always panics")
    });
    Tools::new(vec![boom])
        .unwrap()
        .with_environment(Arc::new(|| {
            Box::new(SumEnv::default()) as Box<dyn Environment>
        }))
        .unwrap()
}

fn dataset() -> Dataset {
    let rows = (0..12u32)
        .map(|i| Row {
            prompt: Prompt::Messages(vec![Message::new(
                "user",
                format!("{} + {} =", i % 5, i / 5),
            )]),
            answer: Some((i % 5 + i / 5).to_string()),
            extra: Default::default(),
        })
        .collect();
    Dataset::from_rows(rows, "tool sums").unwrap()
}

/// Successful tool results, the environment's reward, and the answer.
fn rewards() -> RewardSet {
    let mut set = RewardSet::new();
    set.add(per_sample("tool_use", |x: &RewardInput| {
        let ok = x
            .completion
            .turns
            .iter()
            .flat_map(|t| &t.tool_results)
            .filter(|r| !r.failed)
            .count();
        0.5 * ok as f32 + x.completion.environment_reward.unwrap_or(0.0) as f32
    }))
    .unwrap();
    set.add(per_sample("answer", |x: &RewardInput| {
        f32::from(x.answer.as_deref() == Some(x.completion.text.as_str()))
    }))
    .unwrap();
    set
}

fn config(dir: &Path, steps: i64) -> GrpoConfig {
    GrpoConfig {
        max_completion_length: 16,
        max_tool_calling_iterations: Some(2),
        ..base_config(dir, steps)
    }
}

fn trainer(
    dir: &Path,
    adjust: fn(&mut GrpoConfig),
    steps: i64,
    save_steps: usize,
    resume: Option<&Path>,
) -> Trainer {
    let tok = tokenizer();
    let mut cfg = config(dir, steps);
    adjust(&mut cfg);
    cfg.save_steps = save_steps;
    cfg.resume_from_checkpoint = resume.map(Path::to_path_buf);
    Trainer::new(cfg, dense_model(&tok), tok, dataset(), rewards())
        .unwrap()
        .with_progress(false)
        .with_tools(tools())
}

/// The first four prompts of `data` rendered with the tools' schemas.
fn rendered_prompts(tok: &Tokenizer, data: &Dataset) -> Vec<Vec<u32>> {
    let schemas = tools().schemas();
    data.rows()[..4]
        .iter()
        .map(|r| {
            mlx_grpo::trainer::rollout::render_prompt_with_tools(
                tok,
                &r.prompt,
                Some(schemas.clone()),
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn tool_rollouts_mask_tool_tokens_out_of_the_loss() {
    let tok = tokenizer();
    let model = dense_model(&tok);
    let data = dataset();
    let scratch_dir = scratch("tools-mask");
    let cfg = config(scratch_dir.path(), 1);
    let prompts = rendered_prompts(&tok, &data);
    let samples = generate_rows_with_tools(
        &model,
        &tok,
        &tools(),
        data.rows(),
        &[0, 1, 2, 3],
        &prompts,
        &cfg,
        11,
        0..16,
    )
    .unwrap();
    assert_eq!(samples.len(), 16);
    let turn_enders = tok.eos_token_ids().to_vec();
    let (mut calls, mut inserted, mut failures) = (0, 0, 0);
    for s in &samples {
        let t = s.tools.as_ref().unwrap();
        assert_eq!(t.sampled.len(), s.completion_ids.len());
        assert!(s.completion_ids.len() <= 16);
        calls += t.calls;
        failures += t.failures;
        for r in t.turns.iter().flat_map(|x| &x.tool_results) {
            match r.name.as_str() {
                "sum_row" => assert!(!r.failed && r.content.parse::<u32>().is_ok()),
                "boom" => assert!(r.failed && r.content.contains("panicked")),
                "nope" => assert_eq!(r.content, "{'error': 'Tool nope not found.'}"),
                other => panic!("a result of {other}"),
            }
        }
        // Every inserted span follows a token that ends a turn and is one
        // turn's tool results, which were kept.
        let mut spans = 0;
        for j in 0..t.sampled.len() {
            if !t.sampled[j] && (j == 0 || t.sampled[j - 1]) {
                spans += 1;
                assert!(j > 0 && turn_enders.contains(&s.completion_ids[j - 1]));
            }
        }
        inserted += spans;
        let with_results = t
            .turns
            .iter()
            .filter(|x| !x.tool_results.is_empty())
            .count();
        assert_eq!(spans, with_results);
        assert!(t.turns.len() <= 3, "at most two rounds of tool results");
        for (i, lp) in s.sampling_logps.iter().enumerate() {
            assert!(t.sampled[i] || *lp == 0.0);
        }
        let asked = t
            .turns
            .iter()
            .flat_map(|x| &x.tool_results)
            .any(|r| r.name == "sum_row");
        // Results that did not fit the completion were dropped, but the
        // environment had answered.
        if asked {
            assert_eq!(t.environment_reward, Some(1.0));
        } else {
            assert!(matches!(t.environment_reward, Some(r) if r == 0.0 || r == 1.0));
        }
    }
    assert!(
        calls > 0 && inserted > 0,
        "the random model never called a tool"
    );
    assert!(
        failures > 0 && failures < calls,
        "{failures} of {calls} calls failed"
    );

    let advantages = vec![1.0; samples.len()];
    let part: Vec<usize> = (0..samples.len()).collect();
    let mb = MicroBatch::build(&part, &samples, &advantages, 0, 1.0, &cfg, &model, None).unwrap();
    let width = mb.layout.completion_width as usize;
    let mask = mb
        .mask
        .as_type(Dtype::F32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    for (r, s) in samples.iter().enumerate() {
        let sampled = &s.tools.as_ref().unwrap().sampled;
        for j in 0..width {
            let want = f32::from(sampled.get(j).copied().unwrap_or(false));
            assert_eq!(mask[r * width + j], want, "row {r}, token {j}");
        }
    }
}

#[test]
fn tool_rollouts_do_not_depend_on_chunks_or_on_the_rows_generated_together() {
    let tok = tokenizer();
    let model = dense_model(&tok);
    let data = dataset();
    let scratch_dir = scratch("tools-rows");
    let prompts = rendered_prompts(&tok, &data);
    // Rows `rows` with every prompt they do not touch emptied (reading one
    // would fail), `chunk` prompts per batch.
    let sample = |chunk: Option<usize>, rows: std::ops::Range<usize>| {
        let mut cfg = config(scratch_dir.path(), 1);
        cfg.generation_chunk_prompts = chunk;
        let g = cfg.num_generations;
        let needed = rows.start / g..rows.end.div_ceil(g);
        let only: Vec<Vec<u32>> = prompts
            .iter()
            .enumerate()
            .map(|(p, ids)| {
                if needed.contains(&p) {
                    ids.clone()
                } else {
                    Vec::new()
                }
            })
            .collect();
        let samples = generate_rows_with_tools(
            &model,
            &tok,
            &tools(),
            data.rows(),
            &[0, 1, 2, 3],
            &only,
            &cfg,
            11,
            rows.clone(),
        )
        .unwrap();
        assert_eq!(samples.len(), rows.len());
        samples
    };
    let whole = sample(None, 0..16);
    let turns: usize = whole
        .iter()
        .map(|s| s.tools.as_ref().unwrap().turns.len())
        .sum();
    assert!(turns > whole.len(), "no rollout had several turns");
    for chunk in [None, Some(1), Some(3)] {
        // Groups of 4: rows 0..6 and 6..16 cut prompt 1's group.
        let mut parts = sample(chunk, 0..6);
        parts.extend(sample(chunk, 6..16));
        assert_eq!(parts.len(), whole.len());
        for (i, (a, b)) in parts.iter().zip(&whole).enumerate() {
            assert_eq!(
                (&a.row_index, &a.completion_ids, a.finish_reason, &a.tools),
                (&b.row_index, &b.completion_ids, b.finish_reason, &b.tools),
                "chunks {chunk:?}: row {i}"
            );
            for (u, v) in a.sampling_logps.iter().zip(&b.sampling_logps) {
                assert!(
                    (u - v).abs() <= 1e-5,
                    "chunks {chunk:?}: row {i}: {u} vs {v}"
                );
            }
        }
    }
}

/// Trains straight through, then saving at `stop`, then resumed from
/// there; all three must end bit for bit alike. Returns the straight run.
fn assert_exact_resume(
    name: &str,
    adjust: fn(&mut GrpoConfig),
    steps: i64,
    stop: usize,
    mid_batch: bool,
) -> resume_support::RunEnd {
    let straight_dir_guard = scratch(&format!("tools-{name}-straight"));
    let straight_dir = straight_dir_guard.path();
    let no_save = steps as usize + 1;
    let straight = run(
        &mut trainer(straight_dir, adjust, steps, no_save, None),
        straight_dir,
    );
    let dir_guard = scratch(&format!("tools-{name}-stopped"));
    let dir = dir_guard.path();
    let saving = run(&mut trainer(dir, adjust, steps, stop, None), dir);
    assert_same(
        &straight,
        &saving,
        &format!("{name}: saving at step {stop}"),
    );
    let checkpoint = dir.join(format!("checkpoint-{stop}"));
    let state = read_trainer_state(&checkpoint).unwrap();
    assert_eq!(state.global_step, stop);
    assert_eq!(state.buffered_micro_steps > 0, mid_batch, "{name}");
    let resumed = run(
        &mut trainer(dir, adjust, steps, stop, Some(&checkpoint)),
        dir,
    );
    assert_same(
        &straight,
        &resumed,
        &format!("{name}: resumed at step {stop}"),
    );
    straight
}

#[test]
fn a_run_with_tools_logs_tool_metrics_and_resumes_exactly() {
    let straight = assert_exact_resume("aligned", |_| {}, 4, 2, false);
    let called: f64 = straight
        .history
        .iter()
        .filter_map(|r| r.metrics.get("tools/call_frequency"))
        .sum();
    assert!(called > 0.0, "no tool calls logged: {:?}", straight.history);
    for r in &straight.history {
        if let Some(f) = r.metrics.get("tools/failure_frequency") {
            assert!((0.0..=1.0).contains(f));
            assert!(r.metrics["tools/mean_turns"] >= 1.0);
        }
    }
}

#[test]
fn a_run_with_tools_resumes_exactly_in_the_middle_of_a_generation_batch() {
    // Two passes over each batch: the checkpoint at step 3 keeps the
    // batch, its tool masks included.
    assert_exact_resume("iterations", |c| c.num_iterations = 2, 5, 3, true);
}

/// Generation overlapped with training: the multi-turn rollouts (tools
/// and environments included) run on the second thread.
fn overlapped(c: &mut GrpoConfig) {
    c.overlap_generation = true;
    c.vllm_importance_sampling_correction = true;
}

#[test]
fn an_overlapped_run_with_tools_resumes_exactly_with_a_batch_sampled_ahead() {
    let straight = assert_exact_resume("overlap", overlapped, 4, 2, false);
    let called: f64 = straight
        .history
        .iter()
        .filter_map(|r| r.metrics.get("tools/call_frequency"))
        .sum();
    assert!(called > 0.0, "no tool calls logged: {:?}", straight.history);
}

#[test]
fn a_frozen_overlapped_run_with_tools_is_the_synchronous_run() {
    let runs: Vec<resume_support::RunEnd> = [false, true]
        .into_iter()
        .map(|overlap| {
            let guard = scratch(&format!("tools-frozen-{overlap}"));
            let adjust: fn(&mut GrpoConfig) = if overlap {
                |c| {
                    overlapped(c);
                    c.learning_rate = 0.0;
                }
            } else {
                |c| {
                    c.vllm_importance_sampling_correction = true;
                    c.learning_rate = 0.0;
                }
            };
            run(
                &mut trainer(guard.path(), adjust, 3, 100, None),
                guard.path(),
            )
        })
        .collect();
    assert_same(&runs[0], &runs[1], "frozen policy with tools");
}
