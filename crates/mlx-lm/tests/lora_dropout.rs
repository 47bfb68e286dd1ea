//! Adapter dropout under gradient checkpointing: a block recomputed in the
//! backward pass draws the same dropout masks as its first pass, so the
//! loss and the gradients equal those of the same step without
//! checkpointing (and differ from those without dropout).

mod lm_support;

use lm_support::{load, row};
use mlx_lm::loader::{attach_lora, set_adapters_training};
use mlx_lm::{LanguageModel, Model};
use mlx_nn::layers::{LayerSelection, LoraConfig, TargetModules};
use mlx_nn::{ModuleExt, ParamMap, value_and_grad};
use mlx_tensor::{Axes, Dtype, random};

const TOKENS: [u32; 8] = [1, 17, 245, 999, 3, 500, 42, 7];

/// The tiny untied Qwen3 with adapters (dropout 0.5) on every projection
/// and `B` drawn, so the adapters and their masks matter.
fn adapted() -> Model {
    let mut model = load("qwen3_untied", Dtype::F32);
    let config = LoraConfig {
        lora_dropout: 0.5,
        ..LoraConfig::new(4, 8.0)
    };
    attach_lora(
        &mut model,
        config,
        TargetModules::AllLinear,
        LayerSelection::All,
        3,
    )
    .unwrap();
    let mut values = ParamMap::new();
    for (i, (name, p)) in model.parameters().into_iter().enumerate() {
        if name.ends_with(".lora_B.weight") {
            let key = random::key(50 + i as u64).unwrap();
            let b = random::normal(&p.shape().0, Dtype::F32, 0.0, 0.2, Some(&key)).unwrap();
            values.insert(name, b);
        }
    }
    model.update(&values).unwrap();
    model
}

/// Loss (a fixed projection of the logits) and gradients of one step, the
/// global key sequence seeded first.
fn step(model: &Model, checkpointing: bool) -> (Vec<f32>, ParamMap) {
    let mut m = model.clone();
    m.set_gradient_checkpointing(checkpointing);
    let ids = row(&TOKENS);
    let weights = random::normal(
        &[1, 8, 1000],
        Dtype::F32,
        0.0,
        1.0,
        Some(&random::key(9).unwrap()),
    )
    .unwrap();
    random::seed(123);
    let out = value_and_grad(&m, |m: &Model| {
        Ok(vec![
            m.forward(&ids, None)?
                .multiply(&weights)?
                .sum(Axes::All, false)?,
        ])
    })
    .unwrap();
    (out.loss.to_vec::<f32>().unwrap(), out.grads)
}

fn max_rel_diff(a: &ParamMap, b: &ParamMap) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = 0.0f32;
    for (name, x) in a {
        let (x, y) = (x.to_vec::<f32>().unwrap(), b[name].to_vec::<f32>().unwrap());
        let scale = x.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let diff = x
            .iter()
            .zip(&y)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        worst = worst.max(diff / scale);
    }
    worst
}

#[test]
fn checkpointed_blocks_recompute_the_same_dropout_masks() {
    let model = adapted();
    let (loss_plain, grads_plain) = step(&model, false);
    let (loss_ckpt, grads_ckpt) = step(&model, true);
    assert!(!grads_plain.is_empty());
    assert!(
        (loss_plain[0] - loss_ckpt[0]).abs() <= 1e-5 * loss_plain[0].abs().max(1.0),
        "loss {loss_plain:?} vs {loss_ckpt:?}"
    );
    let diff = max_rel_diff(&grads_plain, &grads_ckpt);
    assert!(diff < 1e-4, "gradients differ by {diff} (relative)");

    // Dropout is on: other masks (another seed) or none give other values.
    let mut eval = model.clone();
    set_adapters_training(&mut eval, false);
    let (loss_eval, grads_eval) = step(&eval, true);
    assert!((loss_eval[0] - loss_plain[0]).abs() > 1e-3);
    assert!(max_rel_diff(&grads_plain, &grads_eval) > 1e-2);
}
