//! The tool loop against TRL 1.16's `_tool_call_loop` on the same scripted
//! assistant turns (fixture `fixtures/trl_tool_loop.json`, written by
//! `scripts/fixtures/gen_tool_loop_fixtures.py`): the completion ids (turns,
//! tool results and template tokens), the tool mask, the log-probabilities
//! (0 at tool tokens), the tool messages, the turns used and the call and
//! failure counts, with the repository's Qwen3 tokenizer and template.
//!
//! The scripted turns go through `ToolLoop` as `generate_turns` hands them
//! over: a turn that ends at the end-of-sequence token is passed to the
//! loop, whose tokens (if any) are appended unsampled; a turn is cut at the
//! completion's length limit, and a cut turn ends the completion.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use mlx_grpo::rewards::FinishReason;
use mlx_grpo::tools::{Tool, ToolLoop, ToolRollout, Tools, tool_metrics};
use mlx_grpo::trainer::rollout::{RolloutSample, to_completion};
use mlx_lm::generate::{TurnEnd, TurnHandler};
use mlx_lm::{ChatTemplateOptions, Tokenizer};
use serde_json::{Value, json};

fn tokenizer() -> Tokenizer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/qwen3-tokenizer");
    Tokenizer::from_dir(dir).unwrap()
}

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trl_tool_loop.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture's tools: `add(a, b)` and `fail(x)`, which raises
/// `ValueError("boom: " + x)`.
fn tools() -> Tools {
    let add = Tool::new(
        "add",
        "Adds two integers.",
        json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
               "required": ["a", "b"]}),
        |args| {
            let n = |k: &str| args[k].as_i64().ok_or(format!("{k} is not an integer"));
            Ok((n("a")? + n("b")?).to_string())
        },
    );
    let fail = Tool::new(
        "fail",
        "Always fails.",
        json!({"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}),
        |args| Err(format!("boom: {}", args["x"].as_str().unwrap_or(""))),
    );
    Tools::new(vec![add, fail]).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// One rollout as the generation hands its scripted turns to the loop.
struct Rollout {
    tokens: Vec<u32>,
    sampled: Vec<bool>,
    logprobs: Vec<f32>,
    turns_used: usize,
    finish: FinishReason,
}

fn run_rollout(
    tool_loop: &mut ToolLoop<'_>,
    row: usize,
    turns: &[Value],
    max_tokens: usize,
    eos: u32,
) -> Rollout {
    let mut r = Rollout {
        tokens: Vec::new(),
        sampled: Vec::new(),
        logprobs: Vec::new(),
        turns_used: 0,
        finish: FinishReason::Length,
    };
    for (k, turn) in turns.iter().enumerate() {
        let room = max_tokens - r.tokens.len();
        let turn_ids = ids(&turn["ids"]);
        let turn_lps = floats(&turn["logprobs"]);
        let n = turn_ids.len().min(room);
        r.turns_used += 1;
        r.tokens.extend_from_slice(&turn_ids[..n]);
        r.logprobs.extend_from_slice(&turn_lps[..n]);
        r.sampled.extend(std::iter::repeat_n(true, n));
        if n < turn_ids.len() || turn_ids[n - 1] != eos {
            r.finish = FinishReason::Length;
            return r;
        }
        r.finish = FinishReason::Stop;
        let end = TurnEnd {
            row,
            prompt_index: row,
            generation_index: 0,
            turn: k,
            tokens: &turn_ids,
            completion_len: r.tokens.len(),
            room: max_tokens - r.tokens.len(),
        };
        let Some(suffix) = tool_loop.turn_ended(&end).unwrap() else {
            return r;
        };
        assert!(suffix.len() <= end.room);
        r.logprobs.extend(std::iter::repeat_n(0.0, suffix.len()));
        r.sampled.extend(std::iter::repeat_n(false, suffix.len()));
        r.tokens.extend(suffix);
        if r.tokens.len() == max_tokens {
            r.finish = FinishReason::Length;
            return r;
        }
    }
    panic!("row {row} wanted more turns than the script has");
}

#[test]
fn tool_loop_matches_trl_tool_call_loop() {
    let tok = tokenizer();
    let eos = tok.eos_token_id().unwrap();
    let fixture = fixture();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let rows = case["rows"].as_array().unwrap();
        let max_tokens = case["max_completion_length"].as_u64().unwrap() as usize;
        let limit = case["max_tool_calling_iterations"]
            .as_u64()
            .map(|n| n as usize);
        let tools = tools();
        let instances = rows.iter().map(|_| tools.instance()).collect();
        let mut tool_loop = ToolLoop::new(&tok, ChatTemplateOptions::default(), limit, instances);
        let mut samples = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let what = format!("{name}, row {i}");
            let turns = row["turns"].as_array().unwrap();
            let r = run_rollout(&mut tool_loop, i, turns, max_tokens, eos);
            assert_eq!(
                r.tokens,
                ids(&row["completion_ids"]),
                "{what}: completion ids"
            );
            let mask: Vec<bool> = ids(&row["tool_mask"]).iter().map(|&m| m == 1).collect();
            assert_eq!(r.sampled, mask, "{what}: tool mask");
            assert_eq!(
                r.logprobs,
                floats(&row["logprobs"]),
                "{what}: log-probabilities"
            );
            assert_eq!(
                r.turns_used,
                row["turns_used"].as_u64().unwrap() as usize,
                "{what}: turns used"
            );
            let results: Vec<(String, String)> = tool_loop.rollouts[i]
                .turns
                .iter()
                .flat_map(|t| &t.tool_results)
                .map(|t| (t.name.clone(), t.content.clone()))
                .collect();
            let expected: Vec<(String, String)> = row["tool_results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap().to_string(),
                        m["content"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            assert_eq!(results, expected, "{what}: tool messages");
            let state = &tool_loop.rollouts[i];
            samples.push(RolloutSample {
                row_index: i,
                prompt_ids: ids(&row["prompt_ids"]),
                completion_ids: r.tokens,
                sampling_logps: r.logprobs,
                finish_reason: r.finish,
                tools: Some(ToolRollout {
                    sampled: r.sampled,
                    turns: state.turns.clone(),
                    calls: state.calls,
                    failures: state.failures,
                    environment_reward: None,
                }),
            });
        }
        let calls = case["tool_call_count"].as_f64().unwrap();
        let failures = case["tool_failure_count"].as_f64().unwrap();
        let metrics = tool_metrics(&samples);
        assert_eq!(
            metrics["tools/call_frequency"],
            calls / rows.len() as f64,
            "{name}"
        );
        let failure_frequency = if calls > 0.0 { failures / calls } else { 0.0 };
        assert_eq!(
            metrics["tools/failure_frequency"], failure_frequency,
            "{name}"
        );
        // The reward functions see every parsed turn; the answer is the
        // last one's text.
        for (s, row) in samples.iter().zip(rows) {
            let c = to_completion(&tok, s).unwrap();
            assert_eq!(c.num_tokens, s.model_tokens());
            let turns = &s.tools.as_ref().unwrap().turns;
            assert_eq!(c.turns.len(), turns.len());
            assert_eq!(c.text, turns.last().unwrap().text, "{name}: {row}");
        }
    }
}

/// The first turns of a fixture case, each ending at the same step.
fn first_turns(case: &Value) -> Vec<Vec<u32>> {
    case["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| ids(&r["turns"][0]["ids"]))
        .collect()
}

#[test]
fn rollouts_ending_a_turn_together_run_their_tools_on_threads_of_their_own() {
    let tok = tokenizer();
    let case = &fixture()["cases"][0];
    let turns = first_turns(case);
    let ends: Vec<TurnEnd<'_>> = turns
        .iter()
        .enumerate()
        .map(|(row, tokens)| TurnEnd {
            row,
            prompt_index: row,
            generation_index: 0,
            turn: 0,
            tokens,
            completion_len: tokens.len(),
            room: 400,
        })
        .collect();
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let seen = Arc::clone(&threads);
    let add = Tool::new("add", "Adds.", json!({"type": "object"}), move |args| {
        seen.lock().unwrap().insert(std::thread::current().id());
        Ok((args["a"].as_i64().unwrap_or(0) + args["b"].as_i64().unwrap_or(0)).to_string())
    });
    let fail = Tool::new("fail", "Fails.", json!({"type": "object"}), |args| {
        Err(format!("boom: {}", args["x"].as_str().unwrap_or("")))
    });
    let tools = Tools::new(vec![add, fail]).unwrap();
    let new_loop = || {
        let instances = turns.iter().map(|_| tools.instance()).collect();
        ToolLoop::new(&tok, ChatTemplateOptions::default(), None, instances)
    };
    let mut together = new_loop();
    let at_once = together.turns_ended(&ends).unwrap();
    let on_threads = threads.lock().unwrap().clone();
    let mut one_by_one = new_loop();
    let in_turn: Vec<_> = ends
        .iter()
        .map(|e| one_by_one.turn_ended(e).unwrap())
        .collect();
    assert_eq!(at_once, in_turn);
    for (a, b) in together.rollouts.iter().zip(&one_by_one.rollouts) {
        assert_eq!(a.turns, b.turns);
        assert_eq!((a.calls, a.failures), (b.calls, b.failures));
    }
    // Rows 0 and 2 call `add` in their first turn; rows 0 to 2 call tools.
    assert_eq!(at_once.iter().filter(|s| s.is_some()).count(), 3);
    assert_eq!(
        on_threads.len(),
        2,
        "each rollout's calls on a thread of its own"
    );
    assert!(!on_threads.contains(&std::thread::current().id()));
}
