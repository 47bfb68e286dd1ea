//! Adapters written by Hugging Face PEFT itself
//! (`scripts/fixtures/gen_peft_fixtures.py`, a tiny random Qwen3 built by
//! transformers): attached unmerged and fused, they give PEFT's logits. Our
//! writer saves them again for the script's `--check-saved`, which checks
//! that PEFT loads what we write.

mod lm_support;

use std::path::{Path, PathBuf};

use lm_support::{logits_of, max_abs, max_diff};
use mlx_lm::loader::{
    AdapterFormat, attached_adapters, block_count, fuse_attached_adapters,
    load_and_attach_adapters, load_model, save_adapters, set_adapters_training,
};
use mlx_lm::models::Model;
use mlx_nn::layers::TargetModules;
use mlx_tensor::{Dtype, io};

const CASES: [&str; 3] = ["qv_r4", "every_proj_rslora_last", "all_linear_r2"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft")
}

fn tokens() -> Vec<u32> {
    let text = std::fs::read_to_string(fixtures().join("inputs.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["tokens"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| u32::try_from(t.as_u64().unwrap()).unwrap())
        .collect()
}

fn base() -> Model {
    load_model(fixtures().join("base"), Some(Dtype::F32)).unwrap()
}

fn peft_logits(case: &str) -> Vec<f32> {
    io::load_npy(fixtures().join(case).join("logits.npy"))
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
}

fn assert_peft_logits(got: &[f32], case: &str, what: &str) {
    let want = peft_logits(case);
    let diff = max_diff(got, &want);
    assert!(
        diff < 1e-4 * max_abs(&want).max(1.0),
        "{case}, {what}: max diff {diff} from PEFT's logits"
    );
}

/// The base with `case`'s adapters attached (evaluation mode).
fn adapted(case: &str) -> Model {
    let mut model = base();
    load_and_attach_adapters(&mut model, fixtures().join(case)).unwrap();
    set_adapters_training(&mut model, false);
    model
}

#[test]
fn peft_adapters_attached_or_fused_give_peft_logits() {
    let plain = logits_of(&base(), &tokens());
    for case in CASES {
        // The adapters matter: PEFT's logits are not the base's.
        assert!(max_diff(&plain, &peft_logits(case)) > 1e-2, "{case}");
        let mut model = adapted(case);
        assert_peft_logits(&logits_of(&model, &tokens()), case, "attached");
        fuse_attached_adapters(&mut model).unwrap();
        assert_peft_logits(&logits_of(&model, &tokens()), case, "fused");
    }
}

#[test]
fn peft_settings_and_modules_are_read_as_peft_wrote_them() {
    let expect = [
        ("qv_r4", 4, 2.0, 4),
        // rsLoRA: 16 / sqrt(8); the seven projections of block 1.
        ("every_proj_rslora_last", 8, 16.0 / 8f32.sqrt(), 7),
        // "all-linear": every projection of both blocks, not the LM head.
        ("all_linear_r2", 2, 2.0, 14),
    ];
    for (case, r, scaling, modules) in expect {
        let (adapters, format) = mlx_lm::loader::load_adapters(fixtures().join(case)).unwrap();
        assert_eq!(format, AdapterFormat::Peft, "{case}");
        assert_eq!(adapters.config.r, r, "{case}");
        assert!((adapters.config.scaling() - scaling).abs() < 1e-6, "{case}");
        assert_eq!(adapters.modules.len(), modules, "{case}");
        assert!(
            adapters.modules.keys().all(|m| !m.contains("lm_head")),
            "{case}"
        );
    }
}

/// Where our writer puts the adapters for the script's `--check-saved`.
fn saved_root() -> PathBuf {
    std::env::temp_dir().join("mlx-lm-peft-saved")
}

#[test]
fn adapters_we_save_in_peft_layout_load_back_exactly() {
    for case in CASES {
        let model = adapted(case);
        let adapters = attached_adapters(&model).unwrap().unwrap();
        let dir = saved_root().join(case);
        let _ = std::fs::remove_dir_all(&dir);
        save_adapters(&adapters, &dir, AdapterFormat::Peft, block_count(&model)).unwrap();
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(config["peft_type"], "LORA", "{case}");
        assert!(matches!(
            adapters.target_modules,
            TargetModules::Names(ref n) if n.len() == adapters.modules.len()
        ));
        let mut again = base();
        load_and_attach_adapters(&mut again, &dir).unwrap();
        set_adapters_training(&mut again, false);
        assert_eq!(
            logits_of(&again, &tokens()),
            logits_of(&model, &tokens()),
            "{case}: saved and reloaded adapters differ"
        );
    }
}

/// Adapters of our own (rank 3 on `q_proj` and `down_proj`, `B` drawn so
/// they change the output), written for the script's `--check-saved`,
/// which checks PEFT's logits on them against `W + s · B A` computed in
/// torch from the file.
#[test]
fn adapters_we_draw_are_written_in_peft_layout() {
    use mlx_lm::loader::attach_lora;
    use mlx_nn::layers::{LayerSelection, LoraConfig};
    use mlx_nn::{ModuleExt, ParamMap};

    let mut model = base();
    let config = LoraConfig {
        use_rslora: true,
        ..LoraConfig::new(3, 6.0)
    };
    let targets = TargetModules::Names(vec!["q_proj".into(), "down_proj".into()]);
    attach_lora(&mut model, config, targets, LayerSelection::All, 9).unwrap();
    let mut values = ParamMap::new();
    for (i, (name, p)) in model.parameters().into_iter().enumerate() {
        if name.ends_with(".lora_B.weight") {
            let key = mlx_tensor::random::key(40 + i as u64).unwrap();
            let b =
                mlx_tensor::random::normal(&p.shape().0, Dtype::F32, 0.0, 0.2, Some(&key)).unwrap();
            values.insert(name, b);
        }
    }
    model.update(&values).unwrap();
    set_adapters_training(&mut model, false);
    let adapted = logits_of(&model, &tokens());
    assert!(max_diff(&adapted, &logits_of(&base(), &tokens())) > 1e-2);
    let adapters = attached_adapters(&model).unwrap().unwrap();
    assert_eq!(adapters.modules.len(), 4);
    let dir = saved_root().join("ours_fresh");
    let _ = std::fs::remove_dir_all(&dir);
    save_adapters(&adapters, &dir, AdapterFormat::Peft, block_count(&model)).unwrap();
    let mut again = base();
    load_and_attach_adapters(&mut again, &dir).unwrap();
    set_adapters_training(&mut again, false);
    assert_eq!(logits_of(&again, &tokens()), adapted);
}
