//! Qwen3 and Qwen3-MoE against Hugging Face transformers' logits (fixtures
//! from `scripts/fixtures/gen_lm_fixtures.py`), and cached / batched forward passes
//! against the plain forward pass.

mod lm_support;

use lm_support::*;
use mlx_lm::cache::{LayerCache, RotatingKVCache};
use mlx_lm::generate::Decoder;
use mlx_lm::{CheckedTokens, LanguageModel};
use mlx_tensor::{Array, Dtype, concatenate};

fn check_golden(name: &str, dtype: Dtype, which: &str, tolerance: f32) {
    let model = load(name, dtype);
    let tokens = fixture_tokens(name);
    let ours = logits_of(&model, &tokens);
    let reference = reference_logits(name, which);
    let scale = max_abs(&reference);
    let diff = max_diff(&ours, &reference);
    assert!(
        diff <= tolerance * scale,
        "{name} {which}: max |diff| {diff} exceeds {tolerance} x scale {scale}"
    );
    if dtype == Dtype::F32 {
        let vocab = model.vocab_size() as usize;
        assert_eq!(
            argmax_rows(&ours, vocab),
            argmax_rows(&reference, vocab),
            "{name}: argmax differs"
        );
    }
}

#[test]
fn f32_logits_match_transformers() {
    for name in FIXTURES {
        check_golden(name, Dtype::F32, "f32", 1e-4);
    }
}

#[test]
fn bf16_logits_match_transformers() {
    // Not `qwen3_moe_tie`: its two experts differ by ~1e-4, far below bf16's
    // resolution, so in bf16 either of them is a correct routing choice.
    for name in ["qwen3_tied", "qwen3_untied", "qwen3_moe"] {
        check_golden(name, Dtype::BF16, "bf16", 2e-2);
    }
}

#[test]
fn moe_routing_matches_on_a_close_tie() {
    let gap = fixture_inputs("qwen3_moe_tie")["min_relative_router_gap"]
        .as_f64()
        .unwrap();
    assert!(
        gap < 1e-3,
        "the fixture should hold a close tie, its smallest gap is {gap}"
    );
    check_golden("qwen3_moe_tie", Dtype::F32, "f32", 1e-4);
}

#[test]
fn router_aux_loss_matches_transformers() {
    for name in ["qwen3_moe", "qwen3_moe_tie"] {
        let model = load(name, Dtype::F32);
        let tokens = fixture_tokens(name);
        let (_, aux) = model
            .forward_hidden_with_aux(&row(&tokens), None, None)
            .unwrap();
        let ours: f32 = aux.expect("MoE models have an aux loss").item().unwrap();
        let reference = fixture_inputs(name)["aux_loss"].as_f64().unwrap() as f32;
        assert!(
            (ours - reference).abs() <= 1e-5 * reference.abs().max(1.0),
            "{name}: {ours} vs {reference}"
        );
    }
    let dense = load("qwen3_tied", Dtype::F32);
    assert!(
        dense
            .forward_hidden_with_aux(&row(&[1, 2, 3]), None, None)
            .unwrap()
            .1
            .is_none()
    );
    assert_eq!(dense.aux_loss_coef(), 0.0);
}

/// Logits of every position, fed through the cache in the given chunk sizes.
fn cached_logits(
    model: &impl LanguageModel,
    tokens: &[u32],
    chunks: &[usize],
    mut cache: Vec<LayerCache>,
) -> Vec<f32> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut sizes = chunks.iter().copied().chain(std::iter::repeat(1));
    while start < tokens.len() {
        let n = sizes.next().unwrap_or(1).min(tokens.len() - start);
        let logits = model
            .forward(&row(&tokens[start..start + n]), Some(&mut cache))
            .unwrap();
        out.extend(logits.to_vec::<f32>().unwrap());
        start += n;
    }
    out
}

/// [`cached_logits`] through the generation's [`Decoder`] (its stacked
/// products and fused kernels) instead of the model's forward pass.
fn decoded_logits(
    model: &impl LanguageModel,
    tokens: &[u32],
    chunks: &[usize],
    mut cache: Vec<LayerCache>,
) -> Vec<f32> {
    let decoder = Decoder::new(model).unwrap();
    let mut out = Vec::new();
    let mut start = 0;
    let mut sizes = chunks.iter().copied().chain(std::iter::repeat(1));
    while start < tokens.len() {
        let n = sizes.next().unwrap_or(1).min(tokens.len() - start);
        let ids = CheckedTokens::new(&row(&tokens[start..start + n]), model.vocab_size()).unwrap();
        let logits = decoder.step(&ids, &mut cache).unwrap();
        out.extend(logits.to_vec::<f32>().unwrap());
        start += n;
    }
    out
}

#[test]
fn decoder_equals_full_forward() {
    for name in ["qwen3_tied", "qwen3_untied", "qwen3_moe"] {
        let model = load(name, Dtype::F32);
        let tokens = fixture_tokens(name);
        let full = logits_of(&model, &tokens);
        let vocab = model.vocab_size() as usize;
        for chunks in [&[5usize, 4][..], &[1][..], &[16][..]] {
            let decoded = decoded_logits(&model, &tokens, chunks, model.new_cache());
            let diff = max_diff(&decoded, &full);
            assert!(diff <= 1e-4, "{name} chunks {chunks:?}: max |diff| {diff}");
            assert_eq!(
                argmax_rows(&decoded, vocab),
                argmax_rows(&full, vocab),
                "{name} chunks {chunks:?}"
            );
        }
    }
}

#[test]
fn cached_decoding_equals_full_forward() {
    for name in ["qwen3_tied", "qwen3_moe"] {
        let model = load(name, Dtype::F32);
        let tokens = fixture_tokens(name);
        let full = logits_of(&model, &tokens);
        let vocab = model.vocab_size() as usize;
        for chunks in [&[5usize, 4][..], &[1][..], &[16][..]] {
            let cached = cached_logits(&model, &tokens, chunks, model.new_cache());
            let diff = max_diff(&cached, &full);
            assert!(diff <= 1e-4, "{name} chunks {chunks:?}: max |diff| {diff}");
            assert_eq!(
                argmax_rows(&cached, vocab),
                argmax_rows(&full, vocab),
                "{name} chunks {chunks:?}"
            );
        }
    }
}

#[test]
fn rotating_cache_equals_full_forward_within_its_window() {
    let model = load("qwen3_untied", Dtype::F32);
    let tokens = fixture_tokens("qwen3_untied");
    let full = logits_of(&model, &tokens);
    let caches = (0..model.num_layers())
        .map(|_| LayerCache::Rotating(RotatingKVCache::new(32, 4).unwrap()))
        .collect();
    let cached = cached_logits(&model, &tokens, &[6], caches);
    assert!(max_diff(&cached, &full) <= 1e-4);
}

/// Rows of different lengths, left-padded with `pad`.
fn padded(rows: &[&[u32]], pad: u32) -> (Array, Vec<i32>) {
    let width = rows.iter().map(|r| r.len()).max().unwrap();
    let mut ids = Vec::new();
    let mut padding = Vec::new();
    for r in rows {
        padding.push((width - r.len()) as i32);
        ids.extend(std::iter::repeat_n(pad, width - r.len()));
        ids.extend_from_slice(r);
    }
    (
        Array::from_slice(&ids, &[rows.len() as i32, width as i32]).unwrap(),
        padding,
    )
}

#[test]
fn left_padded_batch_equals_single_sequences() {
    for name in ["qwen3_tied", "qwen3_moe"] {
        let model = load(name, Dtype::F32);
        let tokens = fixture_tokens(name);
        let rows: [&[u32]; 3] = [&tokens[..9], &tokens[3..6], &tokens[..12]];
        let (batch, padding) = padded(&rows, 0);
        let hidden = model.forward_hidden_padded(&batch, &padding).unwrap();
        let logits = model.logits_from_hidden(&hidden).unwrap();
        let width = batch.dim(1).unwrap();
        for (i, r) in rows.iter().enumerate() {
            let single = logits_of(&model, r);
            let mine = logits
                .slice_axis(0, i as i32, Some(i as i32 + 1), 1)
                .unwrap()
                .slice_axis(1, padding[i], Some(width), 1)
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            let diff = max_diff(&mine, &single);
            assert!(diff <= 1e-4, "{name} row {i}: max |diff| {diff}");
        }
        assert!(
            logits
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .all(|v| v.is_finite()),
            "{name}: padding made NaNs"
        );
    }
}

#[test]
fn batch_cache_decoding_equals_single_sequences() {
    let model = load("qwen3_moe", Dtype::F32);
    let tokens = fixture_tokens("qwen3_moe");
    let prompts: [&[u32]; 3] = [&tokens[..7], &tokens[2..5], &tokens[..2]];
    let continuation: [[u32; 4]; 3] = [[11, 12, 13, 14], [21, 22, 23, 24], [31, 32, 33, 34]];
    let (batch, padding) = padded(&prompts, 0);
    let mut cache = model.new_batch_cache(&padding).unwrap();
    let prefill = model.forward(&batch, Some(&mut cache)).unwrap();
    let mut steps = vec![prefill.slice_axis(1, -1, None, 1).unwrap()];
    for t in 0..4 {
        let ids: Vec<u32> = continuation.iter().map(|c| c[t]).collect();
        let step = model
            .forward(&Array::from_slice(&ids, &[3, 1]).unwrap(), Some(&mut cache))
            .unwrap();
        steps.push(step);
    }
    let refs: Vec<&Array> = steps.iter().collect();
    let batched = concatenate(&refs, 1).unwrap();
    let vocab = model.vocab_size() as usize;
    for (i, prompt) in prompts.iter().enumerate() {
        let full: Vec<u32> = prompt.iter().copied().chain(continuation[i]).collect();
        let single = logits_of(&model, &full);
        let want = &single[(prompt.len() - 1) * vocab..];
        let got = batched
            .slice_axis(0, i as i32, Some(i as i32 + 1), 1)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let diff = max_diff(&got, want);
        assert!(diff <= 1e-4, "row {i}: max |diff| {diff}");
        assert_eq!(
            argmax_rows(&got, vocab),
            argmax_rows(want, vocab),
            "row {i}"
        );
    }
}

#[test]
fn batch_cache_rows_can_leave_and_join() {
    let model = load("qwen3_tied", Dtype::F32);
    let tokens = fixture_tokens("qwen3_tied");
    let (batch, padding) = padded(&[&tokens[..6], &tokens[..3]], 0);
    let mut cache = model.new_batch_cache(&padding).unwrap();
    model.forward(&batch, Some(&mut cache)).unwrap();
    // Keep only the short row: its padding columns are dropped.
    for c in &mut cache {
        let LayerCache::Batch(b) = c else {
            panic!("batch cache expected")
        };
        b.filter(&[1]).unwrap();
        assert_eq!(b.left_padding(), &[0]);
        assert_eq!(b.offset(), 3);
    }
    let next = model
        .forward(&row(&[77]), Some(&mut cache))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let mut full: Vec<u32> = tokens[..3].to_vec();
    full.push(77);
    let single = logits_of(&model, &full);
    let vocab = model.vocab_size() as usize;
    assert!(max_diff(&next, &single[3 * vocab..]) <= 1e-4);
}

#[test]
fn cache_misuse_is_an_error() {
    let model = load("qwen3_tied", Dtype::F32);
    let mut short: Vec<LayerCache> = model.new_cache().into_iter().take(1).collect();
    let err = model
        .forward(&row(&[1, 2]), Some(&mut short))
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer caches"), "{err}");
    let err = model
        .forward(&Array::from_slice(&[1u32, 2], &[2]).unwrap(), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[batch, length]"), "{err}");
}

#[test]
fn random_models_are_reproducible_and_have_non_unit_norms() {
    use mlx_lm::loader::{random_model, tiny_qwen3_moe_config};
    use mlx_nn::ModuleExt;
    let config = tiny_qwen3_moe_config();
    let a = random_model(&config, 7, Dtype::F32).unwrap();
    let b = random_model(&config, 7, Dtype::F32).unwrap();
    let c = random_model(&config, 8, Dtype::F32).unwrap();
    let logits = |m: &mlx_lm::Model| logits_of(m, &[1, 2, 3, 4]);
    assert_eq!(logits(&a), logits(&b));
    assert_ne!(logits(&a), logits(&c));
    let norm = a.parameters()["model.norm.weight"].to_vec::<f32>().unwrap();
    assert!(
        norm.iter().all(|&w| (0.5..1.5).contains(&w))
            && norm.iter().any(|&w| (w - 1.0).abs() > 0.05)
    );
    let bf16 = random_model(&config, 7, Dtype::BF16).unwrap();
    assert_eq!(bf16.dtype(), Dtype::BF16);
    assert_eq!(
        bf16.forward(&row(&[1, 2]), None).unwrap().dtype(),
        Dtype::BF16
    );
}

#[test]
fn moe_sorted_and_unsorted_expert_paths_agree() {
    // 40 tokens x top-2 = 80 token-expert pairs: the full pass sorts tokens by
    // expert; decoding one token at a time (2 pairs) does not.
    let model = load("qwen3_moe", Dtype::F32);
    let base = fixture_tokens("qwen3_moe");
    let tokens: Vec<u32> = (0..40)
        .map(|i| (base[i % base.len()] + i as u32) % 1000)
        .collect();
    let full = logits_of(&model, &tokens);
    let stepwise = cached_logits(&model, &tokens, &[1], model.new_cache());
    let diff = max_diff(&full, &stepwise);
    assert!(diff <= 1e-4, "max |diff| {diff}");
}

#[test]
fn prompt_cache_files_resume_decoding() {
    use mlx_lm::cache::{load_prompt_cache, save_prompt_cache};
    let model = load("qwen3_moe", Dtype::F32);
    let tokens = fixture_tokens("qwen3_moe");
    let full = logits_of(&model, &tokens);
    let mut cache = model.new_cache();
    model
        .forward(&row(&tokens[..10]), Some(&mut cache))
        .unwrap();
    let tmp = temp_dir("prompt-cache");
    let dir = tmp.path();
    let path = dir.join("prompt.safetensors");
    save_prompt_cache(&path, &cache, &std::collections::HashMap::new()).unwrap();
    let (mut restored, _) = load_prompt_cache(&path).unwrap();
    assert_eq!(restored.len(), model.num_layers());
    let vocab = model.vocab_size() as usize;
    let rest = cached_logits(&model, &tokens[10..], &[1], std::mem::take(&mut restored));
    assert!(max_diff(&rest, &full[10 * vocab..]) <= 1e-4);
}

#[test]
fn stacked_decoding_weights_follow_parameter_updates() {
    use mlx_nn::ModuleExt;
    let mut model = load("qwen3_untied", Dtype::F32);
    let tokens = fixture_tokens("qwen3_untied");
    // Decode once so the stacked projection weights exist.
    let _ = decoded_logits(&model, &tokens, &[4], model.new_cache());
    // Change one projection of every kind; the next cached pass must see it.
    let mut changed = std::collections::HashMap::new();
    for name in [
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
    ] {
        let w = model.parameters()[name].clone();
        changed.insert(name.to_string(), w.mul_scalar(1.5).unwrap());
    }
    model.update(&changed.into_iter().collect()).unwrap();
    let full = logits_of(&model, &tokens);
    let cached = decoded_logits(&model, &tokens, &[4], model.new_cache());
    let diff = max_diff(&cached, &full);
    assert!(diff <= 1e-4, "max |diff| {diff}");
    // A new decoder (new stacked weights) changes nothing but memory.
    let again = decoded_logits(&model, &tokens, &[4], model.new_cache());
    assert!(max_diff(&again, &full) <= 1e-4);
}
