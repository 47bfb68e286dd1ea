//! Optimizer trajectories, schedules, gradient clipping, losses and
//! activations compared with values computed by MLX Python
//! (`scripts/fixtures/gen_optim_fixtures.py` wrote `tests/fixtures/*.safetensors`).
//!
//! Optimizers, schedules and clipping run the same MLX operations in the
//! same order on the same dtypes as the reference, so they must match bit
//! for bit. Losses and activations are compared with a tight tolerance
//! (MLX Python compiles its activations, which may fuse operations).

mod common;

use common::{Fixture, assert_bits_eq, assert_close};
use mlx_nn::ParamMap;
use mlx_nn::activations;
use mlx_nn::losses::{self, CrossEntropy, Reduction};
use mlx_nn::optim::{Adam, AdamW, Lion, Optimizer, RmsProp, Sgd, UpdateRule};
use mlx_nn::schedule::Schedule;
use serde_json::Value;

const PARAMS: [&str; 2] = ["layer.bias", "layer.weight"];

fn schedule_from(spec: &Value) -> Schedule {
    let f = |k: &str| spec[k].as_f64().unwrap_or_else(|| panic!("{k} in {spec}"));
    let u = |k: &str| spec[k].as_u64().unwrap_or_else(|| panic!("{k} in {spec}"));
    match spec["kind"].as_str().unwrap() {
        "constant" => Schedule::constant(f("value")),
        "linear" => Schedule::linear(f("init"), f("end"), u("steps")),
        "cosine" => Schedule::cosine_decay(f("init"), u("decay_steps"), f("end")),
        "step" => Schedule::step_decay(f("init"), f("decay_rate"), u("step_size")),
        "exponential" => Schedule::exponential_decay(f("init"), f("decay_rate")),
        "join" => Schedule::join(
            spec["schedules"]
                .as_array()
                .unwrap()
                .iter()
                .map(schedule_from)
                .collect(),
            spec["boundaries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap())
                .collect(),
        )
        .unwrap(),
        other => panic!("unknown schedule {other}"),
    }
}

fn betas(args: &Value, default: (f64, f64)) -> (f64, f64) {
    match args.get("betas") {
        Some(b) => (b[0].as_f64().unwrap(), b[1].as_f64().unwrap()),
        None => default,
    }
}

fn num(args: &Value, key: &str, default: f64) -> f64 {
    args.get(key).and_then(Value::as_f64).unwrap_or(default)
}

fn adam_from(args: &Value) -> Adam {
    Adam {
        betas: betas(args, (0.9, 0.999)),
        eps: num(args, "eps", 1e-8),
        bias_correction: args
            .get("bias_correction")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

fn run_case<R: UpdateRule>(fx: &Fixture, case: &Value, rule: R) {
    let name = case["name"].as_str().unwrap();
    let steps = case["steps"].as_u64().unwrap();
    let mut opt = Optimizer::new(rule, schedule_from(&case["lr"]));
    let mut params: ParamMap = PARAMS
        .iter()
        .map(|p| (p.to_string(), fx.get(&format!("{name}/init/{p}"))))
        .collect();
    for t in 1..=steps {
        let grads: ParamMap = PARAMS
            .iter()
            .map(|p| (p.to_string(), fx.get(&format!("{name}/grad/{t}/{p}"))))
            .collect();
        params = opt.apply_gradients(&grads, &params).unwrap();
        for p in PARAMS {
            assert_bits_eq(
                &params[p],
                &fx.get(&format!("{name}/out/{t}/{p}")),
                &format!("{name} step {t} {p}"),
            );
        }
    }
    assert_eq!(opt.step(), steps);
    for (param, state) in opt.state() {
        for (slot, value) in state.iter() {
            assert_bits_eq(
                value,
                &fx.get(&format!("{name}/state/{param}.{slot}")),
                &format!("{name} state {param}.{slot}"),
            );
        }
    }
    let expected_slots = fx
        .tensors
        .keys()
        .filter(|k| k.starts_with(&format!("{name}/state/")))
        .count();
    assert_eq!(
        opt.state_arrays().len(),
        expected_slots,
        "{name}: number of state slots"
    );
}

#[test]
fn optimizers_match_mlx_python_bit_for_bit() {
    let fx = Fixture::load("optim.safetensors");
    let cases = fx.meta["optimizers"].as_array().unwrap().clone();
    assert!(cases.len() >= 10);
    for case in &cases {
        let args = &case["args"];
        match case["class"].as_str().unwrap() {
            "SGD" => run_case(
                &fx,
                case,
                Sgd {
                    momentum: num(args, "momentum", 0.0),
                    weight_decay: num(args, "weight_decay", 0.0),
                    dampening: num(args, "dampening", 0.0),
                    nesterov: args
                        .get("nesterov")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                },
            ),
            "Adam" => run_case(&fx, case, adam_from(args)),
            "AdamW" => run_case(
                &fx,
                case,
                AdamW {
                    adam: adam_from(args),
                    weight_decay: num(args, "weight_decay", 0.01),
                },
            ),
            "RMSprop" => run_case(
                &fx,
                case,
                RmsProp {
                    alpha: num(args, "alpha", 0.99),
                    eps: num(args, "eps", 1e-8),
                },
            ),
            "Lion" => run_case(
                &fx,
                case,
                Lion {
                    betas: betas(args, (0.9, 0.99)),
                    weight_decay: num(args, "weight_decay", 0.0),
                },
            ),
            other => panic!("unknown optimizer {other}"),
        }
    }
}

#[test]
fn schedules_match_mlx_python_bit_for_bit() {
    let fx = Fixture::load("optim.safetensors");
    let steps = fx.meta["schedule_steps"].as_u64().unwrap();
    let specs = fx.meta["schedules"].as_object().unwrap();
    assert!(specs.len() >= 9);
    for (name, spec) in specs {
        let schedule = schedule_from(spec);
        let values: Vec<mlx_tensor::Array> = (0..steps).map(|t| schedule.at(t).unwrap()).collect();
        let refs: Vec<&mlx_tensor::Array> = values.iter().collect();
        let actual = mlx_tensor::stack(&refs, 0).unwrap();
        assert_bits_eq(
            &actual,
            &fx.get(&format!("schedule/{name}")),
            &format!("schedule {name}"),
        );
    }
}

#[test]
fn clip_grad_norm_matches_mlx_python_bit_for_bit() {
    let fx = Fixture::load("optim.safetensors");
    let grads: ParamMap = fx
        .tensors
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("clip/grad/")
                .map(|n| (n.to_string(), v.clone()))
        })
        .collect();
    assert_eq!(grads.len(), 3);
    for max_norm in fx.meta["clip_norms"].as_array().unwrap() {
        let max_norm = max_norm.as_f64().unwrap();
        let (clipped, norm) = mlx_nn::optim::clip_grad_norm(&grads, max_norm).unwrap();
        assert_bits_eq(&norm, &fx.get(&format!("clip/{max_norm:?}/norm")), "norm");
        for (name, g) in &clipped {
            assert_bits_eq(g, &fx.get(&format!("clip/{max_norm:?}/out/{name}")), name);
        }
    }
}

fn reduction(case: &Value) -> Reduction {
    match case.get("reduction").and_then(Value::as_str) {
        Some("none") => Reduction::None,
        Some("sum") => Reduction::Sum,
        Some("mean") => Reduction::Mean,
        _ => Reduction::None,
    }
}

#[test]
fn losses_and_activations_match_mlx_python() {
    let fx = Fixture::load("losses.safetensors");
    let cases = fx.meta["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let input = |k: &str| fx.get(&format!("{name}/{k}"));
        let has = |k: &str| fx.tensors.contains_key(&format!("{name}/{k}"));
        let red = reduction(case);
        let actual = match case["fn"].as_str().unwrap() {
            "cross_entropy" => {
                let settings = CrossEntropy {
                    axis: case.get("axis").and_then(Value::as_i64).unwrap_or(-1) as i32,
                    label_smoothing: case
                        .get("label_smoothing")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0) as f32,
                    ignore_index: None,
                    reduction: red,
                };
                let weights = has("weights").then(|| input("weights"));
                settings
                    .loss(&input("logits"), &input("targets"), weights.as_ref())
                    .unwrap()
            }
            "nll" => losses::nll(&input("inputs"), &input("targets"), -1, red).unwrap(),
            "kl_div" => losses::kl_div(&input("inputs"), &input("targets"), -1, red).unwrap(),
            "mse" => losses::mse(&input("predictions"), &input("targets"), red).unwrap(),
            "bce_logits" => {
                let weights = has("weights").then(|| input("weights"));
                losses::binary_cross_entropy_with_logits(
                    &input("inputs"),
                    &input("targets"),
                    weights.as_ref(),
                    red,
                )
                .unwrap()
            }
            "bce_probs" => {
                losses::binary_cross_entropy(&input("inputs"), &input("targets"), None, red)
                    .unwrap()
            }
            "silu" => activations::silu(&input("x")).unwrap(),
            "gelu" => activations::gelu(&input("x")).unwrap(),
            "gelu_approx" => activations::gelu_approx(&input("x")).unwrap(),
            "relu" => activations::relu(&input("x")).unwrap(),
            "sigmoid" => activations::sigmoid(&input("x")).unwrap(),
            "softmax" => activations::softmax(&input("x"), -1).unwrap(),
            "log_softmax" => activations::log_softmax(&input("x"), -1).unwrap(),
            other => panic!("unknown case function {other}"),
        };
        assert_close(&actual, &input("out"), 2e-6, 1e-6, name);
    }
}
