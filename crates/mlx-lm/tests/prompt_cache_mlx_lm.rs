//! Prompt-cache files against mlx-lm 0.32.2, both ways (fixtures from
//! `scripts/fixtures/gen_prompt_cache_fixtures.py`, tiny Qwen3 `qwen3_untied`).
//!
//! For a KV, a rotating and a left-padded batch cache, mlx-lm saved the cache
//! of a prompt (all but its last token) and recorded the greedy continuation
//! after feeding the last token. Here we load mlx-lm's files and continue
//! from them, and save our own caches of the same prompts. Our files have
//! mlx-lm's layout (same tensor names, dtypes and metadata); with
//! `PROMPT_CACHE_OUT=DIR` they are also written to DIR for the script's
//! `--check-ours DIR`, which loads them with mlx-lm and decodes.

mod lm_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lm_support::*;
use mlx_lm::cache::{
    BatchKVCache, LayerCache, RotatingKVCache, load_prompt_cache, save_prompt_cache,
};
use mlx_lm::{LanguageModel, Model};
use mlx_tensor::{Array, Dtype, io};
use serde_json::Value;

const MODEL: &str = "qwen3_untied";
/// Our prefill of the prompt and mlx-lm's agree to float32 rounding.
const STATE_TOLERANCE: f32 = 1e-4;
const LOGIT_TOLERANCE: f32 = 1e-3;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/prompt_cache")
        .join(name)
}

/// One case of `continuations.json`.
struct Case {
    name: &'static str,
    fixture: Value,
}

impl Case {
    fn load(name: &'static str) -> Case {
        let text = std::fs::read_to_string(fixture_path("continuations.json")).unwrap();
        let all: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(all["model"], MODEL);
        Case {
            name,
            fixture: all["cases"][name].clone(),
        }
    }

    fn mlx_lm_file(&self) -> PathBuf {
        fixture_path(self.fixture["file"].as_str().unwrap())
    }

    fn rows(&self) -> Vec<Vec<u32>> {
        serde_json::from_value(self.fixture["prompt"].clone()).unwrap()
    }

    fn left_padding(&self) -> Vec<i32> {
        serde_json::from_value(self.fixture["left_padding"].clone()).unwrap()
    }

    fn metadata(&self) -> HashMap<String, String> {
        serde_json::from_value(self.fixture["metadata"].clone()).unwrap()
    }

    fn layers(&self) -> Vec<Value> {
        self.fixture["layers"].as_array().unwrap().clone()
    }

    fn continuation(&self) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
        let c = &self.fixture["continuation"];
        (
            serde_json::from_value(c["tokens"].clone()).unwrap(),
            serde_json::from_value(c["logits"].clone()).unwrap(),
        )
    }

    /// The kind of cache mlx-lm's `make_prompt_cache` (or the batch
    /// generator) gives this case, empty.
    fn fresh_cache(&self, model: &Model) -> Vec<LayerCache> {
        let layer = &self.layers()[0];
        (0..model.num_layers())
            .map(|_| match self.name {
                "kv" => LayerCache::Kv(Default::default()),
                "rotating" => LayerCache::Rotating(
                    RotatingKVCache::new(
                        layer["max_size"].as_i64().unwrap() as i32,
                        layer["keep"].as_i64().unwrap() as i32,
                    )
                    .unwrap(),
                ),
                "batch" => LayerCache::Batch(BatchKVCache::new(&self.left_padding())),
                other => panic!("unknown case {other}"),
            })
            .collect()
    }

    /// Our cache of every prompt token but the last.
    fn prefill(&self, model: &Model) -> Vec<LayerCache> {
        let mut cache = self.fresh_cache(model);
        let rows = self.rows();
        let head: Vec<Vec<u32>> = rows.iter().map(|r| r[..r.len() - 1].to_vec()).collect();
        model.forward(&batch(&head), Some(&mut cache)).unwrap();
        cache
    }

    /// Feeds the prompts' last tokens, then decodes greedily as many tokens
    /// as mlx-lm did; returns the tokens and their logits per row.
    fn greedy(&self, model: &Model, cache: &mut [LayerCache]) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
        let steps = self.continuation().0[0].len();
        let rows = self.rows();
        let mut next: Vec<u32> = rows.iter().map(|r| *r.last().unwrap()).collect();
        let mut tokens = vec![Vec::new(); rows.len()];
        let mut logits = vec![Vec::new(); rows.len()];
        let vocab = model.vocab_size() as usize;
        for _ in 0..steps {
            let column: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
            let out = model
                .forward(&batch(&column), Some(cache))
                .unwrap()
                .as_type(Dtype::F32)
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            for (r, best) in argmax_rows(&out, vocab).into_iter().enumerate() {
                tokens[r].push(best as u32);
                logits[r].push(out[r * vocab + best]);
                next[r] = best as u32;
            }
        }
        (tokens, logits)
    }
}

/// `[rows, len]` u32 ids.
fn batch(rows: &[Vec<u32>]) -> Array {
    let flat: Vec<u32> = rows.concat();
    Array::from_slice(&flat, &[rows.len() as i32, rows[0].len() as i32]).unwrap()
}

fn floats(a: &Array) -> Vec<f32> {
    a.as_type(Dtype::F32).unwrap().to_vec::<f32>().unwrap()
}

fn stored(cache: &LayerCache) -> (Array, Array) {
    match cache {
        LayerCache::Kv(c) => c.keys_and_values(),
        LayerCache::Rotating(c) => c.keys_and_values(),
        LayerCache::Batch(c) => c.keys_and_values(),
    }
    .unwrap()
}

/// The loaded layer against mlx-lm's description of it (class, offsets,
/// window) in `continuations.json`.
fn check_layer(case: &str, i: usize, cache: &LayerCache, expected: &Value) {
    let class = expected["class"].as_str().unwrap();
    let at = format!("{case}: layer {i}");
    match cache {
        LayerCache::Kv(c) => {
            assert_eq!(class, "KVCache", "{at}");
            assert_eq!(i64::from(c.offset()), expected["offset"], "{at}");
        }
        LayerCache::Rotating(c) => {
            assert_eq!(class, "RotatingKVCache", "{at}");
            assert_eq!(i64::from(c.offset()), expected["offset"], "{at}");
            assert_eq!(i64::from(c.keep()), expected["keep"], "{at}");
            assert_eq!(i64::from(c.max_size()), expected["max_size"], "{at}");
        }
        LayerCache::Batch(c) => {
            assert_eq!(class, "BatchKVCache", "{at}");
            let offsets: Vec<i32> = serde_json::from_value(expected["offsets"].clone()).unwrap();
            let padding: Vec<i32> =
                serde_json::from_value(expected["left_padding"].clone()).unwrap();
            assert_eq!(c.offsets(), offsets, "{at}");
            assert_eq!(c.left_padding(), &padding[..], "{at}");
            assert_eq!(i64::from(c.offset()), expected["idx"], "{at}");
        }
    }
}

/// Two caches hold the same positions, to float32 rounding.
fn assert_same_state(case: &str, ours: &[LayerCache], theirs: &[LayerCache]) {
    assert_eq!(ours.len(), theirs.len(), "{case}: layer count");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        for (which, (x, y)) in [
            ("keys", (stored(a).0, stored(b).0)),
            ("values", (stored(a).1, stored(b).1)),
        ] {
            assert_eq!(x.shape(), y.shape(), "{case}: layer {i} {which}");
            assert_eq!(x.dtype(), y.dtype(), "{case}: layer {i} {which}");
            let diff = max_diff(&floats(&x), &floats(&y));
            assert!(
                diff <= STATE_TOLERANCE,
                "{case}: layer {i} {which}: max |diff| {diff}"
            );
        }
    }
}

fn assert_continuation(
    case: &str,
    got: (Vec<Vec<u32>>, Vec<Vec<f32>>),
    want: (Vec<Vec<u32>>, Vec<Vec<f32>>),
) {
    assert_eq!(got.0, want.0, "{case}: greedy tokens differ from mlx-lm's");
    for (g, w) in got.1.iter().flatten().zip(want.1.iter().flatten()) {
        assert!(
            (g - w).abs() <= LOGIT_TOLERANCE,
            "{case}: logit {g} vs mlx-lm's {w}"
        );
    }
}

/// mlx-lm's file loads with its metadata, classes and offsets, and holds
/// what our own prefill of the prompt computes.
fn loads_mlx_lm_file(name: &'static str) {
    let case = Case::load(name);
    let model = load(MODEL, Dtype::F32);
    let (loaded, meta) = load_prompt_cache(case.mlx_lm_file()).unwrap();
    assert_eq!(meta, case.metadata(), "{name}: metadata");
    let layers = case.layers();
    assert_eq!(loaded.len(), layers.len(), "{name}: layer count");
    for (i, (c, expected)) in loaded.iter().zip(&layers).enumerate() {
        check_layer(name, i, c, expected);
    }
    assert_same_state(name, &case.prefill(&model), &loaded);
}

/// Greedy decoding from mlx-lm's file gives mlx-lm's continuation.
fn continues_from_mlx_lm_file(name: &'static str) {
    let case = Case::load(name);
    let model = load(MODEL, Dtype::F32);
    let (mut loaded, _) = load_prompt_cache(case.mlx_lm_file()).unwrap();
    let got = case.greedy(&model, &mut loaded);
    assert_continuation(name, got, case.continuation());
}

/// Our file of the same prompt has mlx-lm's layout: the same tensor names
/// and dtypes, shapes equal but for unused buffer positions, and the same
/// metadata entries.
fn assert_same_layout(name: &str, ours: &Path, theirs: &Path) {
    let ours = io::load_safetensors(ours).unwrap();
    let theirs = io::load_safetensors(theirs).unwrap();
    assert_eq!(ours.metadata, theirs.metadata, "{name}: metadata entries");
    let mut names: Vec<&String> = ours.tensors.keys().collect();
    let mut want: Vec<&String> = theirs.tensors.keys().collect();
    names.sort();
    want.sort();
    assert_eq!(names, want, "{name}: tensor names");
    for (key, a) in &ours.tensors {
        let b = &theirs.tensors[key];
        assert_eq!(a.dtype(), b.dtype(), "{name}: tensor {key} dtype");
        let (sa, sb) = (a.shape(), b.shape());
        assert_eq!(sa.ndim(), sb.ndim(), "{name}: tensor {key} rank");
        for axis in 0..sa.ndim() {
            // mlx-lm saves a KV buffer's unused positions too.
            if axis == 2 {
                assert!(sa[axis] <= sb[axis], "{name}: tensor {key} positions");
            } else {
                assert_eq!(sa[axis], sb[axis], "{name}: tensor {key} axis {axis}");
            }
        }
    }
}

/// Our cache of the prompt, saved: mlx-lm's layout, and decoding from it
/// gives mlx-lm's continuation. Also written to `$PROMPT_CACHE_OUT` when set.
fn saves_for_mlx_lm(name: &'static str) {
    let case = Case::load(name);
    let model = load(MODEL, Dtype::F32);
    let cache = case.prefill(&model);
    let tmp = temp_dir(&format!("prompt-cache-mlx-lm-{name}"));
    let dir = tmp.path();
    let file = format!("ours_{name}.safetensors");
    let path = dir.join(&file);
    save_prompt_cache(&path, &cache, &case.metadata()).unwrap();
    if let Some(out) = std::env::var_os("PROMPT_CACHE_OUT") {
        let out = PathBuf::from(out);
        std::fs::create_dir_all(&out).unwrap();
        save_prompt_cache(out.join(&file), &cache, &case.metadata()).unwrap();
    }
    assert_same_layout(name, &path, &case.mlx_lm_file());
    let (mut loaded, meta) = load_prompt_cache(&path).unwrap();
    assert_eq!(meta, case.metadata(), "{name}: metadata");
    let got = case.greedy(&model, &mut loaded);
    assert_continuation(name, got, case.continuation());
}

#[test]
fn mlx_lm_kv_cache_loads_with_metadata_offsets_and_state() {
    loads_mlx_lm_file("kv");
}

#[test]
fn mlx_lm_rotating_cache_loads_with_metadata_offsets_and_state() {
    loads_mlx_lm_file("rotating");
}

#[test]
fn mlx_lm_batch_cache_loads_with_metadata_offsets_and_state() {
    loads_mlx_lm_file("batch");
}

#[test]
fn decoding_from_mlx_lm_kv_cache_continues_as_mlx_lm() {
    continues_from_mlx_lm_file("kv");
}

#[test]
fn decoding_from_mlx_lm_rotating_cache_continues_as_mlx_lm() {
    continues_from_mlx_lm_file("rotating");
}

#[test]
fn decoding_from_mlx_lm_batch_cache_continues_as_mlx_lm() {
    continues_from_mlx_lm_file("batch");
}

#[test]
fn our_kv_cache_file_has_mlx_lm_layout_and_continuation() {
    saves_for_mlx_lm("kv");
}

#[test]
fn our_rotating_cache_file_has_mlx_lm_layout_and_continuation() {
    saves_for_mlx_lm("rotating");
}

#[test]
fn our_batch_cache_file_has_mlx_lm_layout_and_continuation() {
    saves_for_mlx_lm("batch");
}

/// A change to a file's tensors and metadata.
type Change = dyn FnOnce(&mut HashMap<String, Array>, &mut HashMap<String, String>);

/// mlx-lm's file `name` with one change, written to `dir`; returns the
/// error loading it gives.
fn load_error_of_changed(
    name: &'static str,
    dir: &Path,
    change: impl FnOnce(&mut HashMap<String, Array>, &mut HashMap<String, String>),
) -> String {
    let file = io::load_safetensors(Case::load(name).mlx_lm_file()).unwrap();
    let (mut tensors, mut metadata) = (file.tensors, file.metadata);
    change(&mut tensors, &mut metadata);
    let path = dir.join(format!("changed_{name}.safetensors"));
    io::save_safetensors(
        &path,
        tensors.iter().map(|(k, v)| (k.as_str(), v)),
        &metadata,
    )
    .unwrap();
    let err = load_prompt_cache(&path).unwrap_err().to_string();
    assert!(
        err.contains(&format!("changed_{name}.safetensors")),
        "{err}"
    );
    err
}

#[test]
fn inconsistent_prompt_cache_files_are_refused_with_what_is_wrong() {
    let tmp = temp_dir("prompt-cache-mlx-lm-refused");
    let dir = tmp.path();
    let scalar = |n: i32| Array::scalar(n).unwrap();
    let cases: Vec<(&'static str, &str, Box<Change>)> = vec![
        // mlx-lm's KV buffer holds 16 positions.
        (
            "kv",
            "offset 17 is outside the 16 stored positions",
            Box::new(move |t, _| {
                t.insert("0.2".into(), scalar(17));
            }),
        ),
        (
            "kv",
            "offset -1 is outside",
            Box::new(move |t, _| {
                t.insert("1.2".into(), scalar(-1));
            }),
        ),
        (
            "kv",
            "tensor `0.1` is missing",
            Box::new(|t, _| {
                t.remove("0.1");
            }),
        ),
        (
            "kv",
            "are not [B, heads, S, head_dim]",
            Box::new(|t, _| {
                let k = t["1.0"].reshape(&[2, 16, 16]).unwrap();
                t.insert("1.0".into(), k);
            }),
        ),
        (
            "kv",
            "must be floating point",
            Box::new(|t, _| {
                let v = t["0.1"].as_type(Dtype::I32).unwrap();
                t.insert("0.1".into(), v);
            }),
        ),
        (
            "kv",
            "unsupported cache class `QuantizedKVCache`",
            Box::new(|_, m| {
                m.insert("1.1".into(), "QuantizedKVCache".into());
            }),
        ),
        (
            "rotating",
            "keep < max_size",
            Box::new(move |t, _| {
                t.insert("0.3".into(), scalar(8));
            }),
        ),
        (
            "rotating",
            "index 12 is outside the 11 stored positions",
            Box::new(move |t, _| {
                t.insert("1.5".into(), scalar(12));
            }),
        ),
        (
            "batch",
            "do not match left padding",
            Box::new(|t, _| {
                t.insert("0.3".into(), Array::from_slice(&[3i32, 1], &[2]).unwrap());
            }),
        ),
        (
            "batch",
            "3 rows of left padding for 2 rows of keys",
            Box::new(|t, _| {
                t.insert(
                    "1.2".into(),
                    Array::from_slice(&[8i32, 11, 11], &[3]).unwrap(),
                );
                t.insert(
                    "1.3".into(),
                    Array::from_slice(&[3i32, 0, 0], &[3]).unwrap(),
                );
            }),
        ),
    ];
    for (name, expected, change) in cases {
        let err = load_error_of_changed(name, dir, change);
        assert!(
            err.contains(expected),
            "{name}: {err:?} does not say {expected:?}"
        );
    }
}
