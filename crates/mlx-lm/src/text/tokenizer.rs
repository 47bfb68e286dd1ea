//! A text tokenizer with the special tokens, end-of-sequence ids and chat
//! templates of a Hugging Face model directory.
//!
//! ```no_run
//! use mlx_lm::Tokenizer;
//!
//! let tok = Tokenizer::from_dir("models/Qwen3-0.6B")?;
//! let ids = tok.encode("Hello, world", false)?;
//! assert_eq!(tok.decode(&ids, false)?, "Hello, world");
//! assert!(tok.is_eos(tok.eos_token_id().unwrap_or_default()));
//! # Ok::<(), mlx_lm::Error>(())
//! ```

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::error::{Error, Result};
use crate::files;
use crate::text::chat_template::{ChatTemplate, ChatTemplateOptions};
use crate::text::detokenizer::StreamingDetokenizer;
use crate::text::special_tokens::{SpecialTokens, eos_ids_from_model_config};
use crate::text::template_set::ChatTemplates;

/// A tokenizer: encoding, decoding, special tokens, the set of ids that end
/// generation, and the chat templates.
///
/// Cheap to clone (shared state); `Send + Sync`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    tokenizer: tokenizers::Tokenizer,
    special: SpecialTokens,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    pad_id: Option<u32>,
    unk_id: Option<u32>,
    eos_ids: Vec<u32>,
    special_ids: HashSet<u32>,
    templates: ChatTemplates,
    /// The largest id of the vocabulary, added tokens included.
    max_id: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.inner.special)
            .field("eos_token_ids", &self.inner.eos_ids)
            .field("chat_templates", &self.inner.templates.names())
            .finish()
    }
}

impl Tokenizer {
    /// Loads a model directory: `tokenizer.json` (required),
    /// `tokenizer_config.json` (special tokens, chat template),
    /// `special_tokens_map.json` (older directories' special tokens),
    /// `chat_template.jinja`, and `config.json` / `generation_config.json`
    /// for their `eos_token_id` (an id or a list).
    ///
    /// The end-of-sequence set is the union, in this order, of the ids in
    /// `config.json`, in `generation_config.json`, and the id of
    /// `eos_token`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(Error::MissingFile {
                path: tokenizer_path,
                what: "the tokenizer definition",
            });
        }
        let tokenizer = load_tokenizer_json(&tokenizer_path)?;

        let config_path = dir.join("tokenizer_config.json");
        let config = files::read_json_optional(&config_path)?;
        let mut special = match &config {
            Some(config) => SpecialTokens::from_tokenizer_config(config, &config_path)?,
            None => SpecialTokens::default(),
        };
        // Older directories name their special tokens in special_tokens_map.json;
        // it counts when tokenizer_config.json has no `added_tokens_decoder`.
        let legacy = config
            .as_ref()
            .is_none_or(|c| c.get("added_tokens_decoder").is_none());
        let map_path = dir.join("special_tokens_map.json");
        if legacy && let Some(map) = files::read_json_optional(&map_path)? {
            special.merge(SpecialTokens::from_tokenizer_config(&map, &map_path)?);
        }
        let templates = ChatTemplates::from_dir_with_config(dir, config.as_ref(), &config_path)?;

        let mut extra_eos = Vec::new();
        for name in ["config.json", "generation_config.json"] {
            let path = dir.join(name);
            if let Some(model_config) = files::read_json_optional(&path)? {
                extra_eos.extend(eos_ids_from_model_config(&model_config, &path)?);
            }
        }
        let origin = config_path.display().to_string();
        Self::build(tokenizer, special, templates, extra_eos, &origin)
    }

    /// Loads a bare `tokenizer.json` with no special tokens named and no
    /// chat template; add them with [`Self::from_tokenizer`] if needed.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let tokenizer = load_tokenizer_json(path)?;
        Self::build(
            tokenizer,
            SpecialTokens::default(),
            ChatTemplates::new(),
            Vec::new(),
            &path.display().to_string(),
        )
    }

    /// Wraps a tokenizer built in code. Every named special token must be in
    /// its vocabulary ([`Error::UnknownSpecialToken`] otherwise).
    pub fn from_tokenizer(
        tokenizer: tokenizers::Tokenizer,
        special: SpecialTokens,
    ) -> Result<Self> {
        Self::build(
            tokenizer,
            special,
            ChatTemplates::new(),
            Vec::new(),
            "tokenizer",
        )
    }

    fn build(
        mut tokenizer: tokenizers::Tokenizer,
        special: SpecialTokens,
        templates: ChatTemplates,
        extra_eos: Vec<u32>,
        origin: &str,
    ) -> Result<Self> {
        // Padding and truncation are per-call concerns (as in transformers'
        // `encode`), not part of the tokenizer.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::tokenizer("load", e))?;
        let id_of = |field: &str| -> Result<Option<u32>> {
            match special.get(field) {
                None => Ok(None),
                Some(token) => tokenizer.token_to_id(token).map(Some).ok_or_else(|| {
                    Error::UnknownSpecialToken {
                        origin: origin.to_string(),
                        field: field.to_string(),
                        token: token.to_string(),
                    }
                }),
            }
        };
        let bos_id = id_of("bos_token")?;
        let eos_id = id_of("eos_token")?;
        let pad_id = id_of("pad_token")?;
        let unk_id = id_of("unk_token")?;
        for field in ["sep_token", "cls_token", "mask_token"] {
            id_of(field)?;
        }

        let mut eos_ids = Vec::new();
        for id in extra_eos.into_iter().chain(eos_id) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }

        let mut special_ids: HashSet<u32> = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| id)
            .collect();
        let named = special.named();
        let named_tokens = named.iter().map(|(_, token)| *token);
        for token in named_tokens.chain(special.additional.iter().map(String::as_str)) {
            if let Some(id) = tokenizer.token_to_id(token) {
                special_ids.insert(id);
            }
        }

        let templates = templates.with_special_tokens(&special);
        let max_id = tokenizer.get_vocab(true).into_values().max();
        Ok(Tokenizer {
            inner: Arc::new(Inner {
                tokenizer,
                special,
                bos_id,
                eos_id,
                pad_id,
                unk_id,
                eos_ids,
                special_ids,
                templates,
                max_id,
            }),
        })
    }

    /// Replaces the chat templates with one template (named `default`).
    #[must_use]
    pub fn with_chat_template(self, source: impl Into<String>) -> Self {
        self.with_chat_templates(ChatTemplates::single(source))
    }

    /// Replaces the chat templates.
    #[must_use]
    pub fn with_chat_templates(self, templates: ChatTemplates) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.templates = templates.with_special_tokens(&inner.special);
        Tokenizer {
            inner: Arc::new(inner),
        }
    }

    /// Adds ids that end generation (kept after the existing ones, without
    /// duplicates).
    #[must_use]
    pub fn with_eos_token_ids(self, ids: impl IntoIterator<Item = u32>) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        for id in ids {
            if !inner.eos_ids.contains(&id) {
                inner.eos_ids.push(id);
            }
        }
        Tokenizer {
            inner: Arc::new(inner),
        }
    }

    /// The underlying `tokenizers` tokenizer (with padding and truncation
    /// turned off).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner.tokenizer
    }

    /// Encodes text into token ids. `add_special_tokens` applies the
    /// tokenizer's post-processor (for example a BOS token); special tokens
    /// written in the text are recognized either way.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .tokenizer
            .encode(text, add_special_tokens)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|e| Error::tokenizer("encode", e))
    }

    /// Encodes several texts (in parallel where the library does so).
    pub fn encode_batch(&self, texts: &[&str], add_special_tokens: bool) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.to_vec();
        self.inner
            .tokenizer
            .encode_batch(inputs, add_special_tokens)
            .map(|encodings| encodings.iter().map(|e| e.get_ids().to_vec()).collect())
            .map_err(|e| Error::tokenizer("encode", e))
    }

    /// Decodes token ids into text; `skip_special_tokens` leaves out special
    /// tokens. Ids outside the vocabulary are skipped; byte sequences that
    /// are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::tokenizer("decode", e))
    }

    /// A streaming decoder for generated ids (see [`StreamingDetokenizer`]).
    pub fn detokenizer(&self, skip_special_tokens: bool) -> StreamingDetokenizer {
        StreamingDetokenizer::new(self.clone(), skip_special_tokens)
    }

    /// Number of ids, added tokens included (`len(tokenizer)` in Python).
    pub fn vocab_size(&self) -> usize {
        self.inner.tokenizer.get_vocab_size(true)
    }

    /// The largest id the tokenizer has (added tokens included); `None`
    /// for an empty vocabulary. A model needs more embedding rows than this
    /// (see [`crate::check_tokenizer_fits`]).
    pub fn max_token_id(&self) -> Option<u32> {
        self.inner.max_id
    }

    /// The id of a token (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.tokenizer.token_to_id(token)
    }

    /// The token of an id (added tokens included).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.tokenizer.id_to_token(id)
    }

    /// The named special tokens.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.inner.special
    }

    /// `true` for the ids of special tokens (added tokens marked special
    /// and the named special tokens).
    pub fn is_special(&self, id: u32) -> bool {
        self.inner.special_ids.contains(&id)
    }

    /// The ids of all special tokens, sorted.
    pub fn special_token_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.inner.special_ids.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The id of `bos_token`.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.inner.bos_id
    }

    /// The id of `eos_token`, or else the first end-of-sequence id from the
    /// model configuration.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.inner
            .eos_id
            .or_else(|| self.inner.eos_ids.first().copied())
    }

    /// The id of `pad_token`.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.inner.pad_id
    }

    /// The id of `unk_token`.
    pub fn unk_token_id(&self) -> Option<u32> {
        self.inner.unk_id
    }

    /// Every id that ends generation.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.inner.eos_ids
    }

    /// `true` when `id` ends generation.
    pub fn is_eos(&self, id: u32) -> bool {
        self.inner.eos_ids.contains(&id)
    }

    /// The chat templates.
    pub fn chat_templates(&self) -> &ChatTemplates {
        &self.inner.templates
    }

    /// The chat template that `name` or the presence of tools selects (see
    /// [`ChatTemplates::select`]).
    pub fn chat_template(&self, name: Option<&str>, with_tools: bool) -> Result<&ChatTemplate> {
        self.inner.templates.select(name, with_tools)
    }

    /// Renders a conversation with the chat template into prompt text.
    pub fn apply_chat_template(
        &self,
        messages: &[Json],
        options: &ChatTemplateOptions,
    ) -> Result<String> {
        self.inner.templates.render(messages, options)
    }

    /// Renders a conversation and encodes it (without adding special tokens:
    /// the template writes them).
    pub fn apply_chat_template_ids(
        &self,
        messages: &[Json],
        options: &ChatTemplateOptions,
    ) -> Result<Vec<u32>> {
        let text = self.apply_chat_template(messages, options)?;
        self.encode(&text, false)
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` (special tokens
    /// and chat templates) into `dir`, creating it, so that the directory
    /// loads with [`Self::from_dir`] and with Hugging Face's
    /// `AutoTokenizer`. End-of-sequence ids beyond `eos_token` belong in the
    /// model's `config.json` / `generation_config.json` and are not written;
    /// neither are padding or truncation settings (they are dropped at load).
    pub fn save_dir(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let tokenizer_path = dir.join("tokenizer.json");
        let text = self
            .inner
            .tokenizer
            .to_string(true)
            .map_err(|e| Error::tokenizer("save", e))?;
        files::write_text(&tokenizer_path, &text)?;
        files::write_json(&dir.join("tokenizer_config.json"), &self.tokenizer_config())
    }

    fn tokenizer_config(&self) -> Json {
        let special = &self.inner.special;
        let mut config = serde_json::Map::new();
        config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
        config.insert("clean_up_tokenization_spaces".into(), json!(false));
        for (name, token) in special.named() {
            config.insert(name.to_string(), json!(token));
        }
        if !special.additional.is_empty() {
            config.insert(
                "additional_special_tokens".into(),
                json!(special.additional),
            );
        }
        if let Some(templates) = self.inner.templates.to_config_value() {
            config.insert("chat_template".into(), templates);
        }
        Json::Object(config)
    }
}

fn load_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let text = files::read_text_optional(path)?.ok_or_else(|| Error::MissingFile {
        path: path.to_path_buf(),
        what: "the tokenizer definition",
    })?;
    tokenizers::Tokenizer::from_bytes(text.as_bytes()).map_err(|e| Error::InvalidTokenizerFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
