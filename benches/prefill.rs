//! Prompt processing (prefill) throughput of a Qwen3-0.6B-shaped model with
//! random weights, in tokens per second.
//!
//! Shapes of Qwen3-0.6B: vocabulary 151,936, hidden 1,024, 28 layers, 16
//! query and 8 key/value heads of 128, SwiGLU 3,072, tied embeddings. The
//! weights are drawn in-process (nothing is written to disk). One iteration
//! runs the prompt through the model with a fresh KV cache, projects the last
//! position to logits (as generation does before its first sample) and
//! evaluates the logits and the cache, all inside the timed region.
//!
//! Settings (environment): `PREFILL_TOKENS` (prompt length, default 128),
//! `PREFILL_DTYPE` (`bf16` default, `f16`, `f32`), `PREFILL_DEVICE` (`cpu` or
//! `gpu`; default MLX's). `scripts/compare/prefill_mlx_lm.py` runs this bench and
//! the same prefill through mlx-lm and prints the ratio:
//!
//! ```text
//! cargo bench --bench prefill
//! python scripts/compare/prefill_mlx_lm.py
//! ```

mod common;

use common::{env, env_dtype, select_device};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mlx_lm::generate::Decoder;
use mlx_lm::loader::{qwen3_0_6b_config, random_model};
use mlx_lm::{CheckedTokens, LanguageModel, Model};
use mlx_nn::ModuleExt;
use mlx_tensor::{Array, Device, Dtype};

fn settings() -> (i32, Dtype) {
    select_device("PREFILL_DEVICE");
    (env("PREFILL_TOKENS", 128), env_dtype("PREFILL_DTYPE"))
}

/// Deterministic pseudo-random token ids.
fn prompt(len: i32, vocab: i32) -> Array {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let ids: Vec<u32> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab as u64) as u32
        })
        .collect();
    Array::from_slice(&ids, &[1, len]).unwrap_or_else(|e| panic!("prompt: {e}"))
}

fn prefill(model: &Model, tokens: &Array) -> mlx_lm::Result<()> {
    let mut cache = model.new_cache();
    let tokens = CheckedTokens::new(tokens, model.vocab_size())?;
    let hidden = Decoder::new(model)?.prefill(&tokens, &mut cache)?;
    let logits = model.logits_from_hidden(&hidden.slice_axis(1, -1, None, 1)?)?;
    let mut outputs = vec![&logits];
    outputs.extend(cache.iter().flat_map(|c| c.arrays()));
    mlx_tensor::eval(&outputs)?;
    Ok(())
}

fn bench_prefill(c: &mut Criterion) {
    let (len, dtype) = settings();
    let config = qwen3_0_6b_config(28, 151_936);
    let model = random_model(&config, 0, dtype).unwrap_or_else(|e| panic!("model: {e}"));
    model
        .eval_params()
        .unwrap_or_else(|e| panic!("weights: {e}"));
    let tokens = prompt(len, config.base().vocab_size);
    eprintln!(
        "prefill: Qwen3-0.6B shapes, {} parameters, {dtype}, {len} tokens, on {:?} (MLX {})",
        model.num_parameters(),
        Device::default_device(),
        mlx_tensor::device::mlx_version()
    );
    for _ in 0..2 {
        prefill(&model, &tokens).unwrap_or_else(|e| panic!("warm-up: {e}"));
    }
    let mut group = c.benchmark_group("prefill_qwen3_0.6b");
    group.throughput(Throughput::Elements(len as u64));
    group.sample_size(10);
    group.bench_function(format!("{dtype}_t{len}"), |b| {
        b.iter(|| prefill(&model, &tokens).unwrap_or_else(|e| panic!("prefill: {e}")))
    });
    group.finish();
}

criterion_group!(benches, bench_prefill);
criterion_main!(benches);
