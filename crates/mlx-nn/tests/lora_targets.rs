//! Selecting adapter targets by PEFT's `target_modules` and
//! `layers_to_transform` rules and mlx-lm's `num_layers`.

use mlx_nn::layers::{LayerSelection, TargetCandidate, TargetModules, layer_index, select_targets};

const PROJ: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// A three-block decoder: the seven projections per block are linear, the
/// norms and the embedding are not, `lm_head` is the output layer.
fn model() -> Vec<TargetCandidate> {
    let other = |p: &str| TargetCandidate {
        path: p.into(),
        linear: false,
        output: false,
    };
    let mut out = vec![other("model.embed_tokens")];
    for i in 0..3 {
        for p in PROJ {
            out.push(TargetCandidate::linear(format!("model.layers.{i}.{p}")));
        }
        out.push(other(&format!("model.layers.{i}.input_layernorm")));
        out.push(other(&format!("model.layers.{i}.self_attn.q_norm")));
    }
    out.push(other("model.norm"));
    out.push(TargetCandidate {
        path: "lm_head".into(),
        linear: true,
        output: true,
    });
    out
}

fn names(list: &[&str]) -> TargetModules {
    TargetModules::Names(list.iter().map(|s| s.to_string()).collect())
}

fn select(modules: &TargetModules, layers: &LayerSelection) -> Vec<String> {
    select_targets(&model(), modules, layers, 3).unwrap()
}

#[test]
fn names_match_exactly_or_as_a_dotted_suffix() {
    let got = select(&names(&["q_proj", "mlp.down_proj"]), &LayerSelection::All);
    assert_eq!(
        got,
        [
            "model.layers.0.self_attn.q_proj",
            "model.layers.0.mlp.down_proj",
            "model.layers.1.self_attn.q_proj",
            "model.layers.1.mlp.down_proj",
            "model.layers.2.self_attn.q_proj",
            "model.layers.2.mlp.down_proj",
        ]
    );
    // A suffix must end at a dot: `proj` is not a module name.
    assert!(select_targets(&model(), &names(&["proj"]), &LayerSelection::All, 3).is_err());
    // The exact full path.
    let got = select(
        &names(&["model.layers.1.self_attn.v_proj"]),
        &LayerSelection::All,
    );
    assert_eq!(got, ["model.layers.1.self_attn.v_proj"]);
    // The LM head by name (not excluded when named explicitly).
    assert_eq!(
        select(&names(&["lm_head"]), &LayerSelection::All),
        ["lm_head"]
    );
}

#[test]
fn all_linear_takes_every_projection_but_not_the_lm_head() {
    let got = select(&TargetModules::AllLinear, &LayerSelection::All);
    assert_eq!(got.len(), 3 * PROJ.len());
    assert!(!got.iter().any(|p| p == "lm_head"));
    assert!(
        !got.iter()
            .any(|p| p.contains("norm") || p.contains("embed"))
    );
}

#[test]
fn a_regex_must_match_the_whole_path() {
    let re = TargetModules::Regex(r".*\.(q|v)_proj".into());
    let got = select(&re, &LayerSelection::All);
    assert_eq!(got.len(), 6);
    assert!(
        got.iter()
            .all(|p| p.ends_with("q_proj") || p.ends_with("v_proj"))
    );
    // Not anchored at both ends would also match `q_proj` inside longer
    // names; fullmatch semantics require the whole path.
    let partial = TargetModules::Regex("q_proj".into());
    assert!(select_targets(&model(), &partial, &LayerSelection::All, 3).is_err());
    // PEFT ignores layers_to_transform for a pattern.
    let layer1 = TargetModules::Regex(r"model\.layers\.1\..*_proj".into());
    assert_eq!(select(&layer1, &LayerSelection::Last(1)).len(), PROJ.len());
}

#[test]
fn last_n_and_layer_indices_restrict_the_blocks() {
    let got = select(&TargetModules::AllLinear, &LayerSelection::Last(1));
    assert_eq!(got.len(), PROJ.len());
    assert!(got.iter().all(|p| p.starts_with("model.layers.2.")));
    let got = select(&names(&["o_proj"]), &LayerSelection::Indices(vec![0, 2]));
    assert_eq!(
        got,
        [
            "model.layers.0.self_attn.o_proj",
            "model.layers.2.self_attn.o_proj"
        ]
    );
    // More layers than the model has: all of them.
    assert_eq!(
        select(&TargetModules::AllLinear, &LayerSelection::Last(10)).len(),
        3 * PROJ.len()
    );
    // Modules outside the blocks are not in any selected block.
    assert!(select_targets(&model(), &names(&["lm_head"]), &LayerSelection::Last(1), 3).is_err());
}

#[test]
fn unknown_non_linear_and_invalid_targets_are_errors_naming_them() {
    let err = select_targets(
        &model(),
        &names(&["q_proj", "qkv_proj"]),
        &LayerSelection::All,
        3,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("qkv_proj") && err.contains("matches no module"),
        "{err}"
    );
    let err = select_targets(&model(), &names(&["q_norm"]), &LayerSelection::All, 3)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("q_norm") && err.contains("not a linear layer"),
        "{err}"
    );
    let err = select_targets(
        &model(),
        &TargetModules::Regex(r"model\.(embed_tokens|layers\.0\.mlp\.up_proj)".into()),
        &LayerSelection::All,
        3,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("model.embed_tokens") && err.contains("not a linear"),
        "{err}"
    );
    let err = select_targets(
        &model(),
        &TargetModules::Regex("(".into()),
        &LayerSelection::All,
        3,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a regular expression"), "{err}");
}

#[test]
fn layer_index_is_the_number_after_a_layers_segment() {
    assert_eq!(layer_index("model.layers.12.mlp.up_proj"), Some(12));
    assert_eq!(layer_index("transformer.h.3.attn"), Some(3));
    assert_eq!(layer_index("lm_head"), None);
    assert_eq!(layer_index("model.layers.x.mlp"), None);
}
