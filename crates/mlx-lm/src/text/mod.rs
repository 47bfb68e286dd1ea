//! The text side: the Hugging Face tokenizer and its special tokens,
//! streaming detokenization, chat templates rendered as transformers
//! renders them (with the Python string formatting and `strftime` they
//! use), tool-call and thinking parsing, and small vocabularies for toy
//! models.

pub mod chat_template;
pub mod detokenizer;
mod pyformat;
pub mod special_tokens;
mod strftime;
mod template_env;
pub mod template_set;
pub mod tokenizer;
pub mod tools;
pub mod vocab;
