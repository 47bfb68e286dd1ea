//! Python-compatible text forms of template values.
//!
//! Chat templates are written against Python's Jinja, so what a template
//! prints must follow Python: `json.dumps` for the `tojson` filter (with
//! `ensure_ascii=False` and insertion-ordered keys as chat templates expect)
//! and `str()`/`repr()` for `{{ value }}` (`None`, `True`, `['a', 1]`,
//! `1e-05`).

use std::fmt::Write as _;

use minijinja::value::ValueKind;
use minijinja::{Error as TemplateError, ErrorKind, Value};

/// Options of [`dumps`], with the meaning of Python's `json.dumps` arguments.
#[derive(Clone, Debug, Default)]
pub(crate) struct JsonOptions {
    /// Escape every non-ASCII character as `\uXXXX`.
    pub ensure_ascii: bool,
    /// Pretty-print with this indentation per level (`None`: one line).
    pub indent: Option<String>,
    /// `(item separator, key separator)`; defaults depend on `indent`.
    pub separators: Option<(String, String)>,
    /// Sort object keys.
    pub sort_keys: bool,
}

/// Serializes a template value the way Python's `json.dumps` would.
pub(crate) fn dumps(value: &Value, options: &JsonOptions) -> Result<String, TemplateError> {
    let (item_sep, key_sep) = match &options.separators {
        Some((item, key)) => (item.as_str(), key.as_str()),
        None if options.indent.is_some() => (",", ": "),
        None => (", ", ": "),
    };
    let writer = JsonWriter {
        options,
        item_sep,
        key_sep,
    };
    let mut out = String::new();
    writer.write(&mut out, value, 0)?;
    Ok(out)
}

struct JsonWriter<'a> {
    options: &'a JsonOptions,
    item_sep: &'a str,
    key_sep: &'a str,
}

impl JsonWriter<'_> {
    fn write(&self, out: &mut String, value: &Value, level: usize) -> Result<(), TemplateError> {
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => write_number(out, value, true),
            ValueKind::String => write_json_string(
                out,
                value.as_str().unwrap_or_default(),
                self.options.ensure_ascii,
            ),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.write_container(out, level, ('[', ']'), &items, |out, item, level| {
                    self.write(out, item, level)
                })?;
            }
            ValueKind::Map => {
                let mut entries = Vec::new();
                for key in value.try_iter()? {
                    let item = value.get_item(&key)?;
                    entries.push((self.key_string(&key)?, item));
                }
                if self.options.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.write_container(
                    out,
                    level,
                    ('{', '}'),
                    &entries,
                    |out, (key, item), level| {
                        write_json_string(out, key, self.options.ensure_ascii);
                        out.push_str(self.key_sep);
                        self.write(out, item, level)
                    },
                )?;
            }
            other => {
                return Err(TemplateError::new(
                    ErrorKind::InvalidOperation,
                    format!("object of kind {other} is not JSON serializable"),
                ));
            }
        }
        Ok(())
    }

    fn write_container<T>(
        &self,
        out: &mut String,
        level: usize,
        (open, close): (char, char),
        items: &[T],
        mut write_item: impl FnMut(&mut String, &T, usize) -> Result<(), TemplateError>,
    ) -> Result<(), TemplateError> {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return Ok(());
        }
        let indent = self.options.indent.as_deref();
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(self.item_sep);
            }
            if let Some(indent) = indent {
                out.push('\n');
                out.push_str(&indent.repeat(level + 1));
            }
            write_item(out, item, level + 1)?;
        }
        if let Some(indent) = indent {
            out.push('\n');
            out.push_str(&indent.repeat(level));
        }
        out.push(close);
        Ok(())
    }

    /// Object keys become strings as Python's `json` converts them.
    fn key_string(&self, key: &Value) -> Result<String, TemplateError> {
        Ok(match key.kind() {
            ValueKind::String => key.as_str().unwrap_or_default().to_string(),
            ValueKind::None => "null".to_string(),
            ValueKind::Bool => (if key.is_true() { "true" } else { "false" }).to_string(),
            ValueKind::Number => {
                let mut s = String::new();
                write_number(&mut s, key, true);
                s
            }
            other => {
                return Err(TemplateError::new(
                    ErrorKind::InvalidOperation,
                    format!("keys must be str, int, float, bool or None, not {other}"),
                ));
            }
        })
    }
}

/// Writes a number: integers in decimal, floats as Python's `repr`.
/// `json` selects JSON's spelling of non-finite floats (`NaN`, `Infinity`).
fn write_number(out: &mut String, value: &Value, json: bool) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
        return;
    }
    match f64::try_from(value.clone()) {
        Ok(x) => out.push_str(&py_float_repr(x, json)),
        Err(_) => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below
/// 1e-4 and from 1e16 on. `json` selects `NaN`/`Infinity` over `nan`/`inf`.
pub(crate) fn py_float_repr(x: f64, json: bool) -> String {
    if x.is_nan() {
        return if json { "NaN" } else { "nan" }.to_string();
    }
    if x.is_infinite() {
        let sign = if x < 0.0 { "-" } else { "" };
        return format!("{sign}{}", if json { "Infinity" } else { "inf" });
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e-5".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        if point <= 0 {
            let zeros = "0".repeat(point.unsigned_abs() as usize);
            format!("{sign}0.{zeros}{digits}")
        } else {
            let point = point as usize;
            if digits.len() <= point {
                let zeros = "0".repeat(point - digits.len());
                format!("{sign}{digits}{zeros}.0")
            } else {
                format!("{sign}{}.{}", &digits[..point], &digits[point..])
            }
        }
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.unsigned_abs())
    }
}

/// Writes a JSON string literal with Python's escaping rules.
fn write_json_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `str(value)` for what `{{ value }}` prints: strings as they are,
/// `None`, `True`/`False`, containers as their `repr`.
pub(crate) fn py_str(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        _ => py_repr(out, value),
    }
}

/// Python's `repr(value)` for JSON-like values.
pub(crate) fn py_repr(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => {
            if value.is_integer() {
                write_number(out, value, false);
            } else {
                match f64::try_from(value.clone()) {
                    Ok(x) => out.push_str(&py_float_repr(x, false)),
                    Err(_) => {
                        let _ = write!(out, "{value}");
                    }
                }
            }
        }
        ValueKind::String => write_py_string_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            let Ok(items) = value.try_iter() else {
                let _ = write!(out, "{value}");
                return;
            };
            let items: Vec<Value> = items.collect();
            let tuple = value.is_tuple();
            out.push(if tuple { '(' } else { '[' });
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, item);
            }
            if tuple && items.len() == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        ValueKind::Map => {
            let Ok(keys) = value.try_iter() else {
                let _ = write!(out, "{value}");
                return;
            };
            out.push('{');
            for (i, key) in keys.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &key);
                out.push_str(": ");
                if let Ok(item) = value.get_item(&key) {
                    py_repr(out, &item);
                }
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and
/// no double quote; non-printable characters escaped.
fn write_py_string_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_py_printable(c) => {
                let code = c as u32;
                let _ = if code <= 0xff {
                    write!(out, "\\x{code:02x}")
                } else if code <= 0xffff {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Approximates Python's `str.isprintable` for one character: controls,
/// separators other than the ASCII space, format characters, private-use
/// characters and noncharacters are not printable.
fn is_py_printable(c: char) -> bool {
    let code = c as u32;
    !(code < 0x20
        || (0x7f..=0xa0).contains(&code)
        || code == 0xad
        || code == 0x1680
        || (0x2000..=0x200f).contains(&code)
        || (0x2028..=0x202f).contains(&code)
        || (0x205f..=0x206f).contains(&code)
        || code == 0x3000
        || code == 0xfeff
        || (0xfff9..=0xfffb).contains(&code)
        || (0xe000..=0xf8ff).contains(&code)
        || (0xfdd0..=0xfdef).contains(&code)
        || (code & 0xfffe) == 0xfffe
        || code >= 0xf0000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (1e15, "1000000000000000.0"),
            (1e100, "1e+100"),
            (-0.0, "-0.0"),
            (3.0e-7, "3e-07"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float_repr(x, false), want, "{x}");
        }
        assert_eq!(py_float_repr(f64::NAN, true), "NaN");
        assert_eq!(py_float_repr(f64::NEG_INFINITY, true), "-Infinity");
    }

    #[test]
    fn dumps_compact_and_indented() {
        let v = Value::from_iter([Value::from(1), Value::from("é\"\n"), Value::from(())]);
        let compact = dumps(&v, &JsonOptions::default()).unwrap_or_default();
        assert_eq!(compact, "[1, \"é\\\"\\n\", null]");
        let indented = dumps(
            &v,
            &JsonOptions {
                indent: Some("  ".into()),
                ..JsonOptions::default()
            },
        )
        .unwrap_or_default();
        assert_eq!(indented, "[\n  1,\n  \"é\\\"\\n\",\n  null\n]");
        let ascii = dumps(
            &Value::from("é😀"),
            &JsonOptions {
                ensure_ascii: true,
                ..JsonOptions::default()
            },
        )
        .unwrap_or_default();
        assert_eq!(ascii, "\"\\u00e9\\ud83d\\ude00\"");
    }

    #[test]
    fn repr_of_strings_and_containers() {
        let mut out = String::new();
        py_repr(&mut out, &Value::from("it's"));
        assert_eq!(out, "\"it's\"");
        out.clear();
        let v = Value::from_iter([Value::from(true), Value::from("a\tb"), Value::from(())]);
        py_str(&mut out, &v);
        assert_eq!(out, "[True, 'a\\tb', None]");
    }
}
