//! The tokens that follow a tool-calling turn: the tool results as the chat
//! template renders them, then the next assistant generation prompt.

use mlx_lm::{ChatTemplateOptions, Tokenizer};
use serde_json::{Value, json};

use crate::{Error, Result};

/// The token ids that the chat template puts after an assistant turn that
/// called tools and ended at the end-of-sequence token: `tool_messages`
/// (`{"role": "tool", "name", "content"}`, in order) and the generation
/// prompt of the next assistant turn.
///
/// As TRL 1.16 does, they are the difference between two renderings of a
/// small conversation (a user message and an assistant message calling the
/// first tool by name): without the tool messages (cut after its last
/// end-of-sequence token, since templates add a newline after it) and with
/// them plus the generation prompt. When the second rendering does not
/// start with the first (a template that rewrites earlier turns), this is
/// [`Error::ToolTemplate`]. Unlike TRL's, the assistant message has some
/// reasoning content, so that templates that show the thinking of the
/// last assistant message only (Qwen3's: TRL swaps in a patched copy) render
/// it in both conversations; the tokens after the turn are the same.
pub fn tool_suffix_ids(
    tokenizer: &Tokenizer,
    tool_messages: &[Value],
    options: &ChatTemplateOptions,
) -> Result<Vec<u32>> {
    let name = tool_messages
        .first()
        .and_then(|m| m.get("name"))
        .cloned()
        .ok_or_else(|| Error::ToolTemplate {
            message: "no tool message, or one without a name".into(),
        })?;
    let conversation = vec![
        json!({"role": "user", "content": "dummy"}),
        json!({
            "role": "assistant",
            "content": "",
            "reasoning_content": "dummy",
            "tool_calls": [{"type": "function", "function": {"name": name, "arguments": {}}}],
        }),
    ];
    let without = ChatTemplateOptions {
        add_generation_prompt: false,
        ..options.clone()
    };
    let mut prefix = tokenizer.encode(
        &tokenizer.apply_chat_template(&conversation, &without)?,
        false,
    )?;
    let last_eos = tokenizer
        .eos_token_id()
        .and_then(|eos| prefix.iter().rposition(|&t| t == eos));
    if let Some(last) = last_eos {
        prefix.truncate(last + 1);
    }
    let mut extended = conversation;
    extended.extend(tool_messages.iter().cloned());
    let with = ChatTemplateOptions {
        add_generation_prompt: true,
        ..options.clone()
    };
    let text = tokenizer.apply_chat_template(&extended, &with)?;
    let full = tokenizer.encode(&text, false)?;
    match full.strip_prefix(prefix.as_slice()) {
        Some(suffix) => Ok(suffix.to_vec()),
        None => Err(Error::ToolTemplate {
            message: format!(
                "the conversation with tool results ({} tokens) does not start with the one \
                 without them ({} tokens, cut after its last end-of-sequence token): the template \
                 rewrites earlier turns; rendered: {text:?}",
                full.len(),
                prefix.len()
            ),
        }),
    }
}

/// A tool message's content for an error, written as TRL writes it (the
/// Python `str` of `{"error": message}`).
pub fn error_content(message: &str) -> String {
    format!("{{'error': {}}}", python_str_repr(message))
}

/// Python's `repr` of a string: single quotes unless the text has a single
/// quote and no double quote; backslashes, the chosen quote and control
/// characters escaped.
fn python_str_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_contents_read_as_python_writes_them() {
        // Python: str({"error": "x"}) == "{'error': 'x'}", and so on.
        assert_eq!(error_content("x"), "{'error': 'x'}");
        assert_eq!(error_content("it's"), "{'error': \"it's\"}");
        assert_eq!(error_content("a'b\"c"), "{'error': 'a\\'b\"c'}");
        assert_eq!(error_content("l1\nl2\\"), "{'error': 'l1\\nl2\\\\'}");
    }
}
