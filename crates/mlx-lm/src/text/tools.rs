//! Reading a model's completion: its thinking, its tool calls, its answer.
//!
//! Understands the Qwen3 / Hermes conventions:
//!
//! - thinking in `<think>...</think>`; an unclosed `<think>` at the end is
//!   the thinking so far; a completion with a `</think>` but no `<think>`
//!   before it started inside thinking (the prompt ended with `<think>\n`);
//! - tool calls in `<tool_call>...</tool_call>` blocks, either JSON
//!   (`{"name": "f", "arguments": {...}}`, the arguments also as a JSON
//!   string) or XML-like
//!   (`<function=f><parameter=p>value</parameter></function>`, each value
//!   parsed as JSON if it is JSON, else kept as a string).
//!
//! Parsing never fails: a malformed call is reported in its
//! [`ToolCall::status`] and the others are still read. Tool calls inside the
//! thinking are not calls.
//!
//! ```
//! use mlx_lm::text::tools::parse_completion;
//!
//! let parsed = parse_completion(
//!     "<think>\nNeed the weather.\n</think>\n\nChecking.\n<tool_call>\n\
//!      {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
//! );
//! assert_eq!(parsed.thinking.as_deref(), Some("Need the weather."));
//! assert_eq!(parsed.text, "Checking.");
//! assert_eq!(parsed.tool_calls[0].name.as_deref(), Some("get_weather"));
//! assert_eq!(parsed.tool_calls[0].arguments["city"], "Paris");
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

/// How a tool call was read (serialized as `{"kind": "ok"}`,
/// `{"kind": "invalid_json", "message": …}`, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolCallStatus {
    /// A name and well-formed arguments.
    Ok,
    /// The call, or its arguments, is not valid JSON (or not an object).
    InvalidJson {
        /// What the JSON parser reported.
        message: String,
    },
    /// The call has no usable `name`.
    MissingName,
    /// The `<tool_call>` block was never closed (the completion was cut
    /// off); name and arguments are read as far as possible.
    Unterminated,
}

/// One tool call found in a completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The function name, when one could be read.
    pub name: Option<String>,
    /// The arguments: normally an object; `Null` when unreadable; the
    /// original string when a string of arguments is not valid JSON.
    pub arguments: Json,
    /// Whether the call was well formed.
    pub status: ToolCallStatus,
    /// The block as it appeared, tags included.
    pub raw: String,
}

impl ToolCall {
    /// `true` when [`Self::status`] is [`ToolCallStatus::Ok`].
    pub fn is_ok(&self) -> bool {
        self.status == ToolCallStatus::Ok
    }

    /// Well formed with a non-empty name: a call a tool can be asked to run.
    pub fn is_valid(&self) -> bool {
        self.is_ok() && self.name.as_deref().is_some_and(|n| !n.is_empty())
    }

    /// The call in the form chat templates read from an assistant message's
    /// `tool_calls`: `{"type": "function", "function": {"name": ...,
    /// "arguments": ...}}`.
    pub fn to_message_json(&self) -> Json {
        json!({
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        })
    }
}

/// A completion split into its parts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedCompletion {
    /// The answer: the completion without thinking and tool-call blocks,
    /// trimmed.
    pub text: String,
    /// The thinking (trimmed), when the completion has any; several
    /// thinking blocks are joined with a blank line.
    pub thinking: Option<String>,
    /// The tool calls, in order.
    pub tool_calls: Vec<ToolCall>,
}

impl ParsedCompletion {
    /// An assistant message for the conversation history: `content`, plus
    /// `reasoning_content` and `tool_calls` when present.
    pub fn to_assistant_message(&self) -> Json {
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert("content".into(), json!(self.text));
        if let Some(thinking) = &self.thinking {
            message.insert("reasoning_content".into(), json!(thinking));
        }
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.iter().map(ToolCall::to_message_json);
            message.insert("tool_calls".into(), Json::Array(calls.collect()));
        }
        Json::Object(message)
    }
}

/// The tags that delimit thinking and tool calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletionTags {
    /// Opens thinking (`<think>`).
    pub think_start: String,
    /// Closes thinking (`</think>`).
    pub think_end: String,
    /// Opens a tool call (`<tool_call>`).
    pub tool_call_start: String,
    /// Closes a tool call (`</tool_call>`).
    pub tool_call_end: String,
}

impl Default for CompletionTags {
    /// The Qwen3 / Hermes tags.
    fn default() -> Self {
        CompletionTags {
            think_start: "<think>".into(),
            think_end: "</think>".into(),
            tool_call_start: "<tool_call>".into(),
            tool_call_end: "</tool_call>".into(),
        }
    }
}

/// Splits a completion with the Qwen3 / Hermes tags (see the module docs).
pub fn parse_completion(completion: &str) -> ParsedCompletion {
    parse_completion_with(completion, &CompletionTags::default())
}

/// Splits a completion with the given tags.
pub fn parse_completion_with(completion: &str, tags: &CompletionTags) -> ParsedCompletion {
    let (blocks, outside) = thinking_parts(completion, tags);
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    // Each stretch between thinking blocks is read on its own, so that a
    // call's `raw` is always a slice of the completion.
    for segment in outside {
        let (rest, calls) = extract_tool_calls_with(segment, tags);
        text.push_str(&rest);
        tool_calls.extend(calls);
    }
    ParsedCompletion {
        text: text.trim().to_string(),
        thinking: join_thinking(&blocks),
        tool_calls,
    }
}

/// Separates thinking from the rest with the default tags: returns the
/// thinking (trimmed; `None` when there is none) and the text outside it
/// (untrimmed).
pub fn split_thinking(completion: &str) -> (Option<String>, String) {
    split_thinking_with(completion, &CompletionTags::default())
}

/// [`split_thinking`] with the given tags.
pub fn split_thinking_with(completion: &str, tags: &CompletionTags) -> (Option<String>, String) {
    let (blocks, outside) = thinking_parts(completion, tags);
    (join_thinking(&blocks), outside.concat())
}

fn join_thinking(blocks: &[&str]) -> Option<String> {
    (!blocks.is_empty()).then(|| {
        let parts: Vec<&str> = blocks.iter().map(|b| b.trim()).collect();
        parts.join("\n\n")
    })
}

/// The thinking blocks (untrimmed) and the stretches of text around them.
fn thinking_parts<'a>(completion: &'a str, tags: &CompletionTags) -> (Vec<&'a str>, Vec<&'a str>) {
    let (start, end) = (tags.think_start.as_str(), tags.think_end.as_str());
    if start.is_empty() || end.is_empty() {
        return (Vec::new(), vec![completion]);
    }
    let mut blocks = Vec::new();
    let mut outside = Vec::new();
    let mut rest = completion;

    // A completion that starts inside thinking has a closing tag first.
    if let Some(close) = rest.find(end)
        && rest.find(start).is_none_or(|open| close < open)
    {
        blocks.push(&rest[..close]);
        rest = &rest[close + end.len()..];
    }
    while let Some(open) = rest.find(start) {
        outside.push(&rest[..open]);
        let inner = &rest[open + start.len()..];
        match inner.find(end) {
            Some(close) => {
                blocks.push(&inner[..close]);
                rest = &inner[close + end.len()..];
            }
            None => {
                blocks.push(inner);
                rest = "";
            }
        }
    }
    outside.push(rest);
    (blocks, outside)
}

/// Takes the tool-call blocks out of `text` with the default tags: returns
/// the text without them (untrimmed) and the calls.
pub fn extract_tool_calls(text: &str) -> (String, Vec<ToolCall>) {
    extract_tool_calls_with(text, &CompletionTags::default())
}

/// [`extract_tool_calls`] with the given tags.
pub fn extract_tool_calls_with(text: &str, tags: &CompletionTags) -> (String, Vec<ToolCall>) {
    let (start, end) = (tags.tool_call_start.as_str(), tags.tool_call_end.as_str());
    if start.is_empty() || end.is_empty() {
        return (text.to_string(), Vec::new());
    }
    let mut calls = Vec::new();
    let mut outside = String::new();
    let mut rest = text;
    while let Some(open) = rest.find(start) {
        outside.push_str(&rest[..open]);
        let block = &rest[open..];
        let inner = &block[start.len()..];
        match inner.find(end) {
            Some(close) => {
                let raw_len = start.len() + close + end.len();
                let mut call = parse_tool_call_body(&inner[..close]);
                call.raw = block[..raw_len].to_string();
                calls.push(call);
                rest = &block[raw_len..];
            }
            None => {
                let mut call = parse_tool_call_body(inner);
                call.raw = block.to_string();
                call.status = ToolCallStatus::Unterminated;
                calls.push(call);
                rest = "";
            }
        }
    }
    outside.push_str(rest);
    (outside, calls)
}

/// Reads the content of one `<tool_call>` block (JSON or XML-like form).
/// [`ToolCall::raw`] is set to `body`.
pub fn parse_tool_call_body(body: &str) -> ToolCall {
    let trimmed = body.trim();
    let (name, arguments, status) = if trimmed.starts_with(FUNCTION_OPEN) {
        parse_xml_call(trimmed)
    } else {
        parse_json_call(trimmed)
    };
    ToolCall {
        name,
        arguments,
        status,
        raw: body.to_string(),
    }
}

type CallParts = (Option<String>, Json, ToolCallStatus);

fn invalid_json(message: impl Into<String>) -> ToolCallStatus {
    ToolCallStatus::InvalidJson {
        message: message.into(),
    }
}

/// `{"name": ..., "arguments": {...} | "json string"}`; `parameters` is
/// accepted for `arguments`.
fn parse_json_call(text: &str) -> CallParts {
    let value: Json = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => return (None, Json::Null, invalid_json(err.to_string())),
    };
    let Json::Object(mut fields) = value else {
        return (
            None,
            Json::Null,
            invalid_json("a tool call must be a JSON object with `name` and `arguments`"),
        );
    };
    let name = match fields.get("name") {
        Some(Json::String(name)) if !name.trim().is_empty() => Some(name.clone()),
        _ => None,
    };
    let arguments = fields
        .remove("arguments")
        .or_else(|| fields.remove("parameters"))
        .unwrap_or(Json::Null);
    let (arguments, problem) = match arguments {
        Json::Null => (Json::Object(Map::new()), None),
        Json::String(text) => match serde_json::from_str::<Json>(&text) {
            Ok(parsed @ Json::Object(_)) => (parsed, None),
            Ok(_) => (
                Json::String(text),
                Some("`arguments` is not a JSON object".to_string()),
            ),
            Err(err) => (
                Json::String(text),
                Some(format!("`arguments` is not valid JSON: {err}")),
            ),
        },
        object @ Json::Object(_) => (object, None),
        other => (other, Some("`arguments` is not a JSON object".to_string())),
    };
    let status = match (problem, &name) {
        (Some(message), _) => invalid_json(message),
        (None, None) => ToolCallStatus::MissingName,
        (None, Some(_)) => ToolCallStatus::Ok,
    };
    (name, arguments, status)
}

const FUNCTION_OPEN: &str = "<function=";
const FUNCTION_CLOSE: &str = "</function>";
const PARAMETER_OPEN: &str = "<parameter=";
const PARAMETER_CLOSE: &str = "</parameter>";

/// `<function=NAME><parameter=P>value</parameter>...</function>`.
fn parse_xml_call(text: &str) -> CallParts {
    let after_open = &text[FUNCTION_OPEN.len()..];
    let (name, mut rest) = match after_open.find('>') {
        Some(gt) => (after_open[..gt].trim(), &after_open[gt + 1..]),
        None => (after_open.trim(), ""),
    };
    if let Some(close) = rest.find(FUNCTION_CLOSE) {
        rest = &rest[..close];
    }
    let mut arguments = Map::new();
    while let Some(open) = rest.find(PARAMETER_OPEN) {
        let after = &rest[open + PARAMETER_OPEN.len()..];
        let Some(gt) = after.find('>') else { break };
        let key = after[..gt].trim();
        let body = &after[gt + 1..];
        let (value, next) = match body.find(PARAMETER_CLOSE) {
            Some(close) => (&body[..close], &body[close + PARAMETER_CLOSE.len()..]),
            None => match body.find(PARAMETER_OPEN) {
                Some(next) => (&body[..next], &body[next..]),
                None => (body, ""),
            },
        };
        arguments.insert(key.to_string(), parameter_value(value));
        rest = next;
    }
    let name = (!name.is_empty()).then(|| name.to_string());
    let status = if name.is_some() {
        ToolCallStatus::Ok
    } else {
        ToolCallStatus::MissingName
    };
    (name, Json::Object(arguments), status)
}

/// A parameter value without the newline after the opening tag and before
/// the closing tag: JSON when it parses as JSON, otherwise the string.
fn parameter_value(raw: &str) -> Json {
    let value = raw.strip_prefix('\n').unwrap_or(raw);
    let value = value.strip_suffix('\n').unwrap_or(value);
    serde_json::from_str(value).unwrap_or_else(|_| Json::String(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_inside_thinking() {
        let (thinking, rest) = split_thinking("plan it\n</think>\n\nanswer");
        assert_eq!(thinking.as_deref(), Some("plan it"));
        assert_eq!(rest, "\n\nanswer");
    }

    #[test]
    fn unclosed_thinking_is_thinking_so_far() {
        let parsed = parse_completion("<think>\nstill going");
        assert_eq!(parsed.thinking.as_deref(), Some("still going"));
        assert_eq!(parsed.text, "");
    }

    #[test]
    fn xml_values_are_json_or_strings() {
        assert_eq!(parameter_value("\n42\n"), json!(42));
        assert_eq!(parameter_value("\nhello world\n"), json!("hello world"));
        assert_eq!(parameter_value("[1, 2]"), json!([1, 2]));
    }
}
