//! Language models on MLX. The text side ([`text`]): tokenizers, streaming detokenization,
//! chat templates, and reading tool calls and thinking out of completions.
//!
//! - [`Tokenizer`] loads a Hugging Face model directory (`tokenizer.json`,
//!   `tokenizer_config.json`, `config.json`, `generation_config.json`,
//!   `chat_template.jinja`) and knows its special tokens and every id that
//!   ends generation.
//! - [`StreamingDetokenizer`] turns generated ids into text deltas that never
//!   split a character.
//! - [`ChatTemplate`] renders conversations the way Hugging Face
//!   transformers' `apply_chat_template` does.
//! - [`text::tools::parse_completion`] splits a completion into thinking, tool
//!   calls and answer.
//! - [`text::vocab::VocabTokenizerBuilder`] builds small word- or character-level
//!   tokenizers for toy models.
//!
//! And the model side:
//!
//! - [`Model`] ([`Qwen3`] or [`Qwen3Moe`]) implements [`LanguageModel`]:
//!   logits or hidden states for token ids, with an optional caller-owned
//!   [`cache`] per layer, or for a left-padded batch.
//! - [`loader::load_model`] reads a Hugging Face model directory (single
//!   file or shards), validating every tensor first; [`loader::save_model`]
//!   writes the same layout back.
//! - [`score::score`] gives per-token log-probabilities (and entropies) of
//!   completions, differentiably, for RL losses.
//! - [`sample`] has mlx-lm's logits processors and samplers, with explicit
//!   random keys that reproduce mlx-lm's seeded draws.
//! - [`generate`] streams tokens and text for one sequence and generates
//!   batches of completions (with sampler and TRL-style log-probabilities)
//!   for RL rollouts; [`chat::chat`] answers a conversation.
#![deny(missing_docs)]

pub mod cache;
pub mod chat;
pub mod error;
mod files;
pub mod generate;
pub mod loader;
pub mod model;
pub mod models;
pub mod sample;
pub mod score;
mod sizes;
pub mod text;
pub mod token_ids;

pub use error::{Error, Result};
pub use loader::{SaveOptions, load_model, save_model};
pub use model::LanguageModel;
pub use models::{Model, ModelConfig, Qwen3, Qwen3Config, Qwen3Moe, Qwen3MoeConfig};
pub use text::chat_template::{ChatTemplate, ChatTemplateOptions};
pub use text::detokenizer::StreamingDetokenizer;
pub use text::special_tokens::SpecialTokens;
pub use text::template_set::ChatTemplates;
pub use text::tokenizer::Tokenizer;
pub use text::tools::{ParsedCompletion, ToolCall, ToolCallStatus};
pub use token_ids::{CheckedTokens, check_tokenizer_fits};
