//! `max_prompt_length`: rendered prompts longer than the limit keep their
//! last `max_prompt_length` tokens (TRL's left truncation), shorter ones are
//! untouched, and the trainer's rollouts use the cut prompts.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use mlx_grpo::config::GrpoConfig;
use mlx_grpo::dataset::{Dataset, Message, Prompt, Row};
use mlx_grpo::rewards::{RewardInput, RewardSet, per_sample};
use mlx_grpo::trainer::rollout::{PromptTruncation, render_prompt};
use mlx_grpo::trainer::{RolloutSample, Trainer, TrainerCallback};
use mlx_lm::loader::random_model;
use mlx_lm::models::{ModelConfig, Qwen3Config};
use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_lm::{ChatTemplateOptions, Tokenizer};
use mlx_tensor::Dtype;

fn qwen3() -> Tokenizer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/qwen3-tokenizer");
    Tokenizer::from_dir(dir).expect("the Qwen3 tokenizer of the repository")
}

#[test]
fn long_text_prompt_keeps_its_last_tokens() {
    let tok = qwen3();
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(40) + "What is 2 + 3?";
    // The tokenizer's own ids of the whole text: the reference.
    let full = tok.encode(&text, false).unwrap();
    let limit = 17;
    assert!(full.len() > limit + 100, "{} tokens", full.len());
    let mut cut = PromptTruncation::new(Some(limit));
    assert!(!cut.has_warned());
    let ids = cut.apply(render_prompt(&tok, &Prompt::Text(text)).unwrap());
    assert_eq!(ids, full[full.len() - limit..]);
    assert!(cut.has_warned());
    // Exactly at the limit and below it: unchanged.
    assert_eq!(cut.apply(full[..limit].to_vec()), full[..limit]);
    assert_eq!(cut.apply(full[..3].to_vec()), full[..3]);
    // No limit: whole.
    assert_eq!(PromptTruncation::new(None).apply(full.clone()), full);
}

#[test]
fn long_conversation_keeps_the_generation_prompt() {
    let tok = qwen3();
    let messages = vec![
        Message::new("system", "You are terse. ".repeat(30)),
        Message::new("user", "Add 2 and 3."),
    ];
    let values: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    let options = ChatTemplateOptions {
        add_generation_prompt: true,
        ..Default::default()
    };
    let full = tok
        .encode(&tok.apply_chat_template(&values, &options).unwrap(), false)
        .unwrap();
    let limit = 24;
    let ids = PromptTruncation::new(Some(limit))
        .apply(render_prompt(&tok, &Prompt::Messages(messages.clone())).unwrap());
    assert_eq!(ids, full[full.len() - limit..]);
    // The end of the template (the assistant turn's opening) survives.
    let opening = tok.encode("<|im_start|>assistant\n", false).unwrap();
    assert!(ids.ends_with(&opening), "{ids:?}");
    // A limit above the length keeps the conversation whole.
    let whole = PromptTruncation::new(Some(full.len()))
        .apply(render_prompt(&tok, &Prompt::Messages(messages)).unwrap());
    assert_eq!(whole, full);
}

/// Records the prompt ids of every rollout.
struct PromptSpy(Rc<RefCell<Vec<Vec<u32>>>>);

impl TrainerCallback for PromptSpy {
    fn on_rollout(&mut self, samples: &mut [RolloutSample]) {
        let mut seen = self.0.borrow_mut();
        seen.extend(samples.iter().map(|s| s.prompt_ids.clone()));
    }
}

#[test]
fn trainer_rollouts_use_truncated_prompts() {
    let tok = VocabTokenizerBuilder::char_level("0123456789+=".chars())
        .pad("<pad>")
        .eos("<|endoftext|>")
        .build()
        .unwrap();
    let config: Qwen3Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tok.vocab_size(), "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "rope_theta": 10000.0, "max_position_embeddings": 32, "tie_word_embeddings": true
    }))
    .unwrap();
    let model = random_model(&ModelConfig::Qwen3(config), 7, Dtype::F32).unwrap();
    let long = "1234567890".repeat(6) + "+1=";
    let short = "2+2=";
    let rows = [long.as_str(), short]
        .iter()
        .map(|p| Row {
            prompt: Prompt::Text(p.to_string()),
            answer: None,
            extra: Default::default(),
        })
        .collect();
    let dataset = Dataset::from_rows(rows, "prompts").unwrap();
    let mut rewards = RewardSet::new();
    rewards
        .add(per_sample("length", |x: &RewardInput| {
            x.completion.num_tokens as f32
        }))
        .unwrap();
    let limit = 8;
    let output = tempfile::tempdir().unwrap();
    let grpo = GrpoConfig {
        output_dir: output.path().to_path_buf(),
        num_generations: 2,
        per_device_train_batch_size: 4,
        max_prompt_length: Some(limit),
        max_completion_length: 2,
        shuffle_dataset: false,
        max_steps: 1,
        ..GrpoConfig::default()
    };
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut trainer = Trainer::new(grpo, model, tok.clone(), dataset, rewards)
        .unwrap()
        .with_progress(false)
        .with_callback(PromptSpy(seen.clone()));
    trainer.train_step().unwrap();
    let full_long = tok.encode(&long, false).unwrap();
    let full_short = tok.encode(short, false).unwrap();
    assert!(full_long.len() > limit && full_short.len() < limit);
    let mut expected = vec![full_long[full_long.len() - limit..].to_vec(); 2];
    expected.extend(vec![full_short.clone(); 2]);
    let mut seen = seen.borrow().clone();
    seen.sort_by_key(|p| std::cmp::Reverse(p.len()));
    assert_eq!(seen, expected);
}
