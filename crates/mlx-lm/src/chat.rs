//! One chat turn: render the conversation, generate, read the answer.

use serde_json::Value as Json;

use crate::error::Result;
use crate::generate::{FinishReason, GenerateOptions, GenerationStats, generate};
use crate::model::LanguageModel;
use crate::sample::RandomState;
use crate::text::chat_template::ChatTemplateOptions;
use crate::text::tokenizer::Tokenizer;
use crate::text::tools::{ToolCall, parse_completion};

/// Settings of [`chat`].
#[derive(Debug, Clone, Default)]
pub struct ChatOptions {
    /// Generation settings (sampler, processors, token limit, stops).
    pub generate: GenerateOptions,
    /// Chat-template settings: tools, `enable_thinking`, extra variables.
    /// The generation prompt is always added.
    pub template: ChatTemplateOptions,
    /// Seed of the sampler's random keys; `None` draws from MLX's global
    /// key sequence of this thread.
    pub seed: Option<u64>,
}

/// The assistant's reply.
#[derive(Debug, Clone)]
pub struct ChatResult {
    /// The answer: the reply without its thinking and tool-call blocks,
    /// trimmed.
    pub text: String,
    /// The whole decoded reply (end-of-sequence and stop text excluded).
    pub raw_text: String,
    /// The thinking, if the reply had any.
    pub thinking: Option<String>,
    /// The tool calls the reply made, each with its parse status.
    pub tool_calls: Vec<ToolCall>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Tokens generated (the end-of-sequence token included).
    pub num_tokens: usize,
    /// Throughput and memory.
    pub stats: GenerationStats,
}

impl ChatResult {
    /// The reply as an assistant message (`content`, `reasoning_content`
    /// when there was thinking, `tool_calls` when there were calls), ready
    /// to append to the conversation.
    pub fn to_message(&self) -> Json {
        crate::text::tools::ParsedCompletion {
            text: self.text.clone(),
            thinking: self.thinking.clone(),
            tool_calls: self.tool_calls.clone(),
        }
        .to_assistant_message()
    }
}

/// Answers the conversation `messages` (Hugging Face chat format:
/// `{"role": ..., "content": ...}` objects) with the tokenizer's chat
/// template, generating with `options` and splitting the reply into
/// thinking, tool calls and answer.
pub fn chat<M: LanguageModel>(
    model: &M,
    tokenizer: &Tokenizer,
    messages: &[Json],
    options: &ChatOptions,
) -> Result<ChatResult> {
    let template = options.template.clone().add_generation_prompt(true);
    let prompt = tokenizer.apply_chat_template_ids(messages, &template)?;
    let rng = match options.seed {
        Some(seed) => RandomState::from_seed(seed)?,
        None => RandomState::global(),
    };
    let generation = generate(model, tokenizer, &prompt, &options.generate, rng)?;
    let parsed = parse_completion(&generation.text);
    Ok(ChatResult {
        text: parsed.text,
        raw_text: generation.text,
        thinking: parsed.thinking,
        tool_calls: parsed.tool_calls,
        finish_reason: generation.finish_reason,
        num_tokens: generation.tokens.len(),
        stats: generation.stats,
    })
}
