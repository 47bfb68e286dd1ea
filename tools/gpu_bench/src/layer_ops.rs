//! Device time of the operations of one decoding step, one kind at a time:
//! each is queued `REPEATS` times in one evaluation (independent copies, so
//! launch latency overlaps) and the median over rounds is divided by
//! `REPEATS`. The shapes are those of the Qwen3-0.6B-shaped model at the
//! given batch and context; a whole step has each per-layer entry 28 times.

use mlx_tensor::{Array, Dtype, fast};
use serde_json::{Value, json};

use super::{Res, median};

const REPEATS: usize = 28;
const HIDDEN: i32 = 1024;
const HEADS: i32 = 16;
const KV_HEADS: i32 = 8;
const HEAD_DIM: i32 = 128;
const INTERMEDIATE: i32 = 3072;

fn normal(shape: &[i32], seed: u64) -> Res<Array> {
    let key = mlx_tensor::random::key(seed)?;
    let x = mlx_tensor::random::normal(shape, Dtype::F32, 0.0, 0.5, Some(&key))?
        .as_type(Dtype::BF16)?;
    x.eval()?;
    Ok(x)
}

/// Milliseconds per call of `f` (see the module documentation).
fn per_call(f: &dyn Fn(usize) -> Res<Array>) -> Res<f64> {
    let mut times = Vec::new();
    for round in 0..8 {
        let t = std::time::Instant::now();
        let outs: Vec<Array> = (0..REPEATS).map(f).collect::<Res<_>>()?;
        let refs: Vec<&Array> = outs.iter().collect();
        mlx_tensor::eval(&refs)?;
        if round >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3 / REPEATS as f64);
        }
    }
    Ok(median(times))
}

/// Per-operation times at batch `b` with `context` cached positions.
pub fn bench(b: i32, context: i32, vocab: i32) -> Res<Value> {
    let x = normal(&[b, 1, HIDDEN], 1)?;
    let w_qkv = normal(&[HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM], 2)?;
    let w_o = normal(&[HEADS * HEAD_DIM, HIDDEN], 3)?;
    let w_gate_up = normal(&[HIDDEN, 2 * INTERMEDIATE], 4)?;
    let w_down = normal(&[INTERMEDIATE, HIDDEN], 5)?;
    let w_head = normal(&[vocab, HIDDEN], 6)?;
    let norm_w = normal(&[HEAD_DIM], 7)?;
    let hidden_norm_w = normal(&[HIDDEN], 8)?;
    let q = normal(&[b, HEADS, 1, HEAD_DIM], 9)?;
    let k_new = normal(&[b, KV_HEADS, 1, HEAD_DIM], 10)?;
    let keys = normal(&[b, KV_HEADS, context, HEAD_DIM], 11)?;
    let values = normal(&[b, KV_HEADS, context, HEAD_DIM], 12)?;
    let buffer = normal(&[b, KV_HEADS, context + 256, HEAD_DIM], 13)?;
    let attn_out = normal(&[b, 1, HEADS * HEAD_DIM], 14)?;
    let gate_up = normal(&[b, 1, 2 * INTERMEDIATE], 15)?;
    let act = normal(&[b, 1, INTERMEDIATE], 16)?;
    let scale = (HEAD_DIM as f32).powf(-0.5);

    let mut row = serde_json::Map::new();
    let mut add = |name: &str, ms: f64| {
        row.insert(format!("{name}_ms"), json!(ms));
    };
    add(
        "rms_norm",
        per_call(&|_| Ok(fast::rms_norm(&x, Some(&hidden_norm_w), 1e-6)?))?,
    );
    add("qkv_matmul", per_call(&|_| Ok(x.matmul(&w_qkv)?))?);
    add(
        "q_k_norm_rope",
        per_call(&|_| {
            let qn = fast::rms_norm(&q, Some(&norm_w), 1e-6)?;
            let kn = fast::rms_norm(&k_new, Some(&norm_w), 1e-6)?;
            let qr = fast::rope(&qn, HEAD_DIM, false, 1e6, 1.0, context)?;
            let kr = fast::rope(&kn, HEAD_DIM, false, 1e6, 1.0, context)?;
            Ok(qr
                .sum(mlx_tensor::Axes::All, false)?
                .add(&kr.sum(mlx_tensor::Axes::All, false)?)?)
        })?,
    );
    // The buffer stays referenced, so every write copies it (what happens
    // when the previous step still reads the cache).
    add(
        "cache_write_copying",
        per_call(&|_| {
            Ok(buffer.slice_update(
                &k_new,
                &[0, 0, context, 0],
                &[b, KV_HEADS, context + 1, HEAD_DIM],
                &[1, 1, 1, 1],
            )?)
        })?,
    );
    add(
        "sdpa",
        per_call(&|_| {
            Ok(fast::scaled_dot_product_attention(
                &q,
                &keys,
                &values,
                scale,
                fast::SdpaMask::None,
            )?)
        })?,
    );
    // The same attention as two batched products and a softmax (query heads
    // grouped by the key-value head they share).
    add(
        "attention_matmuls",
        per_call(&|_| {
            let grouped = q.reshape(&[b, KV_HEADS, HEADS / KV_HEADS, HEAD_DIM])?;
            let scores = grouped
                .mul_scalar(f64::from(scale))?
                .matmul(&keys.transpose(&[0, 1, 3, 2])?)?;
            let probs = scores.softmax(-1, true)?;
            Ok(probs.matmul(&values)?.reshape(&[b, HEADS, 1, HEAD_DIM])?)
        })?,
    );
    add("o_matmul", per_call(&|_| Ok(attn_out.matmul(&w_o)?))?);
    add("gate_up_matmul", per_call(&|_| Ok(x.matmul(&w_gate_up)?))?);
    add(
        "swiglu",
        per_call(&|_| {
            let g = gate_up.slice_axis(-1, 0, Some(INTERMEDIATE), 1)?;
            let u = gate_up.slice_axis(-1, INTERMEDIATE, None, 1)?;
            Ok(g.multiply(&g.sigmoid()?)?.multiply(&u)?)
        })?,
    );
    add("down_matmul", per_call(&|_| Ok(act.matmul(&w_down)?))?);
    add("residual_add", per_call(&|_| Ok(x.add(&x)?))?);
    add("lm_head", per_call(&|_| Ok(x.matmul(&w_head.t()?)?))?);
    row.insert("batch".into(), json!(b));
    row.insert("context".into(), json!(context));
    Ok(Value::Object(row))
}
