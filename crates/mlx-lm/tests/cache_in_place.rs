//! Batch generation holds the KV cache once: every step's cache write
//! reuses the buffer in place, which needs that nothing (the step queue's
//! marker included) holds a reference to the previous step's buffer when
//! the write is queued. (Whether the previous step still reads the buffer
//! depends on the device running behind the host, which
//! `BatchOptions::in_place_cache_writes` rules out on a GPU; the figures
//! are in docs/GPU_BENCH.md.)
//!
//! Its own test binary: it reads MLX's process-wide memory counters.

use std::sync::Mutex;

use mlx_lm::generate::{BatchOptions, generate_batch};
use mlx_lm::loader::{random_model, tiny_qwen3_config};
use mlx_lm::models::{Model, ModelConfig, Qwen3Config};
use mlx_lm::sample::RandomState;
use mlx_tensor::{Array, Dtype, memory};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// The memory counters are process-wide: one measurement at a time.
static MEASURING: Mutex<()> = Mutex::new(());

const ROWS: usize = 32;
const PROMPT: usize = 8;
const NEW_TOKENS: usize = 248;
const LAYERS: i32 = 4;
const KV_HEADS: i32 = 4;
const HEAD_DIM: i32 = 64;

/// Narrow layers with wide attention heads: a step's activations are small
/// next to one layer's cache (16 MiB of f32 keys and values at 256
/// positions, one allocation step of the cache), so a copied cache buffer
/// stands out in the peak.
fn model() -> Res<Model> {
    let ModelConfig::Qwen3(base) = tiny_qwen3_config() else {
        return Err("tiny_qwen3_config is a Qwen3 configuration".into());
    };
    let config = ModelConfig::Qwen3(Qwen3Config {
        hidden_size: 64,
        intermediate_size: 128,
        num_attention_heads: KV_HEADS,
        num_key_value_heads: Some(KV_HEADS),
        head_dim: Some(HEAD_DIM),
        num_hidden_layers: LAYERS,
        vocab_size: 256,
        ..base
    });
    Ok(random_model(&config, 3, Dtype::F32)?)
}

/// Bytes of one layer's keys and values at their final length.
fn layer_cache_bytes() -> usize {
    2 * ROWS * KV_HEADS as usize * (PROMPT + NEW_TOKENS) * HEAD_DIM as usize * 4
}

/// Peak memory above what was in use before generating `new_tokens` tokens
/// for each of `ROWS` rows, `group` completions a prompt (steps queued in
/// halves, the default).
fn generation_peak(model: &Model, new_tokens: usize, group: usize) -> Res<usize> {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let prompts: Vec<Vec<u32>> = (0..ROWS / group)
        .map(|r| {
            (0..PROMPT)
                .map(|i| ((r * 31 + i * 7) % 250 + 3) as u32)
                .collect()
        })
        .collect();
    let options = BatchOptions {
        max_tokens: new_tokens,
        num_generations: group,
        ..BatchOptions::default()
    };
    memory::clear_cache();
    let before = memory::active_memory();
    memory::reset_peak_memory();
    let out = generate_batch(model, &prompts, &options, &mut RandomState::from_seed(0)?)?;
    assert_eq!(out.stats.generation_tokens, ROWS * new_tokens);
    Ok(memory::peak_memory().saturating_sub(before))
}

/// Checks that generating with `group` completions a prompt peaks below
/// the cache plus a quarter of one layer's buffer: the cache, plus a
/// step's activations (about 2.5 MB here, well under a layer's buffer),
/// where a copied buffer of keys or values would add `layer / 2`.
fn assert_cache_held_once(group: usize) -> Res {
    let model = model()?;
    Array::ones(&[4], Dtype::F32)?.eval()?;
    // Warm-up: compiled kernels and first allocations.
    generation_peak(&model, 4, group)?;
    let cache = LAYERS as usize * layer_cache_bytes();
    let layer = layer_cache_bytes();
    let peak = generation_peak(&model, NEW_TOKENS, group)?;
    assert!(
        peak < cache + layer / 4,
        "decoding (groups of {group}) peaked at {peak} B above the start; \
         the cache is {cache} B ({layer} B a layer)"
    );
    Ok(())
}

#[test]
fn steps_queued_in_halves_hold_the_cache_once() -> Res {
    assert_cache_held_once(1)
}

/// Two completions a prompt: the prompts' prefill cache is repeated into
/// the full-length cache. The prefill holds only the prompts' positions
/// and the repeat frees it layer by layer, so the peak is the same bound
/// as without groups (a prefill cache reserved at the final length would
/// add half the cache, alive while the repeat runs).
#[test]
fn repeating_a_group_prompt_cache_holds_the_cache_once() -> Res {
    assert_cache_held_once(2)
}
