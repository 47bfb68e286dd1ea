//! The tool loop of a batch of rollouts: after each assistant turn that
//! ends with tool calls, the calls run and their results become the tokens
//! the model reads next.

use std::collections::{BTreeMap, BTreeSet};

use mlx_lm::generate::{TurnEnd, TurnHandler};
use mlx_lm::text::tools::parse_completion;
use mlx_lm::{ChatTemplateOptions, Tokenizer};
use serde_json::{Value, json};

use super::environment::ToolInstance;
use super::suffix::{error_content, tool_suffix_ids};
use crate::rewards::{ToolCall, ToolResult, Turn};
use crate::{Error, Result};

/// One rollout's tools and what happened in its turns.
#[derive(Debug)]
pub struct RolloutTools {
    /// The rollout's tools and environment.
    pub instance: ToolInstance,
    /// The turns that ended at a stop, parsed, with their tool results.
    pub turns: Vec<Turn>,
    /// Tool calls the model made (TRL's `tool_call_count`), whether they
    /// ran or not.
    pub calls: usize,
    /// Calls that failed (TRL's `tool_failure_count`).
    pub failures: usize,
}

/// Runs the tool calls of every rollout of a batch between its turns (a
/// [`TurnHandler`] for [`mlx_lm::generate::generate_turns`]).
///
/// After a turn that ended at a stop: the turn is decoded and parsed; when
/// it has tool calls and the rollout has had fewer than `max_iterations`
/// rounds of tool results, every call runs in order (an unknown tool, an
/// invalid call, an error or a panic gives the model an error message and
/// counts as a failure) and the rollout continues with
/// [`tool_suffix_ids`] of their results. Results that would not fit the
/// completion's room are dropped and the rollout ends (as TRL does; the
/// calls still count). When several rollouts end a turn at the same
/// decoding step, each one's calls run on a thread of its own (tools and
/// environments are `Send`); a rollout's calls run in order.
#[derive(Debug)]
pub struct ToolLoop<'a> {
    tokenizer: &'a Tokenizer,
    template: ChatTemplateOptions,
    max_iterations: usize,
    /// Per rollout (prompt-major, as the rows of the generation).
    pub rollouts: Vec<RolloutTools>,
}

impl<'a> ToolLoop<'a> {
    /// A loop over `rollouts` (one per generated row, prompt-major),
    /// rendering tool results with `template` (its generation prompt
    /// settings are set as needed), at most `max_iterations` rounds of tool
    /// results per rollout (`None`: no limit).
    pub fn new(
        tokenizer: &'a Tokenizer,
        template: ChatTemplateOptions,
        max_iterations: Option<usize>,
        rollouts: Vec<ToolInstance>,
    ) -> Self {
        ToolLoop {
            tokenizer,
            template,
            max_iterations: max_iterations.unwrap_or(usize::MAX),
            rollouts: rollouts
                .into_iter()
                .map(|instance| RolloutTools {
                    instance,
                    turns: Vec::new(),
                    calls: 0,
                    failures: 0,
                })
                .collect(),
        }
    }

    /// Decodes and parses a turn's tokens.
    pub fn parse_turn(&self, tokens: &[u32]) -> Result<Turn> {
        let raw_text = self.tokenizer.decode(tokens, true)?;
        let parsed = parse_completion(&raw_text);
        Ok(Turn {
            text: parsed.text,
            raw_text,
            thinking: parsed.thinking,
            tool_calls: parsed.tool_calls,
            tool_results: Vec::new(),
        })
    }
}

/// Runs one call: its tool message and result.
fn run_call(instance: &mut ToolInstance, call: &ToolCall) -> (Value, ToolResult) {
    let name = call
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let outcome = if call.is_valid() && call.arguments.is_object() {
        instance.call(&name, &call.arguments)
    } else {
        Err(format!("invalid tool call: {}", call_problem(call)))
    };
    let (content, failed) = match outcome {
        Ok(text) => (text, false),
        Err(message) => (error_content(&message), true),
    };
    let message = json!({"role": "tool", "name": name, "content": content});
    (
        message,
        ToolResult {
            name,
            content,
            failed,
        },
    )
}

fn call_problem(call: &ToolCall) -> String {
    use crate::rewards::ToolCallStatus;
    match &call.status {
        ToolCallStatus::InvalidJson { message } => format!("not valid JSON ({message})"),
        ToolCallStatus::MissingName => "no name".into(),
        ToolCallStatus::Unterminated => "the tool call block is not closed".into(),
        ToolCallStatus::Ok if call.name.as_deref().is_none_or(str::is_empty) => "no name".into(),
        ToolCallStatus::Ok => "the arguments are not an object".into(),
    }
}

impl ToolLoop<'_> {
    /// Parses the turn that `end` reports into its rollout; whether its
    /// tool calls are to run.
    fn begin_turn(&mut self, end: &TurnEnd<'_>) -> Result<bool> {
        let turn = self.parse_turn(end.tokens)?;
        let run = !turn.tool_calls.is_empty() && end.turn < self.max_iterations;
        self.rollout(end.row)?.turns.push(turn);
        Ok(run)
    }

    fn rollout(&mut self, row: usize) -> Result<&mut RolloutTools> {
        self.rollouts
            .get_mut(row)
            .ok_or_else(|| Error::internal(format!("a turn of row {row} in a loop of fewer rows")))
    }

    /// The tokens that follow the tool results of `row`'s last turn, or
    /// `None` when they do not fit `room` (the results are then dropped).
    fn finish_turn(&mut self, row: usize, room: usize, ran: RanCalls) -> Result<Option<Vec<u32>>> {
        let suffix = tool_suffix_ids(self.tokenizer, &ran.messages, &self.template)?;
        if suffix.len() > room {
            return Ok(None);
        }
        let turn = self
            .rollout(row)?
            .turns
            .last_mut()
            .ok_or_else(|| Error::internal("tool results without a turn"))?;
        turn.tool_results = ran.results;
        Ok(Some(suffix))
    }
}

/// The tool messages and results of one turn's calls.
struct RanCalls {
    messages: Vec<Value>,
    results: Vec<ToolResult>,
}

/// Runs the calls of the rollout's last turn, in order, and counts them.
fn run_calls(rollout: &mut RolloutTools) -> RanCalls {
    let calls = rollout
        .turns
        .last()
        .map(|t| t.tool_calls.clone())
        .unwrap_or_default();
    let mut ran = RanCalls {
        messages: Vec::with_capacity(calls.len()),
        results: Vec::with_capacity(calls.len()),
    };
    for call in &calls {
        let (message, result) = run_call(&mut rollout.instance, call);
        rollout.calls += 1;
        rollout.failures += usize::from(result.failed);
        ran.messages.push(message);
        ran.results.push(result);
    }
    ran
}

impl TurnHandler for ToolLoop<'_> {
    type Error = Error;

    fn turn_ended(&mut self, end: &TurnEnd<'_>) -> Result<Option<Vec<u32>>> {
        if !self.begin_turn(end)? {
            return Ok(None);
        }
        let ran = run_calls(self.rollout(end.row)?);
        self.finish_turn(end.row, end.room, ran)
    }

    /// Parses every turn, then runs the calls of the rollouts that have
    /// some, each rollout on its own thread when there are several (a
    /// rollout's calls run in order), then renders their results.
    fn turns_ended(&mut self, ends: &[TurnEnd<'_>]) -> Result<Vec<Option<Vec<u32>>>> {
        let mut to_run = BTreeSet::new();
        for end in ends {
            if self.begin_turn(end)? && !to_run.insert(end.row) {
                return Err(Error::internal(format!(
                    "row {} ended two turns at once",
                    end.row
                )));
            }
        }
        let mut ran: BTreeMap<usize, RanCalls> = BTreeMap::new();
        if to_run.len() == 1 {
            for &row in &to_run {
                ran.insert(row, run_calls(self.rollout(row)?));
            }
        } else if !to_run.is_empty() {
            std::thread::scope(|scope| -> Result<()> {
                let handles: Vec<_> = self
                    .rollouts
                    .iter_mut()
                    .enumerate()
                    .filter(|(row, _)| to_run.contains(row))
                    .map(|(row, rollout)| (row, scope.spawn(move || run_calls(rollout))))
                    .collect();
                for (row, handle) in handles {
                    let calls = handle
                        .join()
                        .map_err(|_| Error::internal("a tool thread panicked outside a tool"))?;
                    ran.insert(row, calls);
                }
                Ok(())
            })?;
        }
        ends.iter()
            .map(|end| match ran.remove(&end.row) {
                Some(calls) => self.finish_turn(end.row, end.room, calls),
                None => Ok(None),
            })
            .collect()
    }
}
