//! The chat templates of a model directory, by name.
//!
//! Where templates come from, first match wins:
//!
//! 1. `chat_template.jinja` (named `default`) and
//!    `additional_chat_templates/NAME.jinja` (named `NAME`);
//! 2. `chat_template` in `tokenizer_config.json`: a string (named
//!    `default`) or a list of `{"name": ..., "template": ...}` objects.
//!
//! Templates compile on first use, so a model whose template the engine
//! cannot compile still loads; the error comes when that template is used.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::files;
use crate::text::chat_template::{ChatTemplate, ChatTemplateOptions, DEFAULT_TEMPLATE_NAME};
use crate::text::special_tokens::SpecialTokens;

/// The name of the template chosen when tools are given, if it exists.
pub const TOOL_USE_TEMPLATE_NAME: &str = "tool_use";

/// A set of named chat templates, compiled lazily. Cheap to clone.
#[derive(Clone, Default)]
pub struct ChatTemplates {
    entries: Vec<Arc<Entry>>,
    special: SpecialTokens,
}

struct Entry {
    name: String,
    source: String,
    /// The compiled template, or the compile error's message.
    compiled: OnceLock<std::result::Result<ChatTemplate, String>>,
}

impl std::fmt::Debug for ChatTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplates")
            .field("names", &self.names())
            .finish()
    }
}

impl ChatTemplates {
    /// No templates.
    pub fn new() -> Self {
        Self::default()
    }

    /// One template, named [`DEFAULT_TEMPLATE_NAME`].
    pub fn single(source: impl Into<String>) -> Self {
        Self::from_sources([(DEFAULT_TEMPLATE_NAME.to_string(), source.into())])
    }

    /// Templates from `(name, source)` pairs; a later duplicate name
    /// replaces an earlier one.
    pub fn from_sources(sources: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut templates = Self::default();
        for (name, source) in sources {
            templates.insert(name, source);
        }
        templates
    }

    /// Adds or replaces a template.
    pub fn insert(&mut self, name: String, source: String) {
        let entry = Arc::new(Entry {
            name,
            source,
            compiled: OnceLock::new(),
        });
        match self.entries.iter_mut().find(|e| e.name == entry.name) {
            Some(slot) => *slot = entry,
            None => self.entries.push(entry),
        }
    }

    /// Reads the templates of a model directory (see the module docs);
    /// empty when it has none.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config_path = dir.join("tokenizer_config.json");
        let config = files::read_json_optional(&config_path)?;
        Self::from_dir_with_config(dir, config.as_ref(), &config_path)
    }

    /// [`Self::from_dir`] with `tokenizer_config.json` already parsed.
    pub(crate) fn from_dir_with_config(
        dir: &Path,
        config: Option<&Json>,
        config_path: &Path,
    ) -> Result<Self> {
        let mut templates = Self::default();
        if let Some(source) = files::read_text_optional(&dir.join("chat_template.jinja"))? {
            templates.insert(DEFAULT_TEMPLATE_NAME.to_string(), source);
        }
        let extra_dir = dir.join("additional_chat_templates");
        if extra_dir.is_dir() {
            for (name, path) in jinja_files(&extra_dir)? {
                if let Some(source) = files::read_text_optional(&path)? {
                    templates.insert(name, source);
                }
            }
        }
        if !templates.is_empty() {
            return Ok(templates);
        }
        match config.and_then(|c| c.get("chat_template")) {
            None | Some(Json::Null) => Ok(templates),
            Some(value) => Self::from_config_value(value, config_path),
        }
    }

    /// Parses the `chat_template` field of `tokenizer_config.json`.
    fn from_config_value(value: &Json, path: &Path) -> Result<Self> {
        let bad = |message: String| Error::InvalidConfig {
            path: path.to_path_buf(),
            field: "chat_template".to_string(),
            message,
        };
        match value {
            Json::String(source) => Ok(Self::single(source.clone())),
            Json::Array(items) => {
                let mut templates = Self::default();
                for (i, item) in items.iter().enumerate() {
                    let name = item.get("name").and_then(Json::as_str);
                    let source = item.get("template").and_then(Json::as_str);
                    match (name, source) {
                        (Some(name), Some(source)) => {
                            templates.insert(name.to_string(), source.to_string());
                        }
                        _ => {
                            return Err(bad(format!(
                                "item {i} needs string fields `name` and `template`"
                            )));
                        }
                    }
                }
                Ok(templates)
            }
            other => Err(bad(format!(
                "expected a string or a list of named templates, got {other}"
            ))),
        }
    }

    /// Makes the named special tokens visible to every template.
    #[must_use]
    pub fn with_special_tokens(mut self, special: &SpecialTokens) -> Self {
        self.special = special.clone();
        // Compiled templates captured the old tokens: start over.
        self.entries = self
            .entries
            .iter()
            .map(|e| {
                Arc::new(Entry {
                    name: e.name.clone(),
                    source: e.source.clone(),
                    compiled: OnceLock::new(),
                })
            })
            .collect();
        self
    }

    /// The names of the templates, in the order they were added.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// `true` when there is no template.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The Jinja source of a template.
    pub fn source(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.source.as_str())
    }

    /// Chooses a template: the one named `name` if given; otherwise
    /// [`TOOL_USE_TEMPLATE_NAME`] when `with_tools` and it exists, else
    /// [`DEFAULT_TEMPLATE_NAME`], else the only template there is.
    pub fn select(&self, name: Option<&str>, with_tools: bool) -> Result<&ChatTemplate> {
        let entry = match name {
            Some(name) => self.find(name).ok_or_else(|| Error::ChatTemplateNotFound {
                name: name.to_string(),
                available: self.names().iter().map(|n| n.to_string()).collect(),
            })?,
            None => self.default_entry(with_tools)?,
        };
        let compiled = entry.compiled.get_or_init(|| {
            ChatTemplate::named(&entry.name, &entry.source)
                .map(|t| t.with_special_tokens(&self.special))
                .map_err(|err| match err {
                    Error::TemplateSyntax { message, .. } => message,
                    other => other.to_string(),
                })
        });
        compiled.as_ref().map_err(|message| Error::TemplateSyntax {
            name: entry.name.clone(),
            message: message.clone(),
        })
    }

    /// Renders with the template that `options` selects (see
    /// [`Self::select`]).
    pub fn render(&self, messages: &[Json], options: &ChatTemplateOptions) -> Result<String> {
        self.select(options.template_name.as_deref(), options.tools.is_some())?
            .render(messages, options)
    }

    fn find(&self, name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(Arc::as_ref)
    }

    fn default_entry(&self, with_tools: bool) -> Result<&Entry> {
        if self.entries.is_empty() {
            return Err(Error::NoChatTemplate {
                message: "the tokenizer has no chat template (no chat_template.jinja, \
                          no `chat_template` in tokenizer_config.json)"
                    .to_string(),
            });
        }
        if with_tools && let Some(entry) = self.find(TOOL_USE_TEMPLATE_NAME) {
            return Ok(entry);
        }
        if let Some(entry) = self.find(DEFAULT_TEMPLATE_NAME) {
            return Ok(entry);
        }
        match self.entries.as_slice() {
            [only] => Ok(only),
            _ => Err(Error::NoChatTemplate {
                message: format!(
                    "several chat templates and none named `{DEFAULT_TEMPLATE_NAME}`: pick one of {:?}",
                    self.names()
                ),
            }),
        }
    }

    /// The `chat_template` value for `tokenizer_config.json`: a string for
    /// a lone default template, otherwise a list of named templates.
    pub(crate) fn to_config_value(&self) -> Option<Json> {
        match self.entries.as_slice() {
            [] => None,
            [only] if only.name == DEFAULT_TEMPLATE_NAME => Some(Json::String(only.source.clone())),
            entries => Some(Json::Array(
                entries
                    .iter()
                    .map(|e| serde_json::json!({"name": e.name, "template": e.source}))
                    .collect(),
            )),
        }
    }
}

/// `(stem, path)` of the `*.jinja` files in a folder, sorted by name.
fn jinja_files(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "jinja")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            found.push((stem.to_string(), path.clone()));
        }
    }
    found.sort();
    Ok(found)
}
