//! The template engine set up the way Hugging Face chat templates expect.
//!
//! Chat templates are Jinja written for Python. The environment here follows
//! the conventions of the Python side: `trim_blocks` and `lstrip_blocks` on,
//! no trailing newline kept, no auto-escaping, loop controls, Python string
//! and dict methods (`.startswith`, `.split`, `.items()`, ...), and the
//! globals and filters chat templates call:
//!
//! - `raise_exception(message)` fails the render with that message;
//! - `strftime_now(format)` formats the current time (UTC);
//! - `tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)`
//!   serializes as Python's `json.dumps` with those defaults (non-ASCII kept,
//!   keys in insertion order, `", "`/`": "` separators);
//! - `{{ value }}` prints what Python's `str()` prints (`None`, `True`,
//!   `['a', 1]`).
//!
//! `{% generation %}`/`{% endgeneration %}` (used by templates that mark the
//! assistant's tokens) render their body unchanged.

use std::cell::Cell;
use std::time::SystemTime;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Rest, Value, ValueKind, ValueOrKwargs, from_args};
use minijinja::{AutoEscape, Environment, Error as TemplateError, ErrorKind};

use crate::text::pyformat::{self, JsonOptions};
use crate::text::strftime::strftime;

/// The message given to `raise_exception`, carried as the source of the
/// engine's error so that it can be told apart from other failures.
#[derive(Debug)]
pub(crate) struct Raised(pub String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

thread_local! {
    /// The time `strftime_now` reports during a render on this thread;
    /// `None` means the clock.
    static FIXED_NOW: Cell<Option<SystemTime>> = const { Cell::new(None) };
}

/// Sets the time `strftime_now` reports while it lives (on this thread).
pub(crate) struct NowGuard {
    previous: Option<SystemTime>,
}

impl NowGuard {
    /// Fixes the time for renders on this thread until the guard drops.
    pub(crate) fn set(now: Option<SystemTime>) -> Self {
        let previous = FIXED_NOW.with(|cell| cell.replace(now));
        NowGuard { previous }
    }
}

impl Drop for NowGuard {
    fn drop(&mut self) {
        FIXED_NOW.with(|cell| cell.set(self.previous));
    }
}

/// Builds an environment holding one template, `name`, compiled from
/// `source`.
pub(crate) fn compile(name: &str, source: &str) -> Result<Environment<'static>, TemplateError> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()?;
    env.set_syntax(syntax);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| {
        let mut text = String::new();
        pyformat::py_str(&mut text, value);
        out.write_str(&text)
            .map_err(|_| TemplateError::new(ErrorKind::WriteFailure, "cannot write output"))
    });
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_template_owned(name.to_string(), strip_generation_tags(source))?;
    Ok(env)
}

fn raise_exception(message: Option<Value>) -> Result<Value, TemplateError> {
    let message = match message {
        Some(v) => {
            let mut text = String::new();
            pyformat::py_str(&mut text, &v);
            text
        }
        None => String::new(),
    };
    Err(
        TemplateError::new(ErrorKind::InvalidOperation, message.clone())
            .with_source(Raised(message)),
    )
}

fn strftime_now(format: String) -> String {
    let now = FIXED_NOW.with(Cell::get).unwrap_or_else(SystemTime::now);
    strftime(&format, now)
}

/// The `tojson` filter with the arguments of Python's `json.dumps` that
/// chat templates use: `ensure_ascii`, `indent`, `separators`, `sort_keys`,
/// positionally or by keyword.
fn tojson(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, TemplateError> {
    let args = args.into_values();
    let (positional, kwargs): (&[Value], Kwargs) = from_args(&args)?;
    if positional.len() > 4 {
        return Err(TemplateError::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 positional arguments",
        ));
    }
    let mut positional = positional.iter().cloned();
    let mut pick = |name: &str| -> Result<Option<Value>, TemplateError> {
        let given = positional.next();
        let named: Option<Value> = kwargs.get(name)?;
        Ok(named.or(given))
    };
    let ensure_ascii = pick("ensure_ascii")?;
    let indent = pick("indent")?;
    let separators = pick("separators")?;
    let sort_keys = pick("sort_keys")?;
    kwargs.assert_all_used()?;
    let options = JsonOptions {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        indent: indent.map(indent_string).transpose()?.flatten(),
        separators: separators.map(separator_pair).transpose()?.flatten(),
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
    };
    pyformat::dumps(value, &options).map(Value::from)
}

/// `indent` as Python takes it: a count of spaces, a string, or `None`.
fn indent_string(value: Value) -> Result<Option<String>, TemplateError> {
    match value.kind() {
        ValueKind::None | ValueKind::Undefined => Ok(None),
        ValueKind::String => Ok(value.as_str().map(str::to_string)),
        ValueKind::Number if value.is_integer() => {
            let n = i64::try_from(value).unwrap_or(0).clamp(0, 1024);
            Ok(Some(" ".repeat(n as usize)))
        }
        _ => Err(TemplateError::new(
            ErrorKind::InvalidOperation,
            format!("tojson: indent must be an integer or a string, not {value}"),
        )),
    }
}

/// `separators` as Python takes it: a pair of strings or `None`.
fn separator_pair(value: Value) -> Result<Option<(String, String)>, TemplateError> {
    if value.is_none() || value.is_undefined() {
        return Ok(None);
    }
    let parts: Vec<Value> = match value.kind() {
        ValueKind::Seq => value.try_iter()?.collect(),
        _ => Vec::new(),
    };
    match parts.as_slice() {
        [item, key] if item.as_str().is_some() && key.as_str().is_some() => Ok(Some((
            item.as_str().unwrap_or_default().to_string(),
            key.as_str().unwrap_or_default().to_string(),
        ))),
        _ => Err(TemplateError::new(
            ErrorKind::InvalidOperation,
            format!("tojson: separators must be a pair of strings, not {value}"),
        )),
    }
}

/// Converts a JSON value into a template value, keeping key order and the
/// difference between integers and floats.
pub(crate) fn to_template_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => items.iter().map(to_template_value).collect(),
        serde_json::Value::Object(map) => {
            let map: indexmap::IndexMap<Value, Value> = map
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), to_template_value(v)))
                .collect();
            Value::from(map)
        }
    }
}

/// Rewrites `{% generation %}` and `{% endgeneration %}` into an always-true
/// `if` block, which has the same whitespace behavior and renders its body.
fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        match parse_generation_tag(tag) {
            Some((len, open_ws, closing, close_ws)) => {
                let body = if closing { "endif" } else { "if true" };
                out.push_str("{%");
                out.push_str(open_ws);
                out.push(' ');
                out.push_str(body);
                out.push(' ');
                out.push_str(close_ws);
                out.push_str("%}");
                rest = &tag[len..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Recognizes `{%[-+]? (end)?generation [-+]?%}` at the start of `tag`:
/// returns (length, opening modifier, is closing, closing modifier).
fn parse_generation_tag(tag: &str) -> Option<(usize, &str, bool, &str)> {
    let inner = tag.strip_prefix("{%")?;
    let open_ws = match inner.chars().next() {
        Some('-') => "-",
        Some('+') => "+",
        _ => "",
    };
    let body = &inner[open_ws.len()..];
    let trimmed = body.trim_start();
    let (closing, after) = if let Some(after) = trimmed.strip_prefix("endgeneration") {
        (true, after)
    } else if let Some(after) = trimmed.strip_prefix("generation") {
        (false, after)
    } else {
        return None;
    };
    let after_ws = after.trim_start();
    if after_ws.len() == after.len() && !after.starts_with(['-', '+', '%']) {
        return None; // e.g. `{% generation_x %}`
    }
    let (close_ws, end) = if let Some(end) = after_ws.strip_prefix("-%}") {
        ("-", end)
    } else if let Some(end) = after_ws.strip_prefix("+%}") {
        ("+", end)
    } else if let Some(end) = after_ws.strip_prefix("%}") {
        ("", end)
    } else {
        return None;
    };
    Some((tag.len() - end.len(), open_ws, closing, close_ws))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_if_blocks() {
        let src = "a{%- generation -%}b{% endgeneration %}c{% generation_x %}";
        assert_eq!(
            strip_generation_tags(src),
            "a{%- if true -%}b{% endif %}c{% generation_x %}"
        );
    }
}
