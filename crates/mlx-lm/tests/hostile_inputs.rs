//! Bad input never crashes, hangs or yields silent garbage: out-of-range
//! token ids, tokenizers larger than the model, huge token limits,
//! configurations that would compute NaN or overflow shapes, and sampler
//! settings out of range all come back as typed errors naming the thing
//! that is wrong.

use std::collections::HashMap;

use mlx_lm::cache::{BatchKVCache, KVCache, LayerCache, load_prompt_cache, save_prompt_cache};
use mlx_lm::chat::{ChatOptions, chat};
use mlx_lm::generate::{
    BatchOptions, FinishReason, GenerateOptions, TokenGenerator, generate, generate_batch,
    generate_step, stream_generate,
};
use mlx_lm::loader::{load_config, random_model, tiny_qwen3_config, tiny_qwen3_moe_config};
use mlx_lm::models::{Model, ModelConfig, Qwen3Config};
use mlx_lm::sample::{LogitsProcessorConfig, RandomState, SamplerConfig};
use mlx_lm::score::{ScoreBatch, ScoreOptions, score, score_tokens};
use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_lm::{Error, LanguageModel, Tokenizer, check_tokenizer_fits};
use mlx_tensor::{Array, Dtype, io, memory};

const VOCAB: i32 = 256;

fn config_with(vocab: i32) -> ModelConfig {
    let ModelConfig::Qwen3(base) = tiny_qwen3_config() else {
        unreachable!("tiny_qwen3_config is dense")
    };
    ModelConfig::Qwen3(Qwen3Config {
        vocab_size: vocab,
        ..base
    })
}

/// A tiny random dense model with a 256-id vocabulary.
fn model() -> Model {
    random_model(&config_with(VOCAB), 7, Dtype::F32).expect("tiny model")
}

/// A word-level tokenizer of `n` ids (`<s>`, `</s>`, then `w2 …`).
fn tokenizer(n: usize) -> Tokenizer {
    let words: Vec<String> = ["<s>", "</s>"]
        .iter()
        .map(|s| s.to_string())
        .chain((2..n).map(|i| format!("w{i}")))
        .collect();
    VocabTokenizerBuilder::word_level(words)
        .bos("<s>")
        .eos("</s>")
        .chat_template("{% for m in messages %}{{ m['content'] }} {% endfor %}")
        .build()
        .expect("tokenizer")
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        ..GenerateOptions::default()
    }
}

fn rng() -> RandomState {
    RandomState::from_seed(0).expect("seed")
}

/// Asserts a `TokenOutOfRange` error for `id` whose location names `place`.
fn assert_out_of_range<T: std::fmt::Debug>(result: mlx_lm::Result<T>, id: i64, place: &str) {
    match result {
        Err(Error::TokenOutOfRange {
            location,
            id: got,
            vocab_size,
        }) => {
            assert_eq!((got, vocab_size), (id, i64::from(VOCAB)));
            assert!(location.contains(place), "{location:?} lacks {place:?}");
        }
        other => panic!("expected TokenOutOfRange for {id} at {place}, got {other:?}"),
    }
}

fn too_large<T: std::fmt::Debug>(result: mlx_lm::Result<T>, setting: &str) -> String {
    match result {
        Err(e @ Error::TooLarge { .. }) => {
            let Error::TooLarge { setting: got, .. } = &e else {
                unreachable!()
            };
            assert_eq!(got, setting, "{e}");
            e.to_string()
        }
        other => panic!("expected TooLarge for `{setting}`, got {other:?}"),
    }
}

// ---------------------------------------------------------------- token ids

#[test]
fn generate_step_rejects_the_first_id_past_the_vocabulary() {
    let m = model();
    let prompt = [1, 5, VOCAB as u32, 7];
    assert_out_of_range(
        generate_step(&m, &prompt, &greedy(2), rng()).map(|_| ()),
        256,
        "prompt, position 2",
    );
}

#[test]
fn generate_step_rejects_the_largest_u32_id() {
    let m = model();
    assert_out_of_range(
        generate_step(&m, &[u32::MAX], &greedy(2), rng()).map(|_| ()),
        i64::from(u32::MAX),
        "prompt, position 0",
    );
}

#[test]
fn stream_generate_and_generate_reject_bad_ids() {
    let (m, tok) = (model(), tokenizer(VOCAB as usize));
    let prompt = [3, 300];
    assert_out_of_range(
        stream_generate(&m, &tok, &prompt, &greedy(2), rng()).map(|_| ()),
        300,
        "prompt, position 1",
    );
    assert_out_of_range(
        generate(&m, &tok, &prompt, &greedy(2), rng()),
        300,
        "prompt, position 1",
    );
}

#[test]
fn continuing_a_cache_rejects_bad_ids() {
    let m = model();
    let cache = m.new_cache();
    assert_out_of_range(
        TokenGenerator::with_cache(&m, &[4, 1000], cache, &greedy(2), rng()).map(|_| ()),
        1000,
        "prompt, position 1",
    );
}

#[test]
fn generate_batch_names_the_prompt_and_position() {
    let m = model();
    let prompts = vec![vec![1, 2, 3], vec![4, 5, 6, VOCAB as u32 + 1]];
    let options = BatchOptions {
        max_tokens: 4,
        ..BatchOptions::default()
    };
    assert_out_of_range(
        generate_batch(&m, &prompts, &options, &mut rng()),
        257,
        "prompt 1, position 3",
    );
    let groups = BatchOptions {
        num_generations: 3,
        ..options
    };
    assert_out_of_range(
        generate_batch(&m, &prompts, &groups, &mut rng()),
        257,
        "prompt 1, position 3",
    );
}

#[test]
fn generate_batch_rejects_a_padding_id_past_the_vocabulary() {
    let m = model();
    let options = BatchOptions {
        max_tokens: 4,
        pad_token_id: VOCAB as u32,
        ..BatchOptions::default()
    };
    assert_out_of_range(
        generate_batch(&m, &[vec![1, 2], vec![3]], &options, &mut rng()),
        256,
        "pad_token_id",
    );
}

#[test]
fn forward_rejects_out_of_range_u32_and_negative_i32_ids() {
    let m = model();
    let ids = Array::from_slice(&[1u32, 2, 256], &[1, 3]).unwrap();
    assert_out_of_range(m.forward(&ids, None), 256, "tokens");
    let ids = Array::from_slice(&[1i32, -1, 2], &[1, 3]).unwrap();
    assert_out_of_range(m.forward(&ids, None), -1, "tokens");
    // With a cache too (a caller's own decoding loop).
    let ids = Array::from_slice(&[999u32], &[1, 1]).unwrap();
    let mut cache = m.new_cache();
    assert_out_of_range(m.forward(&ids, Some(&mut cache)), 999, "tokens");
    // The last valid id works.
    let ids = Array::from_slice(&[255u32, 0], &[1, 2]).unwrap();
    assert_eq!(
        m.forward(&ids, None).unwrap().shape().dims(),
        &[1, 2, VOCAB]
    );
}

#[test]
fn hidden_state_entry_points_reject_bad_ids() {
    let m = model();
    let ids = Array::from_slice(&[1u32, 2, 4096], &[1, 3]).unwrap();
    assert_out_of_range(m.forward_hidden(&ids, None), 4096, "tokens");
    assert_out_of_range(m.forward_hidden_padded(&ids, &[0]), 4096, "tokens");
    assert_out_of_range(m.forward_hidden_with_aux(&ids, None, None), 4096, "tokens");
}

#[test]
fn mixture_of_experts_forward_rejects_bad_ids() {
    let moe = random_model(&tiny_qwen3_moe_config(), 3, Dtype::F32).unwrap();
    let ids = Array::from_slice(&[1u32, 1000], &[1, 2]).unwrap();
    match moe.forward_hidden_with_aux(&ids, None, None) {
        Err(Error::TokenOutOfRange { id, vocab_size, .. }) => {
            assert_eq!((id, vocab_size), (1000, 1000));
        }
        other => panic!("expected TokenOutOfRange, got {other:?}"),
    }
}

#[test]
fn float_token_arrays_are_rejected() {
    let m = model();
    let ids = Array::from_slice(&[1.0f32, 2.0], &[1, 2]).unwrap();
    match m.forward(&ids, None) {
        Err(Error::InvalidInput { message }) => {
            assert!(message.contains("integer"), "{message}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn scoring_rejects_bad_completion_and_prompt_ids() {
    let m = model();
    let opts = ScoreOptions::default();
    let batch = ScoreBatch::new(&[(&[1, 2][..], &[3, 256][..])], 0).unwrap();
    assert_out_of_range(score(&m, &batch, &opts), 256, "tokens");
    let batch = ScoreBatch::new(&[(&[700, 2][..], &[3][..]), (&[1][..], &[4][..])], 0).unwrap();
    assert_out_of_range(score(&m, &batch, &opts), 700, "tokens");
    let tokens = Array::from_slice(&[1i32, 2, -5], &[1, 3]).unwrap();
    assert_out_of_range(score_tokens(&m, &tokens, &[0], 1, &opts), -5, "tokens");
}

// ------------------------------------------------------- continuing caches

#[test]
fn continuing_needs_one_cache_per_layer() {
    let m = model();
    let mut cache = m.new_cache();
    cache.pop();
    match TokenGenerator::with_cache(&m, &[1, 2], cache, &greedy(2), rng()) {
        Err(Error::InvalidCache { message }) => {
            assert!(
                message.contains("1 layer caches") && message.contains("2 layers"),
                "{message}"
            );
        }
        other => panic!("expected InvalidCache, got {:?}", other.err()),
    }
}

#[test]
fn continuing_rejects_mismatched_keys_and_values() {
    let m = model();
    let keys = Array::zeros(&[1, 2, 3, 16], Dtype::F32).unwrap();
    let values = Array::zeros(&[1, 2, 4, 16], Dtype::F32).unwrap();
    let mut cache = m.new_cache();
    cache[1] = LayerCache::Kv(KVCache::from_arrays(keys, values));
    match TokenGenerator::with_cache(&m, &[1, 2], cache, &greedy(2), rng()) {
        Err(Error::InvalidCache { message }) => {
            assert!(message.starts_with("layer 1:"), "{message}");
        }
        other => panic!("expected InvalidCache, got {:?}", other.err()),
    }
}

#[test]
fn continuing_rejects_negative_batch_padding() {
    let m = model();
    let cache = vec![LayerCache::Batch(BatchKVCache::new(&[-3])); 2];
    match TokenGenerator::with_cache(&m, &[1, 2], cache, &greedy(2), rng()) {
        Err(Error::InvalidCache { message }) => {
            assert!(message.contains("negative left padding -3"), "{message}");
        }
        other => panic!("expected InvalidCache, got {:?}", other.err()),
    }
}

/// A prompt-cache file whose offset claims more positions than its buffer
/// holds is refused (on load, or when generation continues it), never
/// written past the buffer.
#[test]
fn a_prompt_cache_file_with_an_offset_past_its_buffer_is_refused() {
    let m = model();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("cache.safetensors");
    let mut generator = generate_step(&m, &[1, 2, 3], &greedy(2), rng()).unwrap();
    generator.next().unwrap().unwrap();
    let (cache, _) = generator.into_parts();
    save_prompt_cache(&path, &cache, &HashMap::new()).unwrap();
    let mut file = io::load_safetensors(&path).unwrap();
    file.tensors
        .insert("0.2".into(), Array::scalar(100_000i32).unwrap());
    let named: Vec<(&str, &Array)> = file.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    io::save_safetensors(&path, named, &file.metadata).unwrap();
    let outcome = load_prompt_cache(&path).and_then(|(cache, _)| {
        TokenGenerator::with_cache(&m, &[4], cache, &greedy(2), rng()).map(|_| ())
    });
    match outcome {
        Err(Error::PromptCache { .. }) => {}
        Err(Error::InvalidCache { message }) => {
            assert!(message.contains("layer 0: offset 100000"), "{message}");
        }
        other => panic!("expected a cache error, got {other:?}"),
    }
}

// --------------------------------------------------- tokenizer against model

#[test]
fn a_tokenizer_larger_than_the_model_is_an_error_naming_both_sizes() {
    let (m, tok) = (model(), tokenizer(300));
    let err = check_tokenizer_fits(&m, &tok).unwrap_err();
    match &err {
        Error::TokenizerDoesNotFit {
            max_token_id,
            tokenizer_ids,
            vocab_size,
        } => assert_eq!(
            (*max_token_id, *tokenizer_ids, *vocab_size),
            (299, 300, 256)
        ),
        other => panic!("expected TokenizerDoesNotFit, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("300") && text.contains("256"), "{text}");
}

#[test]
fn text_generation_and_chat_check_the_tokenizer() {
    let (m, tok) = (model(), tokenizer(257));
    assert!(matches!(
        stream_generate(&m, &tok, &[1, 2], &greedy(2), rng()),
        Err(Error::TokenizerDoesNotFit { .. })
    ));
    let messages = vec![serde_json::json!({"role": "user", "content": "w3"})];
    assert!(matches!(
        chat(&m, &tok, &messages, &ChatOptions::default()),
        Err(Error::TokenizerDoesNotFit { .. })
    ));
    // One id fewer fits exactly.
    assert!(check_tokenizer_fits(&m, &tokenizer(256)).is_ok());
}

#[test]
fn the_qwen3_tokenizer_fits_its_model_vocabulary_and_not_one_less() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/qwen3-tokenizer");
    let tok = Tokenizer::from_dir(dir).unwrap();
    assert_eq!(tok.max_token_id(), Some(151_668));
    let narrow = |vocab: i32| {
        let ModelConfig::Qwen3(base) = config_with(vocab) else {
            unreachable!()
        };
        ModelConfig::Qwen3(Qwen3Config {
            hidden_size: 16,
            intermediate_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: Some(1),
            head_dim: Some(8),
            ..base
        })
    };
    let fits = random_model(&narrow(151_936), 0, Dtype::F32).unwrap();
    assert!(check_tokenizer_fits(&fits, &tok).is_ok());
    let short = random_model(&narrow(151_668), 0, Dtype::F32).unwrap();
    match check_tokenizer_fits(&short, &tok) {
        Err(Error::TokenizerDoesNotFit {
            max_token_id,
            tokenizer_ids,
            vocab_size,
        }) => assert_eq!(
            (max_token_id, tokenizer_ids, vocab_size),
            (151_668, 151_669, 151_668)
        ),
        other => panic!("expected TokenizerDoesNotFit, got {other:?}"),
    }
}

// ------------------------------------------------------------- huge limits

/// Every id ends generation, so the first token stops it: a limit of a
/// billion tokens must cost nothing up front.
#[test]
fn a_billion_token_limit_allocates_nothing_up_front() {
    let m = model();
    let options = BatchOptions {
        max_tokens: 1_000_000_000,
        num_generations: 2,
        eos_token_ids: (0..VOCAB as u32).collect(),
        ..BatchOptions::default()
    };
    memory::clear_cache();
    let before = memory::active_memory();
    memory::reset_peak_memory();
    let out = generate_batch(&m, &[vec![1, 2, 3], vec![4]], &options, &mut rng()).unwrap();
    let peak = memory::peak_memory().saturating_sub(before);
    assert_eq!(out.completions.len(), 4);
    for c in &out.completions {
        assert_eq!((c.len(), c.finish_reason), (1, FinishReason::Stop));
    }
    // A buffer for a billion positions would be tens of gigabytes; the
    // tiny model's weights and a 256-position cache are a few megabytes.
    assert!(peak < 256 << 20, "peak {peak} B");
}

#[test]
fn a_billion_token_stream_stops_at_its_end_of_sequence() {
    let (m, tok) = (model(), tokenizer(VOCAB as usize));
    let options = GenerateOptions {
        max_tokens: Some(1_000_000_000),
        eos_token_ids: Some((0..VOCAB as u32).collect()),
        ..GenerateOptions::default()
    };
    let out = generate(&m, &tok, &[1, 2, 3], &options, rng()).unwrap();
    assert_eq!(
        (out.tokens.len(), out.finish_reason),
        (1, FinishReason::Stop)
    );
    let mut steps = generate_step(&m, &[1, 2], &greedy(1_000_000_000), rng()).unwrap();
    for _ in 0..3 {
        steps.next().unwrap().unwrap();
    }
    let held: usize = steps.cache().iter().map(LayerCache::nbytes).sum();
    assert!(held < 1 << 20, "the cache holds {held} B after 5 positions");
}

#[test]
fn limits_past_32_bit_positions_are_errors_naming_max_tokens() {
    let m = model();
    for max_tokens in [usize::MAX, i32::MAX as usize] {
        let options = BatchOptions {
            max_tokens,
            ..BatchOptions::default()
        };
        let text = too_large(
            generate_batch(&m, &[vec![1, 2]], &options, &mut rng()),
            "max_tokens",
        );
        assert!(text.contains("max_tokens"), "{text}");
        too_large(
            generate_step(&m, &[1, 2], &greedy(max_tokens), rng()).map(|_| ()),
            "max_tokens",
        );
    }
}

#[test]
fn a_group_size_that_overflows_the_row_count_is_an_error() {
    let m = model();
    for g in [usize::MAX, 1 << 31] {
        let options = BatchOptions {
            num_generations: g,
            max_tokens: 2,
            ..BatchOptions::default()
        };
        too_large(
            generate_batch(&m, &[vec![1], vec![2]], &options, &mut rng()),
            "num_generations",
        );
    }
}

/// Greedy tokens of one prompt, one sequence at a time (the single-sequence
/// cache, its own code path).
fn single(m: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    generate_step(m, prompt, &greedy(n), rng())
        .unwrap()
        .map(|t| t.unwrap().token)
        .collect()
}

/// Rows that decode past several growth steps of the batch cache (and
/// leave the batch at different times) give exactly the tokens of
/// single-sequence decoding.
#[test]
fn growing_batch_caches_give_the_single_sequence_tokens() {
    let m = model();
    let prompts = vec![vec![5, 6, 7, 8, 9], vec![10], vec![11, 12, 13]];
    let n = 600;
    let reference: Vec<Vec<u32>> = prompts.iter().map(|p| single(&m, p, n)).collect();
    for g in [1, 2] {
        let options = BatchOptions {
            max_tokens: n,
            num_generations: g,
            ..BatchOptions::default()
        };
        let out = generate_batch(&m, &prompts, &options, &mut rng()).unwrap();
        for c in &out.completions {
            assert_eq!(
                c.tokens, reference[c.prompt_index],
                "prompt {}",
                c.prompt_index
            );
        }
        // One row stops early at a token it produces, the others grow on.
        let stop = reference[1][300];
        let first = reference[1].iter().position(|&t| t == stop).unwrap();
        let options = BatchOptions {
            eos_token_ids: vec![stop],
            ..options
        };
        let out = generate_batch(&m, &prompts, &options, &mut rng()).unwrap();
        let c = &out.completions[g];
        assert_eq!(c.tokens, reference[1][..=first]);
        for c in &out.completions {
            let r = &reference[c.prompt_index];
            let end = r.iter().position(|&t| t == stop).map_or(n, |i| i + 1);
            assert_eq!(c.tokens, r[..end]);
        }
    }
}

// ------------------------------------------------------------ configs

fn dense(edit: impl FnOnce(&mut Qwen3Config)) -> ModelConfig {
    let mut config = config_with(VOCAB);
    edit(config.base_mut());
    config
}

/// Asserts that `config` is rejected naming `field`, with `value` in the
/// message.
fn assert_config_error(config: ModelConfig, field: &str, value: &str) {
    match config.validate() {
        Err(Error::ModelConfig { field: f, message }) => {
            assert_eq!(f, field, "{message}");
            assert!(
                message.contains(value),
                "{field}: {message:?} lacks {value:?}"
            );
        }
        other => panic!("expected a `{field}` error, got {other:?}"),
    }
    // The model constructors reject it too.
    assert!(random_model(&config, 0, Dtype::F32).is_err());
}

#[test]
fn configs_that_compute_nan_are_rejected() {
    let cases: Vec<(ModelConfig, &str, &str)> = vec![
        (dense(|c| c.rope_theta = Some(0.0)), "rope_theta", "0"),
        (
            dense(|c| c.rope_theta = Some(-10_000.0)),
            "rope_theta",
            "-10000",
        ),
        (
            dense(|c| c.rope_theta = Some(f64::NAN)),
            "rope_theta",
            "NaN",
        ),
        (
            dense(|c| c.rope_theta = Some(1e300)),
            "rope_theta",
            "10000000000",
        ),
        (
            dense(|c| {
                c.rope_theta = None;
                c.rope_parameters = Some(serde_json::json!({"rope_theta": "big"}));
            }),
            "rope_parameters.rope_theta",
            "big",
        ),
        (
            dense(|c| {
                c.rope_theta = None;
                c.rope_parameters = Some(serde_json::json!({"rope_theta": -1.0}));
            }),
            "rope_parameters.rope_theta",
            "-1",
        ),
        (
            dense(|c| c.rope_scaling = Some(serde_json::json!({"type": "linear", "factor": 0.0}))),
            "rope_scaling.factor",
            "0",
        ),
        (
            dense(|c| c.rms_norm_eps = -1e-6),
            "rms_norm_eps",
            "-0.000001",
        ),
        (dense(|c| c.rms_norm_eps = f64::NAN), "rms_norm_eps", "NaN"),
        (
            dense(|c| c.rms_norm_eps = f64::INFINITY),
            "rms_norm_eps",
            "inf",
        ),
        (
            dense(|c| c.max_position_embeddings = 0),
            "max_position_embeddings",
            "0",
        ),
        (
            dense(|c| c.max_position_embeddings = -5),
            "max_position_embeddings",
            "-5",
        ),
        (
            dense(|c| c.dtype = Some("float8".into())),
            "dtype",
            "float8",
        ),
        (
            dense(|c| c.torch_dtype = Some("int4".into())),
            "torch_dtype",
            "int4",
        ),
    ];
    for (config, field, value) in cases {
        assert_config_error(config, field, value);
    }
}

#[test]
fn configs_with_impossible_shapes_are_rejected() {
    let cases: Vec<(ModelConfig, &str, &str)> = vec![
        (
            dense(|c| c.num_attention_heads = 0),
            "num_attention_heads",
            "0",
        ),
        (
            dense(|c| c.num_key_value_heads = Some(-2)),
            "num_key_value_heads",
            "-2",
        ),
        (
            dense(|c| c.num_key_value_heads = Some(3)),
            "num_key_value_heads",
            "3",
        ),
        (dense(|c| c.hidden_size = 0), "hidden_size", "0"),
        (dense(|c| c.vocab_size = -1), "vocab_size", "-1"),
        (dense(|c| c.head_dim = Some(15)), "head_dim", "15"),
        (
            dense(|c| {
                c.num_attention_heads = 1 << 20;
                c.num_key_value_heads = Some(1 << 20);
                c.head_dim = Some(1 << 12);
            }),
            "num_attention_heads",
            "1048576",
        ),
        (
            dense(|c| {
                c.vocab_size = i32::MAX;
                c.hidden_size = i32::MAX;
            }),
            "vocab_size",
            "2147483647",
        ),
        (
            dense(|c| c.intermediate_size = i32::MAX),
            "intermediate_size",
            "2147483647",
        ),
    ];
    for (config, field, value) in cases {
        assert_config_error(config, field, value);
    }
}

#[test]
fn moe_configs_with_undivided_hidden_size_or_bad_settings_are_rejected() {
    let moe = |edit: &dyn Fn(&mut mlx_lm::models::Qwen3MoeConfig)| {
        let ModelConfig::Qwen3Moe(mut c) = tiny_qwen3_moe_config() else {
            unreachable!()
        };
        edit(&mut c);
        ModelConfig::Qwen3Moe(c)
    };
    let cases: Vec<(ModelConfig, &str, &str)> = vec![
        (
            moe(&|c| {
                c.base.head_dim = None;
                c.base.hidden_size = 66;
            }),
            "hidden_size",
            "66",
        ),
        (
            moe(&|c| c.router_aux_loss_coef = f64::INFINITY),
            "router_aux_loss_coef",
            "inf",
        ),
        (
            moe(&|c| c.decoder_sparse_step = 0),
            "decoder_sparse_step",
            "0",
        ),
        (
            moe(&|c| c.num_experts_per_tok = 9),
            "num_experts_per_tok",
            "9",
        ),
        (moe(&|c| c.base.rope_theta = Some(0.0)), "rope_theta", "0"),
    ];
    for (config, field, value) in cases {
        assert_config_error(config, field, value);
    }
}

#[test]
fn a_config_file_error_names_the_file_and_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut value = config_with(VOCAB).to_value().unwrap();
    value["rope_theta"] = serde_json::json!(0.0);
    std::fs::write(dir.join("config.json"), value.to_string()).unwrap();
    let result = load_config(dir);
    match result {
        Err(Error::InvalidConfig {
            path,
            field,
            message,
        }) => {
            assert!(path.ends_with("config.json"));
            assert_eq!(field, "rope_theta", "{message}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

// ----------------------------------------------------------- sampling

fn sampler(edit: impl FnOnce(&mut SamplerConfig)) -> SamplerConfig {
    let mut s = SamplerConfig::default();
    edit(&mut s);
    s
}

/// Sampler settings out of range, each with the parameter it must name:
/// rejected at temperature 0 (where they would be ignored) and at 1.
#[test]
fn sampler_settings_out_of_range_are_errors_at_every_temperature() {
    let cases: Vec<(SamplerConfig, &str)> = vec![
        (sampler(|s| s.top_p = 1.5), "top_p"),
        (sampler(|s| s.top_p = -0.1), "top_p"),
        (sampler(|s| s.top_p = f64::NAN), "top_p"),
        (sampler(|s| s.min_p = 1.5), "min_p"),
        (sampler(|s| s.min_p = -0.5), "min_p"),
        (sampler(|s| s.min_p = f64::NAN), "min_p"),
        (sampler(|s| s.xtc_probability = 2.0), "xtc_probability"),
        (sampler(|s| s.xtc_probability = f64::NAN), "xtc_probability"),
        (sampler(|s| s.xtc_probability = -1.0), "xtc_probability"),
        (sampler(|s| s.xtc_threshold = 0.7), "xtc_threshold"),
        (sampler(|s| s.xtc_threshold = f64::NAN), "xtc_threshold"),
        (
            sampler(|s| s.xtc_special_tokens = vec![256]),
            "xtc_special_tokens",
        ),
        (sampler(|s| s.top_k = 256), "top_k"),
    ];
    let m = model();
    for (base, parameter) in cases {
        for temperature in [0.0, 1.0] {
            let s = SamplerConfig {
                temperature,
                ..base.clone()
            };
            let single = greedy(2).sampler(s.clone());
            let batch = BatchOptions {
                max_tokens: 2,
                sampler: s.clone(),
                ..BatchOptions::default()
            };
            let per_prompt = BatchOptions {
                max_tokens: 2,
                prompt_samplers: Some(vec![SamplerConfig::default(), s.clone()]),
                ..BatchOptions::default()
            };
            for result in [
                generate_step(&m, &[1, 2], &single, rng()).map(|_| ()),
                generate_batch(&m, &[vec![1], vec![2]], &batch, &mut rng()).map(|_| ()),
                generate_batch(&m, &[vec![1], vec![2]], &per_prompt, &mut rng()).map(|_| ()),
            ] {
                match result {
                    Err(Error::InvalidSampling {
                        parameter: p,
                        message,
                    }) => {
                        assert_eq!(p, parameter, "{message}")
                    }
                    other => panic!("{parameter} at t={temperature}: got {other:?}"),
                }
            }
        }
    }
}

#[test]
fn temperatures_that_are_not_finite_non_negative_numbers_are_errors() {
    let m = model();
    for t in [f64::NAN, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
        let options = greedy(2).sampler(SamplerConfig::with_temperature(t));
        match generate_step(&m, &[1], &options, rng()) {
            Err(Error::InvalidSampling { parameter, .. }) => assert_eq!(parameter, "temperature"),
            other => panic!("t = {t}: {:?}", other.err()),
        }
    }
}

#[test]
fn penalties_and_biases_that_are_not_numbers_are_errors() {
    let processors = |edit: &dyn Fn(&mut LogitsProcessorConfig)| {
        let mut p = LogitsProcessorConfig::default();
        edit(&mut p);
        p
    };
    let cases: Vec<(LogitsProcessorConfig, &str)> = vec![
        (
            processors(&|p| p.repetition_penalty = Some(f64::NAN)),
            "repetition_penalty",
        ),
        (
            processors(&|p| p.repetition_penalty = Some(f64::INFINITY)),
            "repetition_penalty",
        ),
        (
            processors(&|p| p.repetition_penalty = Some(-1.0)),
            "repetition_penalty",
        ),
        (
            processors(&|p| p.presence_penalty = Some(f64::NAN)),
            "presence_penalty",
        ),
        (
            processors(&|p| p.presence_penalty = Some(f64::INFINITY)),
            "presence_penalty",
        ),
        (
            processors(&|p| p.frequency_penalty = Some(f64::NAN)),
            "frequency_penalty",
        ),
        (
            processors(&|p| p.frequency_penalty = Some(f64::NEG_INFINITY)),
            "frequency_penalty",
        ),
        (
            processors(&|p| p.logit_bias = vec![(3, f64::NAN)]),
            "logit_bias",
        ),
        (
            processors(&|p| p.logit_bias = vec![(3, f64::INFINITY)]),
            "logit_bias",
        ),
        (
            processors(&|p| p.logit_bias = vec![(256, 1.0)]),
            "logit_bias",
        ),
    ];
    let m = model();
    for (p, parameter) in cases {
        for temperature in [0.0, 0.8] {
            let single = greedy(2)
                .sampler(SamplerConfig::with_temperature(temperature))
                .processors(p.clone());
            let batch = BatchOptions {
                max_tokens: 2,
                sampler: SamplerConfig::with_temperature(temperature),
                processors: p.clone(),
                ..BatchOptions::default()
            };
            for result in [
                generate_step(&m, &[1, 2], &single, rng()).map(|_| ()),
                generate_batch(&m, &[vec![1, 2]], &batch, &mut rng()).map(|_| ()),
            ] {
                match result {
                    Err(Error::InvalidSampling {
                        parameter: got,
                        message,
                    }) => {
                        assert_eq!(got, parameter, "{message}")
                    }
                    other => panic!("{parameter} at t={temperature}: got {other:?}"),
                }
            }
        }
    }
    // -inf bans a token and is allowed.
    let ban = greedy(2).processors(processors(&|p| p.logit_bias = vec![(3, f64::NEG_INFINITY)]));
    let tokens: Vec<u32> = generate_step(&m, &[1, 2], &ban, rng())
        .unwrap()
        .map(|t| t.unwrap().token)
        .collect();
    assert!(!tokens.contains(&3));
}
