//! Quantized checkpoints loaded as packed layers and adapters attached as
//! layers (not merged), against mlx-lm's logits
//! (`scripts/fixtures/gen_lora_quant_fixtures.py`), the merged model, the
//! decoder, and the gradients: only the adapter factors get any.

mod lm_support;

mod lora_quant_support;

use lora_quant_support::{dir, reference, tokens};
use std::collections::BTreeSet;

use lm_support::{argmax_rows, load, logits_of, max_abs, max_diff, row, temp_dir};
use mlx_lm::generate::Decoder;
use mlx_lm::loader::{
    AdapterFormat, attach_adapters, attach_lora, attached_adapters, fuse_attached_adapters,
    is_adapter_parameter, load_adapters, load_and_attach_adapters, load_model, merge_adapters,
    save_adapters, set_adapters_training,
};
use mlx_lm::{CheckedTokens, LanguageModel, Model};
use mlx_nn::layers::{LayerSelection, LoraConfig, TargetModules};
use mlx_nn::{ModuleExt, value_and_grad};
use mlx_tensor::{Axes, Dtype};

const BASE: &str = "qwen3_untied";

fn assert_close(got: &[f32], expected: &[f32], what: &str) {
    let diff = max_diff(got, expected);
    assert!(
        diff < 1e-4 * max_abs(expected).max(1.0),
        "{what}: max diff {diff}"
    );
}

/// Logits of `tokens` decoded in chunks of `chunk` through a [`Decoder`].
fn decoded_logits(model: &Model, tokens: &[u32], chunk: usize) -> Vec<f32> {
    let decoder = Decoder::new(model).unwrap();
    let mut cache = model.new_cache();
    let mut out = Vec::new();
    for part in tokens.chunks(chunk) {
        let ids = CheckedTokens::new(&row(part), model.vocab_size()).unwrap();
        out.extend(
            decoder
                .step(&ids, &mut cache)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
        );
    }
    out
}

fn assert_decoding_equals_forward(model: &Model, what: &str) {
    let full = logits_of(model, &tokens());
    let vocab = model.vocab_size() as usize;
    for chunk in [1, 4] {
        let decoded = decoded_logits(model, &tokens(), chunk);
        let diff = max_diff(&decoded, &full);
        assert!(diff <= 1e-4, "{what}, chunks of {chunk}: max diff {diff}");
        assert_eq!(argmax_rows(&decoded, vocab), argmax_rows(&full, vocab));
    }
}

/// The names of the parameters `value_and_grad` differentiates, and the
/// gradients' squared norms by name, for the sum of squared logits.
fn gradients(model: &Model) -> Vec<(String, f32)> {
    let ids = row(&tokens());
    let out = value_and_grad(model, |m| {
        Ok(vec![
            m.forward(&ids, None)?.square()?.sum(Axes::All, false)?,
        ])
    })
    .unwrap();
    out.grads
        .iter()
        .map(|(k, g)| {
            let norm: f32 = g
                .square()
                .unwrap()
                .sum(Axes::All, false)
                .unwrap()
                .item()
                .unwrap();
            (k.clone(), norm)
        })
        .collect()
}

fn adapter_names(model: &Model) -> BTreeSet<String> {
    model
        .parameter_names()
        .into_iter()
        .filter(|n| is_adapter_parameter(n))
        .collect()
}

#[test]
fn quantized_checkpoints_load_packed_and_decode_like_the_forward_pass() {
    // mlx-lm packs a module when its input width (64 here, 128 for
    // `down_proj`) is a multiple of the group size; the others stay dense.
    let modules = [
        ("model.layers.0.self_attn.q_proj", 64),
        ("model.layers.1.mlp.down_proj", 128),
        ("lm_head", 64),
        ("model.embed_tokens", 64),
    ];
    for (name, group) in [
        ("quant_b4_g64", 64),
        ("quant_b8_g32", 32),
        ("quant_b4_g128", 128),
    ] {
        let model = load_model(dir(name), None).unwrap();
        let params = model.parameters();
        for (module, width) in modules {
            let packed = width % group == 0;
            let dtype = if packed { Dtype::U32 } else { Dtype::F32 };
            assert_eq!(
                params[&format!("{module}.weight")].dtype(),
                dtype,
                "{name}: {module}"
            );
            assert_eq!(
                params.contains_key(&format!("{module}.scales")),
                packed,
                "{name}: {module}"
            );
        }
        // Packed parts have no gradient.
        assert!(
            model
                .trainable_parameters()
                .keys()
                .all(|k| !k.ends_with(".scales") && !k.ends_with(".biases")),
            "{name}"
        );
        assert_close(&logits_of(&model, &tokens()), &reference(name), name);
        assert_decoding_equals_forward(&model, name);
    }
}

#[test]
fn attached_adapters_give_mlx_lm_logits_and_the_merged_models() {
    for name in ["mlx_lora_last1", "mlx_lora_qv_all", "peft_lora_last1"] {
        let mut attached = load(BASE, Dtype::F32);
        let adapters = load_and_attach_adapters(&mut attached, dir(name)).unwrap();
        // Attached, not merged: two factors per adapted module.
        assert_eq!(adapter_names(&attached).len(), 2 * adapters.modules.len());
        let expected = reference(name);
        let got = logits_of(&attached, &tokens());
        assert_close(&got, &expected, name);
        assert!(max_diff(&got, &logits_of(&load(BASE, Dtype::F32), &tokens())) > 1e-3);

        let mut merged = load(BASE, Dtype::F32);
        merge_adapters(&mut merged, &adapters).unwrap();
        assert_close(&got, &logits_of(&merged, &tokens()), name);

        assert_decoding_equals_forward(&attached, name);

        let mut fused = attached.clone();
        fuse_attached_adapters(&mut fused).unwrap();
        assert!(adapter_names(&fused).is_empty(), "{name}");
        assert_eq!(
            fused.parameter_names(),
            load(BASE, Dtype::F32).parameter_names(),
            "{name}: fused names are the base checkpoint's"
        );
        assert_close(&logits_of(&fused, &tokens()), &expected, name);
    }
}

#[test]
fn attached_adapters_in_bf16_stay_close_to_the_merged_model() {
    let (adapters, _) = load_adapters(dir("mlx_lora_qv_all")).unwrap();
    let mut attached = load(BASE, Dtype::BF16);
    attach_adapters(&mut attached, &adapters).unwrap();
    let mut merged = load(BASE, Dtype::F32);
    merge_adapters(&mut merged, &adapters).unwrap();
    let expected = logits_of(&merged, &tokens());
    let diff = max_diff(&logits_of(&attached, &tokens()), &expected);
    assert!(diff < 0.05 * max_abs(&expected).max(1.0), "max diff {diff}");
}

#[test]
fn qlora_over_the_packed_base_gives_mlx_lm_logits_and_adapter_only_gradients() {
    let mut model = load_model(dir("quant_b4_g64"), None).unwrap();
    let adapters = load_and_attach_adapters(&mut model, dir("qlora_b4_g64")).unwrap();
    let params = model.parameters();
    let q = adapters.modules.keys().next().unwrap();
    assert_eq!(params[&format!("{q}.weight")].dtype(), Dtype::U32);
    assert_close(
        &logits_of(&model, &tokens()),
        &reference("qlora_b4_g64"),
        "qlora",
    );
    assert_decoding_equals_forward(&model, "qlora");

    let grads = gradients(&model);
    let names: BTreeSet<String> = grads.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(names, adapter_names(&model));
    // The loaded B factors are not zero: both factors get a gradient.
    for (k, norm) in &grads {
        assert!(norm.is_finite() && *norm > 0.0, "{k}: |grad|² {norm}");
    }
}

#[test]
fn fresh_adapters_change_nothing_and_only_they_get_gradients() {
    let base_model = load(BASE, Dtype::F32);
    let mut dense = base_model.clone();
    let mut quantized = load_model(dir("quant_b4_g64"), None).unwrap();
    let base_quantized = quantized.clone();
    let config = LoraConfig::new(4, 8.0);
    for (model, base, what) in [
        (&mut dense, &base_model, "dense"),
        (&mut quantized, &base_quantized, "4-bit"),
    ] {
        let targets = attach_lora(
            model,
            config,
            TargetModules::AllLinear,
            LayerSelection::All,
            7,
        )
        .unwrap();
        // Seven projections in each of the two blocks; not the LM head.
        assert_eq!(targets.len(), 14, "{what}");
        assert!(targets.iter().all(|t| t != "lm_head"));
        assert_eq!(adapter_names(model).len(), 28, "{what}");
        assert_eq!(
            logits_of(&*model, &tokens()),
            logits_of(base, &tokens()),
            "{what}: B = 0 leaves the logits unchanged"
        );
        let grads = gradients(model);
        let names: BTreeSet<String> = grads.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(names, adapter_names(model), "{what}");
        // With B = 0 only B's gradient is non-zero.
        for (k, norm) in &grads {
            if k.ends_with("lora_B.weight") {
                assert!(*norm > 0.0, "{what} {k}");
            } else {
                assert_eq!(*norm, 0.0, "{what} {k}");
            }
        }
    }
}

#[test]
fn adapters_for_missing_modules_or_of_the_wrong_shape_are_errors_and_change_nothing() {
    let (mut adapters, _) = load_adapters(dir("mlx_lora_qv_all")).unwrap();
    let model = load(BASE, Dtype::F32);
    let (path, factors) = adapters.modules.pop_first().unwrap();

    let mut bad = adapters.clone();
    bad.modules
        .insert("model.layers.0.self_attn.qkv_proj".into(), factors.clone());
    let mut m = model.clone();
    let err = attach_adapters(&mut m, &bad).unwrap_err().to_string();
    assert!(err.contains("qkv_proj"), "{err}");
    assert!(adapter_names(&m).is_empty());

    let mut bad = adapters.clone();
    let mut wrong = factors.clone();
    wrong.a = wrong.b.clone();
    bad.modules.insert(path.clone(), wrong);
    let err = attach_adapters(&mut m, &bad).unwrap_err().to_string();
    assert!(err.contains(&path), "{err}");
    assert!(adapter_names(&m).is_empty());

    attach_adapters(&mut m, &adapters).unwrap();
    let err = attach_adapters(&mut m, &adapters).unwrap_err().to_string();
    assert!(err.contains("already has an adapter"), "{err}");
}

#[test]
fn attached_adapters_save_and_attach_back_in_both_layouts() {
    let mut model = load(BASE, Dtype::F32);
    assert!(attached_adapters(&model).unwrap().is_none());
    load_and_attach_adapters(&mut model, dir("mlx_lora_qv_all")).unwrap();
    let adapters = attached_adapters(&model).unwrap().unwrap();
    assert_eq!(adapters.modules.len(), adapter_names(&model).len() / 2);
    for format in [AdapterFormat::Peft, AdapterFormat::MlxLm] {
        let out_tmp = temp_dir(&format!("attached-{format:?}"));
        let out = out_tmp.path();
        save_adapters(&adapters, out, format, 2).unwrap();
        let mut back = load(BASE, Dtype::F32);
        load_and_attach_adapters(&mut back, out).unwrap();
        assert_close(
            &logits_of(&back, &tokens()),
            &reference("mlx_lora_qv_all"),
            &format!("{format:?}"),
        );
    }
}

#[test]
fn adapter_dropout_acts_in_training_mode_only() {
    let mut model = load(BASE, Dtype::F32);
    let (mut adapters, _) = load_adapters(dir("mlx_lora_qv_all")).unwrap();
    adapters.config.lora_dropout = 0.5;
    attach_adapters(&mut model, &adapters).unwrap();
    let expected = reference("mlx_lora_qv_all");
    // Training mode: half of each adapter's input is dropped (and the rest
    // scaled), so the logits are not mlx-lm's evaluation-mode ones.
    assert!(max_diff(&logits_of(&model, &tokens()), &expected) > 1e-3);
    set_adapters_training(&mut model, false);
    assert_close(&logits_of(&model, &tokens()), &expected, "evaluation mode");
}
