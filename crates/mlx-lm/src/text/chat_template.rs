//! Rendering conversations with a model's Jinja chat template.
//!
//! A [`ChatTemplate`] renders a list of messages into the prompt text the
//! model was trained on, with the same result as Hugging Face transformers'
//! `apply_chat_template(..., tokenize=False)`:
//!
//! - messages are JSON objects (`role`, `content`, optional `tool_calls`
//!   with `function.arguments` as an object or a string, `tool` messages,
//!   `reasoning_content`); keys whose value is `null` are dropped first, and
//!   reasoning given as `thinking` or `reasoning` is also offered as
//!   `reasoning_content` (and the other way round);
//! - the template sees `messages`, `tools`, `documents`,
//!   `add_generation_prompt`, the named special tokens (`bos_token`,
//!   `eos_token`, ...), `enable_thinking` when set, and any extra keyword
//!   arguments.
//!
//! The engine follows the conventions of Python's Jinja as transformers sets
//! it up: `trim_blocks` and `lstrip_blocks` on, no trailing newline kept, no
//! auto-escaping, `{% break %}`/`{% continue %}`, Python string and dict
//! methods (`.startswith`, `.split`, `.strip`, `.items()`, `.get`, ...), and:
//!
//! - `raise_exception(message)` fails the render with
//!   [`Error::TemplateRaised`];
//! - `strftime_now(format)` formats the current time (UTC, or
//!   [`ChatTemplateOptions::now`]);
//! - `tojson(ensure_ascii=False, indent=None, separators=None,
//!   sort_keys=False)` writes what Python's `json.dumps` writes with those
//!   arguments: non-ASCII kept, keys in insertion order, `", "`/`": "`
//!   separators, floats as Python prints them;
//! - `{{ value }}` prints what Python's `str()` prints (`None`, `True`,
//!   `['a', 1]`, `1e-05`);
//! - `{% generation %}...{% endgeneration %}` renders its body.
//!
//! ```
//! use mlx_lm::text::chat_template::{ChatTemplate, ChatTemplateOptions};
//! use serde_json::json;
//!
//! let template = ChatTemplate::new(
//!     "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}\
//!      {% if add_generation_prompt %}<assistant>{% endif %}",
//! )?;
//! let prompt = template.render(
//!     &[json!({"role": "user", "content": "Hi"})],
//!     &ChatTemplateOptions::default().add_generation_prompt(true),
//! )?;
//! assert_eq!(prompt, "<user>Hi<assistant>");
//! # Ok::<(), mlx_lm::Error>(())
//! ```

use std::collections::BTreeMap;
use std::time::SystemTime;

use minijinja::{Environment, Value};
use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::text::special_tokens::SpecialTokens;
use crate::text::template_env::{self, NowGuard, Raised};

/// The name a template gets when it has none of its own.
pub const DEFAULT_TEMPLATE_NAME: &str = "default";

/// Appended to the final message to find where it ends in the rendered text
/// when continuing it.
const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// Message fields that may carry an assistant's reasoning, the first being
/// the one templates usually read.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// Options of a render: the generation prompt, tools, thinking switch and
/// any other variables the template reads.
#[derive(Clone, Debug, Default)]
pub struct ChatTemplateOptions {
    /// Append the header that starts the assistant's reply.
    pub add_generation_prompt: bool,
    /// Leave the final message open (no end-of-turn after it) so that the
    /// model continues it. Cannot be combined with `add_generation_prompt`.
    pub continue_final_message: bool,
    /// Tool schemas (JSON Schema objects, usually `{"type": "function",
    /// "function": {...}}`); `None` renders `tools` as `none`.
    pub tools: Option<Vec<Json>>,
    /// Documents for retrieval-augmented templates; `None` renders as `none`.
    pub documents: Option<Vec<Json>>,
    /// `enable_thinking` for templates that read it; `None` leaves it
    /// undefined (the template's default).
    pub enable_thinking: Option<bool>,
    /// Further variables, overriding the special tokens of the same name.
    pub kwargs: Map<String, Json>,
    /// The template to use when a tokenizer has several named templates.
    pub template_name: Option<String>,
    /// The time `strftime_now` reports; `None` means the clock.
    pub now: Option<SystemTime>,
}

impl ChatTemplateOptions {
    /// Sets [`Self::add_generation_prompt`].
    #[must_use]
    pub fn add_generation_prompt(mut self, yes: bool) -> Self {
        self.add_generation_prompt = yes;
        self
    }

    /// Sets [`Self::continue_final_message`].
    #[must_use]
    pub fn continue_final_message(mut self, yes: bool) -> Self {
        self.continue_final_message = yes;
        self
    }

    /// Sets [`Self::tools`].
    #[must_use]
    pub fn tools(mut self, tools: Vec<Json>) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Sets [`Self::documents`].
    #[must_use]
    pub fn documents(mut self, documents: Vec<Json>) -> Self {
        self.documents = Some(documents);
        self
    }

    /// Sets [`Self::enable_thinking`].
    #[must_use]
    pub fn enable_thinking(mut self, yes: bool) -> Self {
        self.enable_thinking = Some(yes);
        self
    }

    /// Adds one variable to [`Self::kwargs`].
    #[must_use]
    pub fn kwarg(mut self, name: impl Into<String>, value: Json) -> Self {
        self.kwargs.insert(name.into(), value);
        self
    }

    /// Sets [`Self::template_name`].
    #[must_use]
    pub fn template_name(mut self, name: impl Into<String>) -> Self {
        self.template_name = Some(name.into());
        self
    }

    /// Sets [`Self::now`].
    #[must_use]
    pub fn now(mut self, now: SystemTime) -> Self {
        self.now = Some(now);
        self
    }
}

/// A compiled chat template with the special tokens it is rendered with.
///
/// Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct ChatTemplate {
    name: String,
    source: String,
    env: Environment<'static>,
    special: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .field("source_len", &self.source.len())
            .field("special", &self.special)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles a template named [`DEFAULT_TEMPLATE_NAME`].
    pub fn new(source: &str) -> Result<Self> {
        Self::named(DEFAULT_TEMPLATE_NAME, source)
    }

    /// Compiles a template under a name (used in error messages and to
    /// select among a tokenizer's templates).
    pub fn named(name: &str, source: &str) -> Result<Self> {
        let env = template_env::compile(name, source).map_err(|err| Error::TemplateSyntax {
            name: name.to_string(),
            message: describe(&err),
        })?;
        Ok(ChatTemplate {
            name: name.to_string(),
            source: source.to_string(),
            env,
            special: Vec::new(),
        })
    }

    /// Makes the named special tokens (`bos_token`, `eos_token`, ...)
    /// visible to the template.
    #[must_use]
    pub fn with_special_tokens(mut self, special: &SpecialTokens) -> Self {
        self.special = special
            .named()
            .into_iter()
            .map(|(name, token)| (name, token.to_string()))
            .collect();
        self
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation.
    ///
    /// Fails with [`Error::InvalidChatInput`] for an empty conversation, a
    /// message that is not a JSON object, or a final message that cannot
    /// be continued; with [`Error::TemplateRaised`] when the template calls
    /// `raise_exception`; with [`Error::TemplateRender`] for other failures.
    pub fn render(&self, messages: &[Json], options: &ChatTemplateOptions) -> Result<String> {
        if messages.is_empty() {
            return Err(invalid("cannot render an empty conversation"));
        }
        if options.continue_final_message && options.add_generation_prompt {
            return Err(invalid(
                "continue_final_message and add_generation_prompt cannot be combined",
            ));
        }
        let mut messages = prepare_messages(messages)?;
        let continued = if options.continue_final_message {
            Some(mark_final_message(&mut messages)?)
        } else {
            None
        };
        let context = self.context(&messages, options);
        let rendered = {
            let _now = NowGuard::set(options.now);
            self.env
                .get_template(&self.name)
                .and_then(|template| template.render(context))
                .map_err(|err| self.render_error(&err))?
        };
        match continued {
            Some(final_text) => cut_after_final_message(rendered, &final_text),
            None => Ok(rendered),
        }
    }

    fn context(&self, messages: &[Json], options: &ChatTemplateOptions) -> Value {
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        for (name, token) in &self.special {
            ctx.insert((*name).to_string(), Value::from(token.as_str()));
        }
        if let Some(yes) = options.enable_thinking {
            ctx.insert("enable_thinking".to_string(), Value::from(yes));
        }
        for (name, value) in &options.kwargs {
            ctx.insert(name.clone(), template_env::to_template_value(value));
        }
        let list = |items: &Option<Vec<Json>>| match items {
            Some(items) => items.iter().map(template_env::to_template_value).collect(),
            None => Value::from(()),
        };
        ctx.insert(
            "messages".to_string(),
            messages
                .iter()
                .map(template_env::to_template_value)
                .collect(),
        );
        ctx.insert("tools".to_string(), list(&options.tools));
        ctx.insert("documents".to_string(), list(&options.documents));
        ctx.insert(
            "add_generation_prompt".to_string(),
            Value::from(options.add_generation_prompt),
        );
        Value::from(ctx)
    }

    fn render_error(&self, err: &minijinja::Error) -> Error {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(current) = source {
            if let Some(raised) = current.downcast_ref::<Raised>() {
                return Error::TemplateRaised {
                    name: self.name.clone(),
                    message: raised.0.clone(),
                };
            }
            source = current.source();
        }
        Error::TemplateRender {
            name: self.name.clone(),
            message: describe(err),
        }
    }
}

/// The engine's message with its causes.
fn describe(err: &minijinja::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidChatInput {
        message: message.into(),
    }
}

/// Drops `null` fields and offers reasoning under all its names.
fn prepare_messages(messages: &[Json]) -> Result<Vec<Json>> {
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let Json::Object(fields) = message else {
                return Err(invalid(format!(
                    "message {i} must be a JSON object, got {message}"
                )));
            };
            let fields: Map<String, Json> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let reasoning = REASONING_FIELDS
                .iter()
                .find_map(|name| fields.get(*name))
                .cloned();
            let Some(reasoning) = reasoning else {
                return Ok(Json::Object(fields));
            };
            let mut aliased = Map::new();
            aliased.insert("thinking".to_string(), reasoning.clone());
            aliased.extend(fields);
            aliased.insert("reasoning_content".to_string(), reasoning);
            Ok(Json::Object(aliased))
        })
        .collect()
}

/// Appends the continuation tag to the text of the final message; returns
/// that text as it was.
fn mark_final_message(messages: &mut [Json]) -> Result<String> {
    let no_text =
        || invalid("continue_final_message is set but the final message has no text content");
    let content = messages
        .last_mut()
        .and_then(|m| m.get_mut("content"))
        .ok_or_else(no_text)?;
    match content {
        Json::String(text) => {
            let original = text.clone();
            text.push_str(CONTINUE_TAG);
            Ok(original)
        }
        Json::Array(blocks) => {
            let text = blocks
                .iter_mut()
                .rev()
                .find_map(|block| match block.get_mut("text") {
                    Some(Json::String(text)) => Some(text),
                    _ => None,
                })
                .ok_or_else(no_text)?;
            let original = text.clone();
            text.push_str(CONTINUE_TAG);
            Ok(original)
        }
        _ => Err(no_text()),
    }
}

/// Cuts the rendered text right after the final message's text.
fn cut_after_final_message(mut rendered: String, final_text: &str) -> Result<String> {
    let tag = CONTINUE_TAG.trim();
    if !rendered.contains(final_text.trim()) || !rendered.contains(tag) {
        return Err(invalid(
            "continue_final_message is set but the template dropped part of the final message",
        ));
    }
    let at = rendered.rfind(tag).unwrap_or(rendered.len());
    let kept_spacing = rendered[at..].starts_with(CONTINUE_TAG);
    rendered.truncate(at);
    if !kept_spacing {
        let trimmed = rendered.trim_end().len();
        rendered.truncate(trimmed);
    }
    Ok(rendered)
}
