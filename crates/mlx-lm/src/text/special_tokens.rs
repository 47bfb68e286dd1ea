//! Named special tokens (`bos_token`, `eos_token`, ...) and the end-of-sequence
//! ids that model configuration files declare.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// The named special tokens of a tokenizer, as `tokenizer_config.json`
/// declares them.
///
/// Chat templates see the named ones as the variables `bos_token`,
/// `eos_token`, `unk_token`, `sep_token`, `pad_token`, `cls_token` and
/// `mask_token` (only those that are set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning-of-sequence token.
    pub bos: Option<String>,
    /// End-of-sequence token (for chat models usually the end-of-turn token).
    pub eos: Option<String>,
    /// Token for unknown input.
    pub unk: Option<String>,
    /// Separator token.
    pub sep: Option<String>,
    /// Padding token.
    pub pad: Option<String>,
    /// Classification token.
    pub cls: Option<String>,
    /// Mask token.
    pub mask: Option<String>,
    /// Further special tokens (`additional_special_tokens`).
    pub additional: Vec<String>,
}

impl SpecialTokens {
    /// The variable names under which chat templates see the named tokens.
    pub const NAMES: [&'static str; 7] = [
        "bos_token",
        "eos_token",
        "unk_token",
        "sep_token",
        "pad_token",
        "cls_token",
        "mask_token",
    ];

    /// The token stored under a variable name of [`Self::NAMES`]
    /// (`"eos_token"` gives [`Self::eos`]); `None` when unset or unknown.
    pub fn get(&self, name: &str) -> Option<&str> {
        let slot = match name {
            "bos_token" => &self.bos,
            "eos_token" => &self.eos,
            "unk_token" => &self.unk,
            "sep_token" => &self.sep,
            "pad_token" => &self.pad,
            "cls_token" => &self.cls,
            "mask_token" => &self.mask,
            _ => return None,
        };
        slot.as_deref()
    }

    /// The named tokens that are set, as `(variable name, token)` pairs in
    /// the order of [`Self::NAMES`].
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        Self::NAMES
            .iter()
            .filter_map(|name| self.get(name).map(|token| (*name, token)))
            .collect()
    }

    /// Takes every token `other` sets, replacing this one's; adds its
    /// additional tokens not already listed.
    pub fn merge(&mut self, other: SpecialTokens) {
        let slots = [
            (&mut self.bos, other.bos),
            (&mut self.eos, other.eos),
            (&mut self.unk, other.unk),
            (&mut self.sep, other.sep),
            (&mut self.pad, other.pad),
            (&mut self.cls, other.cls),
            (&mut self.mask, other.mask),
        ];
        for (slot, value) in slots {
            if value.is_some() {
                *slot = value;
            }
        }
        for token in other.additional {
            push_unique(&mut self.additional, token);
        }
    }

    /// Reads the special tokens of a parsed `tokenizer_config.json` (or
    /// `special_tokens_map.json`, which has the same fields).
    ///
    /// Each named field may be a string, `null`, or an object with a
    /// `content` string (the serialized form of an added token).
    pub(crate) fn from_tokenizer_config(config: &Value, path: &Path) -> Result<Self> {
        let field = |name: &str| token_field(config.get(name), path, name);
        let mut additional = Vec::new();
        for name in ["additional_special_tokens", "extra_special_tokens"] {
            match config.get(name) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let field = format!("{name}[{i}]");
                        if let Some(token) = token_field(Some(item), path, &field)? {
                            push_unique(&mut additional, token);
                        }
                    }
                }
                Some(Value::Object(map)) => {
                    for (key, item) in map {
                        let field = format!("{name}.{key}");
                        if let Some(token) = token_field(Some(item), path, &field)? {
                            push_unique(&mut additional, token);
                        }
                    }
                }
                Some(other) => {
                    return Err(invalid(path, name, "a list of tokens", other));
                }
            }
        }
        Ok(SpecialTokens {
            bos: field("bos_token")?,
            eos: field("eos_token")?,
            unk: field("unk_token")?,
            sep: field("sep_token")?,
            pad: field("pad_token")?,
            cls: field("cls_token")?,
            mask: field("mask_token")?,
            additional,
        })
    }
}

fn push_unique(list: &mut Vec<String>, token: String) {
    if !list.contains(&token) {
        list.push(token);
    }
}

/// Reads a token given as a string, `null`, or `{"content": "..."}`.
fn token_field(value: Option<&Value>, path: &Path, field: &str) -> Result<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(map)) => match map.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(Error::InvalidConfig {
                path: path.to_path_buf(),
                field: field.to_string(),
                message: "an added-token object needs a string `content`".to_string(),
            }),
        },
        Some(other) => Err(invalid(path, field, "a string, null or an object", other)),
    }
}

fn invalid(path: &Path, field: &str, expected: &str, got: &Value) -> Error {
    Error::InvalidConfig {
        path: path.to_path_buf(),
        field: field.to_string(),
        message: format!("expected {expected}, got {got}"),
    }
}

/// Reads `eos_token_id` (an id, a list of ids, or `null`) from a parsed
/// `config.json` or `generation_config.json`.
///
/// Multimodal configurations keep it under `text_config`; that is used when
/// the top level has none.
pub(crate) fn eos_ids_from_model_config(config: &Value, path: &Path) -> Result<Vec<u32>> {
    let (field, value) = match config.get("eos_token_id") {
        Some(v) if !v.is_null() => ("eos_token_id", Some(v)),
        _ => (
            "text_config.eos_token_id",
            config
                .get("text_config")
                .and_then(|t| t.get("eos_token_id")),
        ),
    };
    let id = |v: &Value| -> Result<u32> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid(path, field, "a non-negative 32-bit token id", v))
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(id).collect(),
        Some(v) => Ok(vec![id(v)?]),
    }
}
