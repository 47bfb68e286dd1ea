//! Prompts: plain text or a list of chat messages.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One chat message. Keys other than `role` and `content` (`name`,
/// `tool_calls`, `reasoning_content`, ...) are kept in `extra` for the chat
/// template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The message text; a JSON `null` reads as empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: String,
    /// Any other keys of the message object.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// A message with no extra keys.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            extra: Map::new(),
        }
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

/// A prompt: raw text (used as is) or chat messages (rendered with the
/// tokenizer's chat template).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Plain text.
    Text(String),
    /// Conversation turns.
    Messages(Vec<Message>),
}

impl Prompt {
    /// Reads a prompt from a JSON value, explaining what is wrong when it is
    /// neither a string nor an array of `{role, content}` objects.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(text) => Ok(Prompt::Text(text.clone())),
            Value::Array(items) => {
                if items.is_empty() {
                    return Err("`prompt` is an empty message list".to_string());
                }
                let messages = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| message_from_json(i, item));
                Ok(Prompt::Messages(messages.collect::<Result<_, _>>()?))
            }
            other => Err(format!(
                "`prompt` must be a string or an array of {{role, content}} messages, got {}",
                json_kind(other)
            )),
        }
    }

    /// Whether this is a chat prompt.
    pub fn is_conversational(&self) -> bool {
        matches!(self, Prompt::Messages(_))
    }

    /// The text of a plain prompt.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Prompt::Text(text) => Some(text),
            Prompt::Messages(_) => None,
        }
    }

    /// The messages of a chat prompt.
    pub fn messages(&self) -> Option<&[Message]> {
        match self {
            Prompt::Text(_) => None,
            Prompt::Messages(messages) => Some(messages),
        }
    }

    /// The text a reward function usually wants: the plain prompt, or the
    /// content of the last user message (the last message when none is from
    /// the user).
    pub fn last_user_text(&self) -> &str {
        match self {
            Prompt::Text(text) => text,
            Prompt::Messages(messages) => messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .or_else(|| messages.last())
                .map_or("", |m| m.content.as_str()),
        }
    }
}

fn message_from_json(index: usize, value: &Value) -> Result<Message, String> {
    let Value::Object(object) = value else {
        return Err(format!(
            "`prompt[{index}]` must be a message object, got {}",
            json_kind(value)
        ));
    };
    let mut extra = object.clone();
    let role = match extra.remove("role") {
        Some(Value::String(role)) => role,
        Some(other) => {
            return Err(format!(
                "`prompt[{index}].role` must be a string, got {}",
                json_kind(&other)
            ));
        }
        None => return Err(format!("`prompt[{index}]` has no `role`")),
    };
    let content = match extra.remove("content") {
        Some(Value::String(text)) => text,
        Some(Value::Null) | None => String::new(),
        Some(other) => {
            return Err(format!(
                "`prompt[{index}].content` must be a string, got {} (multimodal content is not supported)",
                json_kind(&other)
            ));
        }
    };
    Ok(Message {
        role,
        content,
        extra,
    })
}

/// A short name of a JSON value's type, for error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_text_and_messages() -> std::result::Result<(), Box<dyn std::error::Error>> {
        assert_eq!(Prompt::from_json(&json!("hi"))?, Prompt::Text("hi".into()));
        let p = Prompt::from_json(&json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "2+2?", "name": "bob"},
            {"role": "assistant", "content": null}
        ]))?;
        let messages = p.messages().ok_or("the prompt has no messages")?;
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1].extra["name"], json!("bob"));
        assert_eq!(messages[2].content, "");
        assert_eq!(p.last_user_text(), "2+2?");
        assert!(p.is_conversational());
        Ok(())
    }

    #[test]
    fn explains_bad_prompts() {
        let err = Prompt::from_json(&json!(3)).unwrap_err();
        assert!(err.contains("a number"), "{err}");
        let err = Prompt::from_json(&json!([{"content": "x"}])).unwrap_err();
        assert!(err.contains("prompt[0]") && err.contains("role"), "{err}");
        let err = Prompt::from_json(&json!([{"role": "user", "content": [{"type": "image"}]}]))
            .unwrap_err();
        assert!(err.contains("multimodal"), "{err}");
        assert!(Prompt::from_json(&json!([])).is_err());
    }

    #[test]
    fn serde_round_trip() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let p = Prompt::Messages(vec![Message::new("user", "hello")]);
        let text = serde_json::to_string(&p)?;
        assert_eq!(text, r#"[{"role":"user","content":"hello"}]"#);
        assert_eq!(serde_json::from_str::<Prompt>(&text)?, p);
        Ok(())
    }
}
