//! Hostile optimizer state files: a slot of the wrong dtype or shape, an
//! unknown or missing tensor, a step count out of range, a foreign rule.
//! Each is `Error::InvalidOptimizerState` naming the file and the tensor
//! (or metadata entry), and the optimizer keeps the state it had.
//!
//! The files are written by hand (not by `Optimizer::save`), with the
//! layout `Optimizer` documents: tensors `<param>.<slot>`, metadata `step`
//! and `optimizer`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_nn::activations::Activation;
use mlx_nn::layers::Mlp;
use mlx_nn::optim::{Adam, MAX_STEP, Optimizer};
use mlx_nn::{Error, ModuleExt, VarBuilder};
use mlx_tensor::{Array, Dtype, io};
use tempfile::TempDir;

/// An MLP 2 → 3 → 1: parameters `layers.{0,1}.{weight,bias}`.
fn model() -> Mlp {
    Mlp::new(
        &[2, 3, 1],
        Activation::Relu,
        &VarBuilder::random(3, Dtype::F32),
    )
    .unwrap()
}

/// The shapes of the model's parameters, written out independently.
const PARAMS: [(&str, &[i32]); 4] = [
    ("layers.0.weight", &[3, 2]),
    ("layers.0.bias", &[3]),
    ("layers.1.weight", &[1, 3]),
    ("layers.1.bias", &[1]),
];

/// Adam state for `model()`: slots `m` (all 0.25) and `v` (all 0.5).
fn adam_tensors() -> HashMap<String, Array> {
    let mut out = HashMap::new();
    for (param, shape) in PARAMS {
        out.insert(
            format!("{param}.m"),
            Array::full(shape, 0.25, Dtype::F32).unwrap(),
        );
        out.insert(
            format!("{param}.v"),
            Array::full(shape, 0.5, Dtype::F32).unwrap(),
        );
    }
    out
}

fn adam_metadata(step: &str) -> HashMap<String, String> {
    [("step", step), ("optimizer", "adam")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A fresh directory for one test, removed when the guard is dropped.
fn scratch(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("mlx-nn-hostile-{tag}-"))
        .tempdir()
        .unwrap()
}

/// Writes a state file for test `tag`; returns its directory's guard and
/// the file.
fn write_state(
    tag: &str,
    tensors: &HashMap<String, Array>,
    metadata: &HashMap<String, String>,
) -> (TempDir, PathBuf) {
    let dir = scratch(tag);
    let path = dir.path().join("optimizer.safetensors");
    io::save_safetensors(
        &path,
        tensors.iter().map(|(k, v)| (k.as_str(), v)),
        metadata,
    )
    .unwrap();
    (dir, path)
}

/// An optimizer that has state of its own (step 1 on `model()`), to check
/// that a refused file leaves it alone.
fn trained_optimizer() -> Optimizer<Adam> {
    let mut model = model();
    let mut opt = Optimizer::new(Adam::default(), 1e-3);
    let grads = model
        .trainable_parameters()
        .into_iter()
        .map(|(k, v)| (k, v.ones_like().unwrap()))
        .collect();
    opt.update(&mut model, &grads).unwrap();
    opt
}

/// `load_for` (checked against `model()`) refuses `path` naming the file
/// and `tensor`, with a message holding `words`; the optimizer's step and
/// state are unchanged.
#[track_caller]
fn assert_refused_for_model(path: &Path, tensor: &str, words: &[&str]) {
    let mut opt = trained_optimizer();
    let result = opt.load_for(path, &model());
    assert_invalid(result, path, tensor, words);
    assert_unchanged(&opt);
}

/// As [`assert_refused_for_model`], for `load` (without the parameters).
#[track_caller]
fn assert_refused(path: &Path, tensor: &str, words: &[&str]) {
    let mut opt = trained_optimizer();
    assert_invalid(opt.load(path), path, tensor, words);
    assert_unchanged(&opt);
    // Whatever `load` refuses, `load_for` refuses too.
    let mut opt = trained_optimizer();
    assert_invalid(opt.load_for(path, &model()), path, tensor, words);
}

#[track_caller]
fn assert_invalid(result: mlx_nn::Result<()>, path: &Path, tensor: &str, words: &[&str]) {
    match result {
        Err(e @ Error::InvalidOptimizerState { .. }) => {
            let shown = e.to_string();
            let Error::InvalidOptimizerState {
                path: p,
                tensor: t,
                message,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(p.as_deref(), Some(path));
            assert_eq!(t.as_deref(), Some(tensor));
            for w in words {
                assert!(message.contains(w), "`{message}` lacks `{w}`");
            }
            assert!(shown.contains(&path.display().to_string()), "{shown}");
            assert!(shown.contains(&format!("`{tensor}`")), "{shown}");
        }
        other => panic!("expected InvalidOptimizerState, got {other:?}"),
    }
}

/// The optimizer still has the state of [`trained_optimizer`]: step 1 and
/// Adam's first moments `(1 - 0.9) * 1`.
#[track_caller]
fn assert_unchanged(opt: &Optimizer<Adam>) {
    assert_eq!(opt.step(), 1);
    assert_eq!(opt.state().len(), 4);
    let m = opt.state()["layers.0.weight"].get("m").unwrap();
    for x in m.to_vec::<f32>().unwrap() {
        assert!((x - 0.1).abs() < 1e-6, "{x}");
    }
}

// What is valid loads, to the value.

#[test]
fn a_valid_file_loads_exactly_what_it_holds() {
    let (_dir, path) = write_state("valid", &adam_tensors(), &adam_metadata("2"));
    let mut opt = trained_optimizer();
    opt.load_for(&path, &model()).unwrap();
    assert_eq!(opt.step(), 2);
    for (param, shape) in PARAMS {
        let st = &opt.state()[param];
        assert_eq!(st.get("m").unwrap().shape().0, shape);
        let n: i32 = shape.iter().product();
        assert_eq!(
            st.get("v").unwrap().to_vec::<f32>().unwrap(),
            vec![0.5; n as usize]
        );
    }
}

#[test]
fn an_empty_state_at_step_zero_loads() {
    let (_dir, path) = write_state("step-zero", &HashMap::new(), &adam_metadata("0"));
    let mut opt = trained_optimizer();
    opt.load_for(&path, &model()).unwrap();
    assert_eq!((opt.step(), opt.state().len()), (0, 0));
}

#[test]
fn the_largest_step_count_loads() {
    let (_dir, path) = write_state(
        "step-max",
        &adam_tensors(),
        &adam_metadata(&MAX_STEP.to_string()),
    );
    let mut opt = trained_optimizer();
    opt.load_for(&path, &model()).unwrap();
    assert_eq!(opt.step(), MAX_STEP);
}

// Slots that do not fit their parameter.

#[test]
fn a_slot_of_another_float_dtype_is_refused() {
    let mut t = adam_tensors();
    t.insert(
        "layers.0.weight.m".into(),
        Array::full(&[3, 2], 0.25, Dtype::BF16).unwrap(),
    );
    let (_dir, path) = write_state("bf16", &t, &adam_metadata("2"));
    assert_refused_for_model(&path, "layers.0.weight.m", &["bf16", "f32"]);
}

#[test]
fn a_slot_of_an_integer_dtype_is_refused() {
    let mut t = adam_tensors();
    t.insert(
        "layers.1.bias.v".into(),
        Array::full(&[1], 1.0, Dtype::I32).unwrap(),
    );
    let (_dir, path) = write_state("i32", &t, &adam_metadata("2"));
    assert_refused(&path, "layers.1.bias.v", &["i32", "floating-point"]);
}

#[test]
fn a_transposed_slot_is_refused() {
    let mut t = adam_tensors();
    for slot in ["m", "v"] {
        t.insert(
            format!("layers.0.weight.{slot}"),
            Array::full(&[2, 3], 0.25, Dtype::F32).unwrap(),
        );
    }
    let (_dir, path) = write_state("transposed", &t, &adam_metadata("2"));
    assert_refused_for_model(&path, "layers.0.weight.m", &["[2, 3]", "[3, 2]"]);
}

#[test]
fn a_slot_with_more_elements_is_refused() {
    let mut t = adam_tensors();
    for slot in ["m", "v"] {
        t.insert(
            format!("layers.1.bias.{slot}"),
            Array::full(&[4], 0.25, Dtype::F32).unwrap(),
        );
    }
    let (_dir, path) = write_state("longer", &t, &adam_metadata("2"));
    assert_refused_for_model(&path, "layers.1.bias.m", &["[4]", "[1]"]);
}

#[test]
fn slots_of_one_parameter_with_different_shapes_are_refused() {
    let mut t = adam_tensors();
    t.insert(
        "layers.0.bias.v".into(),
        Array::full(&[1, 3], 0.5, Dtype::F32).unwrap(),
    );
    let (_dir, path) = write_state("slot-shapes", &t, &adam_metadata("2"));
    assert_refused(&path, "layers.0.bias.v", &["[1, 3]", "layers.0.bias.m"]);
}

// Tensors that should not be there, or are not.

#[test]
fn an_unknown_slot_is_refused() {
    let mut t = adam_tensors();
    t.insert(
        "layers.0.bias.momentum".into(),
        Array::full(&[3], 0.5, Dtype::F32).unwrap(),
    );
    let (_dir, path) = write_state("unknown-slot", &t, &adam_metadata("2"));
    assert_refused(
        &path,
        "layers.0.bias.momentum",
        &["unknown tensor", "\"m\""],
    );
}

#[test]
fn state_for_an_unknown_parameter_is_refused() {
    let mut t = adam_tensors();
    for slot in ["m", "v"] {
        t.insert(
            format!("layers.2.weight.{slot}"),
            Array::full(&[1, 1], 0.5, Dtype::F32).unwrap(),
        );
    }
    let (_dir, path) = write_state("unknown-param", &t, &adam_metadata("2"));
    assert_refused_for_model(
        &path,
        "layers.2.weight.m",
        &["unknown tensor", "layers.2.weight"],
    );
}

#[test]
fn a_tensor_name_without_a_slot_is_refused() {
    let mut t = adam_tensors();
    t.insert("bias".into(), Array::full(&[3], 0.5, Dtype::F32).unwrap());
    let (_dir, path) = write_state("no-slot", &t, &adam_metadata("2"));
    assert_refused(&path, "bias", &["<param>.<slot>"]);
}

#[test]
fn a_tensor_name_with_an_empty_parameter_is_refused() {
    let mut t = adam_tensors();
    t.insert(".m".into(), Array::full(&[3], 0.5, Dtype::F32).unwrap());
    let (_dir, path) = write_state("empty-param", &t, &adam_metadata("2"));
    assert_refused(&path, ".m", &["unknown tensor"]);
}

#[test]
fn a_missing_slot_is_refused() {
    let mut t = adam_tensors();
    t.remove("layers.1.weight.v");
    let (_dir, path) = write_state("missing-slot", &t, &adam_metadata("2"));
    assert_refused(&path, "layers.1.weight.v", &["missing"]);
}

#[test]
fn a_parameter_without_state_after_the_first_step_is_refused() {
    let mut t = adam_tensors();
    t.remove("layers.1.bias.m");
    t.remove("layers.1.bias.v");
    let (_dir, path) = write_state("missing-param", &t, &adam_metadata("2"));
    assert_refused_for_model(&path, "layers.1.bias.m", &["missing", "step 2"]);
}

#[test]
fn an_empty_state_after_the_first_step_is_refused() {
    let (_dir, path) = write_state("empty-step", &HashMap::new(), &adam_metadata("5"));
    assert_refused_for_model(&path, "layers.0.bias.m", &["missing", "step 5"]);
}

// The step count.

#[test]
fn a_negative_step_is_refused() {
    let (_dir, path) = write_state("step-neg", &adam_tensors(), &adam_metadata("-1"));
    assert_refused(&path, "step", &["\"-1\"", "not a step count"]);
}

#[test]
fn a_nan_step_is_refused() {
    let (_dir, path) = write_state("step-nan", &adam_tensors(), &adam_metadata("NaN"));
    assert_refused(&path, "step", &["\"NaN\""]);
}

#[test]
fn a_step_of_ten_to_the_18_is_refused() {
    let (_dir, path) = write_state(
        "step-1e18",
        &adam_tensors(),
        &adam_metadata("1000000000000000000"),
    );
    assert_refused(
        &path,
        "step",
        &["1000000000000000000", &MAX_STEP.to_string()],
    );
}

#[test]
fn a_step_one_past_the_limit_is_refused() {
    let (_dir, path) = write_state(
        "step-over",
        &adam_tensors(),
        &adam_metadata(&(MAX_STEP + 1).to_string()),
    );
    assert_refused(&path, "step", &[&(MAX_STEP + 1).to_string()]);
}

#[test]
fn a_step_beyond_64_bits_is_refused() {
    let (_dir, path) = write_state(
        "step-huge",
        &adam_tensors(),
        &adam_metadata("99999999999999999999999"),
    );
    assert_refused(&path, "step", &["99999999999999999999999"]);
}

#[test]
fn a_fractional_step_is_refused() {
    let (_dir, path) = write_state("step-frac", &adam_tensors(), &adam_metadata("2.5"));
    assert_refused(&path, "step", &["\"2.5\""]);
}

#[test]
fn an_empty_step_is_refused() {
    let (_dir, path) = write_state("step-empty", &adam_tensors(), &adam_metadata(""));
    assert_refused(&path, "step", &["not a step count"]);
}

#[test]
fn a_missing_step_is_refused() {
    let mut meta = adam_metadata("2");
    meta.remove("step");
    let (_dir, path) = write_state("step-missing", &adam_tensors(), &meta);
    assert_refused(&path, "step", &["no such metadata entry"]);
}

// The rule.

#[test]
fn a_missing_rule_name_is_refused() {
    let mut meta = adam_metadata("2");
    meta.remove("optimizer");
    let (_dir, path) = write_state("rule-missing", &adam_tensors(), &meta);
    assert_refused(&path, "optimizer", &["no such metadata entry"]);
}

#[test]
fn another_rules_state_is_refused() {
    let mut meta = adam_metadata("2");
    meta.insert("optimizer".into(), "lion".into());
    let (_dir, path) = write_state("rule-other", &adam_tensors(), &meta);
    assert_refused(&path, "optimizer", &["`lion`", "`adam`"]);
}

// The state on the host is checked the same way.

#[test]
fn a_wrong_dtype_is_refused_with_the_state_on_the_host() {
    let mut t = adam_tensors();
    t.insert(
        "layers.0.bias.v".into(),
        Array::full(&[3], 0.5, Dtype::F16).unwrap(),
    );
    let (_dir, path) = write_state("host", &t, &adam_metadata("2"));
    let mut opt = Optimizer::new(Adam::default(), 1e-3);
    opt.set_state_on_host(true).unwrap();
    assert_invalid(
        opt.load_for(&path, &model()),
        &path,
        "layers.0.bias.v",
        &["f16"],
    );
    assert_eq!(opt.step(), 0);
    assert_eq!(opt.host_state_bytes(), 0);
}

#[test]
fn a_file_that_is_not_safetensors_names_the_file() {
    let dir = scratch("garbage");
    let path = dir.path().join("optimizer.safetensors");
    std::fs::write(&path, b"not a safetensors file at all").unwrap();
    let mut opt = trained_optimizer();
    match opt.load_for(&path, &model()) {
        Err(Error::Tensor(mlx_tensor::Error::File { path: p, .. })) => assert_eq!(p, path),
        other => panic!("expected a file error, got {other:?}"),
    }
    assert_unchanged(&opt);
}
