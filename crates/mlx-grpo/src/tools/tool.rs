//! A tool: a name, a JSON-schema description for the chat template, and a
//! Rust function from plain JSON arguments to a text result.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::rewards::panic_message;

/// What a tool function returns: the result text, or an error message that
/// the model sees instead.
pub type ToolResultText = std::result::Result<String, String>;

type ToolFn = dyn Fn(&Value) -> ToolResultText + Send + Sync;

/// A function the model can call.
///
/// The function gets the call's arguments (normally a JSON object) and
/// returns the text the model reads back, or an error message. It may run
/// on any thread; a panic inside it becomes an error result for that call.
///
/// ```
/// use mlx_grpo::tools::Tool;
/// use serde_json::json;
///
/// let add = Tool::new(
///     "add",
///     "Adds two integers.",
///     json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
///            "required": ["a", "b"]}),
///     |args| {
///         let n = |k: &str| args[k].as_i64().ok_or(format!("{k} must be an integer"));
///         Ok((n("a")? + n("b")?).to_string())
///     },
/// );
/// assert_eq!(add.call(&json!({"a": 2, "b": 3})), Ok("5".to_string()));
/// assert!(add.call(&json!({"a": 2})).is_err());
/// assert_eq!(add.schema()["function"]["name"], "add");
/// ```
#[derive(Clone)]
pub struct Tool {
    name: String,
    description: String,
    parameters: Value,
    function: Arc<ToolFn>,
}

impl fmt::Debug for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("parameters", &self.parameters)
            .finish_non_exhaustive()
    }
}

impl Tool {
    /// A tool named `name`, described by `description` and the JSON schema
    /// `parameters` of its arguments, running `function`.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
        function: impl Fn(&Value) -> ToolResultText + Send + Sync + 'static,
    ) -> Self {
        Tool {
            name: name.into(),
            description: description.into(),
            parameters,
            function: Arc::new(function),
        }
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tool as chat templates read it from their `tools`:
    /// `{"type": "function", "function": {"name", "description",
    /// "parameters"}}`.
    pub fn schema(&self) -> Value {
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        })
    }

    /// Runs the function on `arguments`; a panic becomes an error result.
    pub fn call(&self, arguments: &Value) -> ToolResultText {
        match catch_unwind(AssertUnwindSafe(|| (self.function)(arguments))) {
            Ok(result) => result,
            Err(payload) => Err(format!(
                "tool {} panicked: {}",
                self.name,
                panic_message(payload.as_ref())
            )),
        }
    }
}
