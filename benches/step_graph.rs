//! Host time to build one decoding step's graph (the forward pass of one
//! token per row through a Qwen3-0.6B-shaped model with its cache, and the
//! argmax), nothing evaluated. On a GPU, decoding small batches is bound by
//! the host: this is the part of a step spent in this workspace and in
//! MLX's op constructors before `async_eval` encodes the kernels
//! (docs/GPU_BENCH.md, "build" of the bare loop).
//!
//! Shapes of Qwen3-0.6B (28 layers, hidden 1,024, 16/8 heads of 128,
//! SwiGLU 3,072) with a 4,096-token vocabulary: the vocabulary's size does
//! not change the graph. Settings (environment): `STEP_GRAPH_LAYERS`
//! (default 28), `STEP_GRAPH_BATCHES` (default `1,64`).
//!
//! ```text
//! cargo bench --bench step_graph
//! ```

mod common;

use common::{env, env_list};

use criterion::{Criterion, criterion_group, criterion_main};
use mlx_lm::generate::Decoder;
use mlx_lm::loader::{qwen3_0_6b_config, random_model};
use mlx_lm::{CheckedTokens, LanguageModel};
use mlx_tensor::{Array, Dtype};

fn bench_step_graph(c: &mut Criterion) {
    let layers = env("STEP_GRAPH_LAYERS", 28);
    let batches: Vec<usize> = env_list("STEP_GRAPH_BATCHES", "1,64");
    let model = random_model(&qwen3_0_6b_config(layers, 4096), 0, Dtype::BF16)
        .expect("a random Qwen3 model");
    let mut group = c.benchmark_group("step_graph_qwen3_0.6b");
    for rows in batches {
        let cache = if rows == 1 {
            model.new_cache()
        } else {
            model
                .new_batch_cache(&vec![0; rows])
                .expect("a batch cache")
        };
        let tokens = Array::from_slice(&vec![5u32; rows], &[rows as i32, 1]).expect("tokens");
        let tokens = CheckedTokens::new(&tokens, model.vocab_size()).expect("ids in range");
        let decoder = Decoder::new(&model).expect("a decoder");
        group.bench_function(format!("b{rows}"), |b| {
            b.iter(|| {
                let mut step_cache = cache.clone();
                decoder
                    .step(&tokens, &mut step_cache)
                    .and_then(|logits| Ok(logits.argmax(Some(-1), false)?))
                    .expect("a step's graph")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_step_graph);
criterion_main!(benches);
