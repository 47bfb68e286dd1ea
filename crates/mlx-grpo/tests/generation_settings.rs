//! Validation of the settings that drive generation: non-finite or
//! out-of-range sampler values, and completion lengths that cannot fit a
//! row (an absolute bound in `validate`, the model's positions in
//! `Trainer::new`). Every error names the setting.

use mlx_grpo::config::{GrpoConfig, MAX_SEQUENCE_TOKENS};
use mlx_grpo::dataset::{Dataset, Prompt, Row};
use mlx_grpo::rewards::{RewardInput, RewardSet, per_sample};
use mlx_grpo::trainer::Trainer;
use mlx_lm::loader::random_model;
use mlx_lm::models::{ModelConfig, Qwen3Config};
use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_tensor::Dtype;

fn small() -> GrpoConfig {
    GrpoConfig {
        num_generations: 2,
        per_device_train_batch_size: 2,
        ..GrpoConfig::default()
    }
}

/// `validate`'s error for `small()` changed by `edit`, which must mention
/// `field`.
fn rejected(what: &str, field: &str, edit: impl Fn(&mut GrpoConfig)) {
    let mut c = small();
    edit(&mut c);
    match c.validate() {
        Ok(_) => panic!("{what} was accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(field), "{what}: {msg}");
        }
    }
}

#[test]
fn sampler_values_must_be_finite_and_in_range() {
    for t in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.5] {
        rejected(&format!("temperature {t}"), "temperature", |c| {
            c.temperature = t
        });
    }
    for p in [f64::NAN, f64::INFINITY, 0.0, -0.1, 1.0 + 1e-9, 2.0] {
        rejected(&format!("top_p {p}"), "top_p", |c| c.top_p = p);
    }
    for p in [f64::NAN, f64::INFINITY, -1e-9, 1.5] {
        rejected(&format!("min_p {p}"), "min_p", |c| c.min_p = Some(p));
    }
    for r in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -1.0] {
        rejected(
            &format!("repetition_penalty {r}"),
            "repetition_penalty",
            |c| c.repetition_penalty = r,
        );
    }
    for a in [f64::NAN, f64::INFINITY] {
        rejected(
            &format!("router_aux_loss_coef {a}"),
            "router_aux_loss_coef",
            |c| c.router_aux_loss_coef = a,
        );
    }
    // The edges of the ranges are legal.
    let mut c = small();
    c.top_p = 1.0;
    c.min_p = Some(0.0);
    c.validate().unwrap();
    c.min_p = Some(1.0);
    c.top_p = 1e-6;
    c.temperature = 1e-6;
    c.repetition_penalty = 1e-3;
    c.validate().unwrap();
}

#[test]
fn router_aux_loss_coef_follows_trl() {
    // TRL's default and its override by name.
    assert_eq!(GrpoConfig::default().router_aux_loss_coef, 0.001);
    let mut c = small();
    c.set("--router-aux-loss-coef", "0").unwrap();
    assert_eq!(c.router_aux_loss_coef, 0.0);
    c.validate().unwrap();
}

#[test]
fn completion_lengths_beyond_any_row_are_rejected() {
    rejected("huge max_completion_length", "max_completion_length", |c| {
        c.max_completion_length = usize::MAX
    });
    rejected("past the bound", "max_completion_length", |c| {
        c.max_completion_length = MAX_SEQUENCE_TOKENS
    });
    // The sum overflows usize: an error, not a wrap.
    rejected("overflowing sum", "max_prompt_length", |c| {
        c.max_prompt_length = Some(usize::MAX);
        c.max_completion_length = 2;
    });
    let mut c = small();
    c.max_prompt_length = Some(MAX_SEQUENCE_TOKENS - 100);
    c.max_completion_length = 100;
    c.validate().unwrap();
    c.max_completion_length = 101;
    assert!(c.validate().is_err());
}

#[test]
fn rows_must_fit_the_model_positions() {
    let mut c = small();
    c.max_prompt_length = Some(100);
    c.max_completion_length = 412;
    c.check_fits_model(512).unwrap();
    c.max_completion_length = 413;
    let msg = c.check_fits_model(512).unwrap_err().to_string();
    assert!(
        msg.contains("max_completion_length = 413")
            && msg.contains("max_prompt_length (100)")
            && msg.contains("max_position_embeddings = 512"),
        "{msg}"
    );
    // Without max_prompt_length every prompt has at least one token.
    c.max_prompt_length = None;
    c.max_completion_length = 511;
    c.check_fits_model(512).unwrap();
    c.max_completion_length = 512;
    assert!(c.check_fits_model(512).is_err());
    c.max_completion_length = usize::MAX;
    assert!(c.check_fits_model(usize::MAX).is_err());
}

#[test]
fn trainer_rejects_completions_longer_than_the_model() {
    let tok = VocabTokenizerBuilder::char_level("0123456789+=".chars())
        .pad("<pad>")
        .eos("<|endoftext|>")
        .build()
        .unwrap();
    let model_config: Qwen3Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tok.vocab_size(), "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "rope_theta": 10000.0, "max_position_embeddings": 32, "tie_word_embeddings": true
    }))
    .unwrap();
    let model = random_model(&ModelConfig::Qwen3(model_config), 7, Dtype::F32).unwrap();
    let rows = (0..4)
        .map(|i| Row {
            prompt: Prompt::Text(format!("{i}+1=")),
            answer: None,
            extra: Default::default(),
        })
        .collect();
    let dataset = Dataset::from_rows(rows, "sums").unwrap();
    let mut rewards = RewardSet::new();
    rewards
        .add(per_sample("length", |x: &RewardInput| {
            x.completion.num_tokens as f32
        }))
        .unwrap();
    let config = GrpoConfig {
        max_completion_length: 40,
        max_steps: 1,
        ..small()
    };
    let err = match Trainer::new(config, model, tok, dataset, rewards) {
        Ok(_) => panic!("a 40-token completion was accepted for a 32-position model"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("max_completion_length = 40") && err.contains("max_position_embeddings = 32"),
        "{err}"
    );
}
