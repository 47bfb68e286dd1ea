//! Streaming text generation and `chat` on the tiny fixture model: text
//! deltas, end-of-sequence handling, stop sequences, finish reasons, the
//! one-step-ahead draw count, statistics.

mod sample_support;

use mlx_lm::chat::{ChatOptions, chat};
use mlx_lm::generate::{FinishReason, GenerateOptions, generate, generate_step, stream_generate};
use mlx_lm::sample::{RandomState, SamplerConfig};
use mlx_tensor::{Dtype, random};
use sample_support::{tiny_model, tiny_tokenizer};
use serde_json::json;

const PROMPT: [u32; 6] = [1, 45, 67, 89, 12, 200];

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        ..GenerateOptions::default()
    }
}

fn greedy_tokens(n: usize) -> Vec<u32> {
    let model = tiny_model();
    generate_step(&model, &PROMPT, &greedy(n), RandomState::global())
        .unwrap()
        .map(|t| t.unwrap().token)
        .collect()
}

#[test]
fn text_is_the_decoded_tokens_and_length_ends_it() {
    let (model, tok) = (tiny_model(), tiny_tokenizer());
    let responses: Vec<_> =
        stream_generate(&model, &tok, &PROMPT, &greedy(12), RandomState::global())
            .unwrap()
            .map(Result::unwrap)
            .collect();
    assert_eq!(responses.len(), 12);
    let tokens: Vec<u32> = responses.iter().map(|r| r.token).collect();
    assert_eq!(tokens, greedy_tokens(12));
    let text: String = responses.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(text, tok.decode(&tokens, false).unwrap());
    assert!(responses[..11].iter().all(|r| r.finish_reason.is_none()));
    assert_eq!(responses[11].finish_reason, Some(FinishReason::Length));
    assert_eq!(responses[11].generation_tokens, 12);
    assert_eq!(responses[11].stats.prompt_tokens, 6);
    assert!(responses[11].stats.peak_memory > 0);
}

#[test]
fn end_of_sequence_stops_without_its_text() {
    let (model, tok) = (tiny_model(), tiny_tokenizer());
    let g = greedy_tokens(12);
    let eos = g[3];
    let first = g.iter().position(|t| *t == eos).unwrap();
    let opts = GenerateOptions {
        max_tokens: Some(12),
        eos_token_ids: Some(vec![eos]),
        ..GenerateOptions::default()
    };
    let out = generate(&model, &tok, &PROMPT, &opts, RandomState::global()).unwrap();
    assert_eq!(out.tokens, g[..=first]);
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.text, tok.decode(&g[..first], false).unwrap());
    assert_eq!(out.logprobs.len(), out.tokens.len());
}

#[test]
fn the_tokenizers_end_of_sequence_is_the_default() {
    // Bias the end-of-sequence id (2) so that it comes first.
    let (model, tok) = (tiny_model(), tiny_tokenizer());
    let mut opts = GenerateOptions::with_max_tokens(8);
    opts.processors.logit_bias = vec![(2, 100.0)];
    let out = generate(&model, &tok, &PROMPT, &opts, RandomState::global()).unwrap();
    assert_eq!(
        (out.tokens.as_slice(), out.finish_reason, out.text.as_str()),
        (&[2u32][..], FinishReason::Stop, "")
    );
    opts.ignore_eos = true;
    let out = generate(&model, &tok, &PROMPT, &opts, RandomState::global()).unwrap();
    assert_eq!(
        (out.tokens.len(), out.finish_reason),
        (8, FinishReason::Length)
    );
}

#[test]
fn multi_token_stop_sequences_hold_back_their_text() {
    let (model, tok) = (tiny_model(), tiny_tokenizer());
    let g = greedy_tokens(16);
    let seq = vec![g[5], g[6], g[7]];
    let end = (2..g.len()).find(|&i| g[i - 2..=i] == seq[..]).unwrap();
    let opts = GenerateOptions {
        stop_sequences: vec![seq.clone()],
        ..greedy(16)
    };
    let responses: Vec<_> = stream_generate(&model, &tok, &PROMPT, &opts, RandomState::global())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(responses.len(), end + 1);
    assert_eq!(
        responses.last().unwrap().finish_reason,
        Some(FinishReason::Stop)
    );
    let text: String = responses.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(text, tok.decode(&g[..end - 2], false).unwrap());

    // A stop sequence that starts but never completes releases its text.
    let opts = GenerateOptions {
        stop_sequences: vec![vec![g[0], 255, 255, 255]],
        ..greedy(6)
    };
    let out = generate(&model, &tok, &PROMPT, &opts, RandomState::global()).unwrap();
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert_eq!(out.text, tok.decode(&g[..6], false).unwrap());
}

#[test]
fn n_tokens_take_n_plus_one_sampling_steps() {
    // After N tokens the global key sequence has advanced N + 1 draws.
    let model = tiny_model();
    let opts = GenerateOptions {
        sampler: SamplerConfig::with_temperature(1.0),
        ..greedy(5)
    };
    random::seed(3);
    let n = generate_step(&model, &PROMPT, &opts, RandomState::global())
        .unwrap()
        .count();
    assert_eq!(n, 5);
    let after = random::uniform(0.0, 1.0, &[], Dtype::F32, None)
        .unwrap()
        .item::<f32>()
        .unwrap();
    let mut keyed = RandomState::from_seed(3).unwrap();
    for _ in 0..6 {
        keyed.next_key().unwrap();
    }
    let key = keyed.next_key().unwrap().unwrap();
    let want = random::uniform(0.0, 1.0, &[], Dtype::F32, Some(&key))
        .unwrap()
        .item::<f32>()
        .unwrap();
    assert_eq!(after, want);
}

#[test]
fn full_logprob_vectors_on_request() {
    let model = tiny_model();
    let opts = GenerateOptions {
        return_logprobs: true,
        ..greedy(3)
    };
    for t in generate_step(&model, &PROMPT, &opts, RandomState::global()).unwrap() {
        let t = t.unwrap();
        let v = t.logprobs.unwrap().to_vec::<f32>().unwrap();
        assert_eq!(v.len(), 256);
        assert_eq!(v[t.token as usize], t.logprob);
        let total: f32 = v.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-4);
    }
}

#[test]
fn prefill_chunking_does_not_change_the_result() {
    let model = tiny_model();
    let long: Vec<u32> = (0..40).map(|i| (i * 37 + 11) % 256).collect();
    let run = |step| {
        let opts = GenerateOptions {
            prefill_step_size: step,
            ..greedy(8)
        };
        generate_step(&model, &long, &opts, RandomState::global())
            .unwrap()
            .map(|t| t.unwrap().token)
            .collect::<Vec<_>>()
    };
    let whole = run(2048);
    assert_eq!(run(7), whole);
    assert_eq!(run(1), whole);
}

#[test]
fn chat_renders_generates_and_parses() {
    let (model, tok) = (tiny_model(), tiny_tokenizer());
    let messages = vec![json!({"role": "user", "content": "w10 w11 w12"})];
    let options = ChatOptions {
        generate: GenerateOptions::with_max_tokens(6),
        seed: Some(1),
        ..ChatOptions::default()
    };
    let a = chat(&model, &tok, &messages, &options).unwrap();
    let b = chat(&model, &tok, &messages, &options).unwrap();
    assert_eq!(a.raw_text, b.raw_text);
    assert!(a.num_tokens >= 1 && a.num_tokens <= 6);
    assert_eq!(a.text, a.raw_text.trim());
    assert!(a.thinking.is_none() && a.tool_calls.is_empty());
    let prompt = tok
        .apply_chat_template_ids(
            &messages,
            &mlx_lm::ChatTemplateOptions::default().add_generation_prompt(true),
        )
        .unwrap();
    let direct = generate(
        &model,
        &tok,
        &prompt,
        &options.generate,
        RandomState::from_seed(1).unwrap(),
    )
    .unwrap();
    assert_eq!(direct.text, a.raw_text);
    assert_eq!(direct.finish_reason, a.finish_reason);
    assert_eq!(a.to_message()["role"], "assistant");
}

#[test]
fn rejects_bad_requests() {
    let model = tiny_model();
    assert!(generate_step(&model, &[], &greedy(4), RandomState::global()).is_err());
    assert!(generate_step(&model, &PROMPT, &greedy(0), RandomState::global()).is_err());
    let bad = GenerateOptions {
        sampler: SamplerConfig {
            temperature: 1.0,
            min_p: 2.0,
            ..Default::default()
        },
        ..greedy(4)
    };
    assert!(matches!(
        generate_step(&model, &PROMPT, &bad, RandomState::global()),
        Err(mlx_lm::Error::InvalidSampling {
            parameter: "min_p",
            ..
        })
    ));
}
