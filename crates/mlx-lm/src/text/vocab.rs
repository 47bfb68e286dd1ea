//! Small word-level and character-level tokenizers built from a vocabulary
//! list, for toy models and tests.
//!
//! The result is an ordinary [`Tokenizer`]: [`Tokenizer::save_dir`] writes a
//! `tokenizer.json` and `tokenizer_config.json` that load again with
//! [`Tokenizer::from_dir`] (and with Hugging Face's `AutoTokenizer`).
//!
//! ```
//! use mlx_lm::text::vocab::VocabTokenizerBuilder;
//!
//! let tok = VocabTokenizerBuilder::char_level("0123456789+= ".chars())
//!     .unk("<unk>")
//!     .eos("<|im_end|>")
//!     .pad("<pad>")
//!     .special_token("<|im_start|>")
//!     .build()?;
//! let ids = tok.encode("<|im_start|>1+2=3<|im_end|>", false)?;
//! assert_eq!(ids.len(), 7);
//! assert_eq!(tok.decode(&ids, true)?, "1+2=3");
//! # Ok::<(), mlx_lm::Error>(())
//! ```

use serde_json::{Map, Value as Json, json};

use crate::error::{Error, Result};
use crate::text::special_tokens::SpecialTokens;
use crate::text::tokenizer::Tokenizer;

/// The token unit of a [`VocabTokenizerBuilder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabLevel {
    /// One token per word: text is split into runs of word characters and
    /// runs of punctuation, dropping whitespace; decoding joins tokens with
    /// single spaces.
    Word,
    /// One token per character (whitespace included); decoding concatenates.
    Char,
}

/// Builds a [`Tokenizer`] whose vocabulary is a given list.
///
/// Ids follow the list, then the unknown token (if not in the list), then the
/// special tokens in the order they were named. Input outside the vocabulary
/// encodes as the unknown token; without one, encoding it fails.
#[derive(Clone, Debug)]
pub struct VocabTokenizerBuilder {
    level: VocabLevel,
    vocab: Vec<String>,
    special: SpecialTokens,
    /// Special tokens in the order they were named (named ones included).
    special_order: Vec<String>,
    /// Tokens that are not special but recognized whole, in order.
    added: Vec<String>,
    chat_template: Option<String>,
}

impl VocabTokenizerBuilder {
    /// A word-level tokenizer over `words`.
    pub fn word_level<S: Into<String>>(words: impl IntoIterator<Item = S>) -> Self {
        Self::new(VocabLevel::Word, words)
    }

    /// A character-level tokenizer over `chars` (each entry one character;
    /// `char`s and one-character strings both work).
    pub fn char_level<S: Into<String>>(chars: impl IntoIterator<Item = S>) -> Self {
        Self::new(VocabLevel::Char, chars)
    }

    fn new<S: Into<String>>(level: VocabLevel, vocab: impl IntoIterator<Item = S>) -> Self {
        VocabTokenizerBuilder {
            level,
            vocab: vocab.into_iter().map(Into::into).collect(),
            special: SpecialTokens::default(),
            special_order: Vec::new(),
            added: Vec::new(),
            chat_template: None,
        }
    }

    fn remember(&mut self, token: &str) {
        if !self.special_order.iter().any(|t| t == token) {
            self.special_order.push(token.to_string());
        }
    }

    /// Sets the unknown token (added to the vocabulary if needed).
    #[must_use]
    pub fn unk(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.remember(&token);
        self.special.unk = Some(token);
        self
    }

    /// Sets the beginning-of-sequence token.
    #[must_use]
    pub fn bos(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.remember(&token);
        self.special.bos = Some(token);
        self
    }

    /// Sets the end-of-sequence token.
    #[must_use]
    pub fn eos(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.remember(&token);
        self.special.eos = Some(token);
        self
    }

    /// Sets the padding token.
    #[must_use]
    pub fn pad(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.remember(&token);
        self.special.pad = Some(token);
        self
    }

    /// Adds a further special token (recognized whole in input text, left
    /// out by `skip_special_tokens`).
    #[must_use]
    pub fn special_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.remember(&token);
        if !self.special.additional.contains(&token) {
            self.special.additional.push(token);
        }
        self
    }

    /// Adds a token that is recognized whole in input text and kept by
    /// decoding even with `skip_special_tokens` (not special, like Qwen3's
    /// `<tool_call>`); such tokens get the ids after the special tokens, in
    /// the order they were added.
    #[must_use]
    pub fn added_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        if !self.added.contains(&token) {
            self.added.push(token);
        }
        self
    }

    /// Sets the chat template.
    #[must_use]
    pub fn chat_template(mut self, source: impl Into<String>) -> Self {
        self.chat_template = Some(source.into());
        self
    }

    /// Builds the tokenizer. Fails with [`Error::InvalidVocabulary`] for an
    /// empty or duplicated vocabulary entry, an empty special token, a
    /// character-level entry that is not one character, or a word-level
    /// entry containing whitespace.
    pub fn build(self) -> Result<Tokenizer> {
        let definition = self.definition()?;
        let text = definition.to_string();
        let tokenizer = tokenizers::Tokenizer::from_bytes(text.as_bytes())
            .map_err(|e| Error::tokenizer("build", e))?;
        let tok = Tokenizer::from_tokenizer(tokenizer, self.special)?;
        Ok(match self.chat_template {
            Some(source) => tok.with_chat_template(source),
            None => tok,
        })
    }

    /// The `tokenizer.json` document.
    fn definition(&self) -> Result<Json> {
        let bad = |message: String| Error::InvalidVocabulary { message };
        if self.vocab.is_empty() {
            return Err(bad("the vocabulary is empty".to_string()));
        }
        let mut ids: Map<String, Json> = Map::new();
        for (i, token) in self.vocab.iter().enumerate() {
            match self.level {
                VocabLevel::Char if token.chars().count() != 1 => {
                    return Err(bad(format!(
                        "entry {i} ({token:?}) is not a single character"
                    )));
                }
                VocabLevel::Word if token.is_empty() || token.chars().any(char::is_whitespace) => {
                    return Err(bad(format!(
                        "entry {i} ({token:?}) is empty or contains whitespace"
                    )));
                }
                _ => {}
            }
            if ids.insert(token.clone(), json!(i)).is_some() {
                return Err(bad(format!("entry {i} ({token:?}) appears twice")));
            }
        }
        if let Some(unk) = &self.special.unk
            && !ids.contains_key(unk)
        {
            ids.insert(unk.clone(), json!(ids.len()));
        }
        let mut next_id = ids.len();
        let mut added = Vec::new();
        for token in &self.special_order {
            if token.is_empty() {
                return Err(bad("a special token is empty".to_string()));
            }
            let id = match ids.get(token) {
                Some(id) => id.clone(),
                None => {
                    next_id += 1;
                    json!(next_id - 1)
                }
            };
            added.push(json!({
                "id": id,
                "content": token,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": true,
            }));
        }
        for token in &self.added {
            if token.is_empty() || ids.contains_key(token) || self.special_order.contains(token) {
                return Err(bad(format!(
                    "added token {token:?} is empty or already in the vocabulary"
                )));
            }
            next_id += 1;
            added.push(json!({
                "id": next_id - 1,
                "content": token,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": false,
            }));
        }
        let (pre_tokenizer, decoder) = match self.level {
            VocabLevel::Word => (json!({"type": "Whitespace"}), Json::Null),
            VocabLevel::Char => (
                json!({
                    "type": "Split",
                    "pattern": {"Regex": "[\\s\\S]"},
                    "behavior": "Isolated",
                    "invert": false,
                }),
                json!({"type": "Fuse"}),
            ),
        };
        let unk = self
            .special
            .unk
            .clone()
            .unwrap_or_else(|| "<unk>".to_string());
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": decoder,
            "model": {"type": "WordLevel", "vocab": ids, "unk_token": unk},
        }))
    }
}
