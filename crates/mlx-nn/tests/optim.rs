//! Optimizers and schedules against closed forms, the tree walker's
//! semantics, and bit-exact resumption from saved state.

mod common;

use common::{array, assert_bits_eq, assert_close, f32s, randn, scalar};
use mlx_nn::layers::{LinearConfig, Mlp};
use mlx_nn::optim::{
    Adam, AdamW, Lion, Optimizer, RmsProp, Sgd, UpdateRule, clip_grad_norm, clip_grad_value,
};
use mlx_nn::schedule::Schedule;
use mlx_nn::{Error, ModuleExt, ParamMap, VarBuilder, value_and_grad};
use mlx_tensor::{Array, Axes, Dtype};

fn one(name: &str, a: Array) -> ParamMap {
    [(name.to_string(), a)].into_iter().collect()
}

fn values(a: &Array) -> Vec<f64> {
    f32s(a).iter().map(|&x| f64::from(x)).collect()
}

/// Runs `rule` for the given gradients on one parameter; returns the
/// trajectory of the parameter.
fn trajectory<R: UpdateRule>(rule: R, lr: f64, w0: &[f64], grads: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = w0.len() as i32;
    let mut opt = Optimizer::new(rule, lr);
    let mut params = one("w", array(w0, &[n], Dtype::F32));
    let mut out = Vec::new();
    for g in grads {
        params = opt
            .apply_gradients(&one("w", array(g, &[n], Dtype::F32)), &params)
            .unwrap();
        out.push(values(&params["w"]));
    }
    out
}

fn assert_vec_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * (1.0 + e.abs()),
            "{what}[{i}]: {a} vs {e}"
        );
    }
}

const W0: [f64; 3] = [0.5, -1.0, 2.0];

fn grads() -> Vec<Vec<f64>> {
    vec![
        vec![0.1, -0.2, 0.3],
        vec![-0.4, 0.5, 0.05],
        vec![1.0, 0.0, -2.0],
        vec![0.2, 0.2, 0.2],
    ]
}

#[test]
fn sgd_with_momentum_dampening_and_weight_decay_matches_closed_form() {
    let (lr, mu, tau, wd) = (0.1, 0.9, 0.2, 0.01);
    let got = trajectory(
        Sgd {
            momentum: mu,
            weight_decay: wd,
            dampening: tau,
            nesterov: false,
        },
        lr,
        &W0,
        &grads(),
    );
    let (mut w, mut v) = (W0.to_vec(), vec![0.0; 3]);
    for (t, g) in grads().iter().enumerate() {
        for i in 0..3 {
            let gi = g[i] + wd * w[i];
            v[i] = mu * v[i] + (1.0 - tau) * gi;
            w[i] -= lr * v[i];
        }
        assert_vec_close(&got[t], &w, 1e-6, &format!("sgd step {t}"));
    }
}

#[test]
fn sgd_nesterov_matches_closed_form() {
    let (lr, mu) = (0.05, 0.8);
    let got = trajectory(
        Sgd {
            momentum: mu,
            nesterov: true,
            ..Sgd::default()
        },
        lr,
        &W0,
        &grads(),
    );
    let (mut w, mut v) = (W0.to_vec(), vec![0.0; 3]);
    for (t, g) in grads().iter().enumerate() {
        for i in 0..3 {
            v[i] = mu * v[i] + g[i];
            w[i] -= lr * (g[i] + mu * v[i]);
        }
        assert_vec_close(&got[t], &w, 1e-6, &format!("nesterov step {t}"));
    }
    assert!(
        Sgd {
            momentum: 0.0,
            nesterov: true,
            ..Sgd::default()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn adam_and_adamw_match_closed_form() {
    let (lr, b1, b2, eps, wd) = (0.01, 0.9, 0.999, 1e-8, 0.1);
    for bias_correction in [false, true] {
        let adam = Adam {
            betas: (b1, b2),
            eps,
            bias_correction,
        };
        let got_adam = trajectory(adam, lr, &W0, &grads());
        let got_adamw = trajectory(
            AdamW {
                adam,
                weight_decay: wd,
            },
            lr,
            &W0,
            &grads(),
        );
        for (decay, got) in [(0.0, got_adam), (wd, got_adamw)] {
            let (mut w, mut m, mut v) = (W0.to_vec(), vec![0.0; 3], vec![0.0; 3]);
            for (t, g) in grads().iter().enumerate() {
                let step = (t + 1) as i32;
                for i in 0..3 {
                    w[i] *= 1.0 - lr * decay;
                    m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                    v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                    w[i] -= if bias_correction {
                        let mh = m[i] / (1.0 - b1.powi(step));
                        let vh = v[i] / (1.0 - b2.powi(step));
                        lr * mh / (vh.sqrt() + eps)
                    } else {
                        lr * m[i] / (v[i].sqrt() + eps)
                    };
                }
                assert_vec_close(
                    &got[t],
                    &w,
                    2e-6,
                    &format!("adam(bc={bias_correction}, wd={decay}) step {t}"),
                );
            }
        }
    }
}

#[test]
fn rmsprop_and_lion_match_closed_form() {
    let (lr, alpha, eps) = (0.01, 0.9, 1e-8);
    let got = trajectory(RmsProp { alpha, eps }, lr, &W0, &grads());
    let (mut w, mut v) = (W0.to_vec(), vec![0.0; 3]);
    for (t, g) in grads().iter().enumerate() {
        for i in 0..3 {
            v[i] = alpha * v[i] + (1.0 - alpha) * g[i] * g[i];
            w[i] -= lr * g[i] / (v[i].sqrt() + eps);
        }
        assert_vec_close(&got[t], &w, 1e-5, &format!("rmsprop step {t}"));
    }

    let (lr, b1, b2, wd) = (0.003, 0.9, 0.99, 0.1);
    let got = trajectory(
        Lion {
            betas: (b1, b2),
            weight_decay: wd,
        },
        lr,
        &W0,
        &grads(),
    );
    let (mut w, mut m) = (W0.to_vec(), vec![0.0f64; 3]);
    for (t, g) in grads().iter().enumerate() {
        for i in 0..3 {
            let c: f64 = b1 * m[i] + (1.0 - b1) * g[i];
            m[i] = b2 * m[i] + (1.0 - b2) * g[i];
            let sign = if c > 0.0 {
                1.0
            } else if c < 0.0 {
                -1.0
            } else {
                0.0
            };
            w[i] = w[i] * (1.0 - lr * wd) - lr * sign;
        }
        assert_vec_close(&got[t], &w, 1e-6, &format!("lion step {t}"));
    }
}

#[test]
fn schedules_match_closed_form() {
    let close = |s: &Schedule, t: u64, e: f64| {
        let v = f64::from(s.value(t).unwrap());
        assert!(
            (v - e).abs() <= 1e-6 * (1.0 + e.abs()),
            "{s:?} at {t}: {v} vs {e}"
        );
    };
    let c = Schedule::constant(0.1);
    close(&c, 0, 0.1);
    close(&c, 1000, 0.1);
    let w = Schedule::warmup(1e-3, 10);
    for t in 0..15 {
        close(&w, t, 1e-3 * (t.min(10) as f64) / 10.0);
    }
    let d = Schedule::linear(0.1, 0.01, 9);
    close(&d, 0, 0.1);
    close(&d, 3, 0.07);
    close(&d, 20, 0.01);
    let cos = Schedule::cosine_decay(0.1, 100, 0.01);
    for t in [0u64, 25, 50, 99, 100, 500] {
        let s = t.min(100) as f64;
        close(
            &cos,
            t,
            0.01 + 0.5 * (1.0 + (std::f64::consts::PI * s / 100.0).cos()) * 0.09,
        );
    }
    let st = Schedule::step_decay(0.1, 0.5, 3);
    for t in 0..10 {
        close(&st, t, 0.1 * 0.5f64.powi((t / 3) as i32));
    }
    let e = Schedule::exponential_decay(0.1, 0.9);
    for t in 0..10 {
        close(&e, t, 0.1 * 0.9f64.powi(t as i32));
    }
    let j = Schedule::warmup_cosine(1e-3, 10, 100, 0.0).unwrap();
    close(&j, 5, 5e-4);
    close(&j, 10, 1e-3);
    close(&j, 60, 0.5 * 1e-3);
    close(&j, 200, 0.0);
    assert!(Schedule::join(vec![Schedule::constant(1.0)], vec![3]).is_err());
    assert!(Schedule::cosine_decay(1.0, 0, 0.0).at(0).is_err());
    let custom = Schedule::custom(|t| Ok(Array::scalar(t as f32 * 2.0)?));
    close(&custom, 4, 8.0);
}

#[test]
fn optimizer_reads_the_schedule_before_counting_the_step() {
    // At update k (0-based) the rate is schedule(k): with lr = k and plain
    // SGD on a unit gradient, w drops by 0, 1, 2, …
    let schedule = Schedule::linear(0.0, 100.0, 100);
    let mut opt = Optimizer::new(Sgd::default(), schedule);
    let mut params = one("w", Array::zeros(&[1], Dtype::F32).unwrap());
    let g = one("w", Array::ones(&[1], Dtype::F32).unwrap());
    let mut expected = 0.0;
    for k in 0..5 {
        assert_eq!(
            opt.learning_rate().unwrap().item::<f32>().unwrap(),
            k as f32
        );
        params = opt.apply_gradients(&g, &params).unwrap();
        expected -= k as f64;
        assert_eq!(scalar(&params["w"]), expected);
    }
    assert_eq!(opt.step(), 5);
}

#[test]
fn clipping_by_norm_and_value() {
    let grads: ParamMap = [
        (
            "a".to_string(),
            Array::from_slice(&[3.0f32, 0.0], &[2]).unwrap(),
        ),
        ("b".to_string(), Array::from_slice(&[4.0f32], &[1]).unwrap()),
    ]
    .into_iter()
    .collect();
    let (clipped, norm) = clip_grad_norm(&grads, 1.0).unwrap();
    assert!((scalar(&norm) - 5.0).abs() < 1e-6);
    let total: f64 = clipped
        .values()
        .map(|g| values(g).iter().map(|x| x * x).sum::<f64>())
        .sum();
    assert!((total.sqrt() - 1.0).abs() < 1e-5);
    assert_close(
        &clipped["a"],
        &array(&[0.6, 0.0], &[2], Dtype::F32),
        1e-5,
        1e-6,
        "a",
    );
    let (same, _) = clip_grad_norm(&grads, 10.0).unwrap();
    assert_bits_eq(&same["b"], &grads["b"], "not clipped");
    assert!(clip_grad_norm(&grads, -1.0).is_err());

    let by_value = clip_grad_value(&grads, 3.5).unwrap();
    assert_eq!(f32s(&by_value["a"]), vec![3.0, 0.0]);
    assert_eq!(f32s(&by_value["b"]), vec![3.5]);
}

fn tiny_model(seed: u64) -> Mlp {
    Mlp::new(
        &[4, 8, 3],
        mlx_nn::activations::Activation::Relu,
        &VarBuilder::random(seed, Dtype::F32),
    )
    .unwrap()
}

fn step_loss(model: &Mlp, x: &Array, y: &Array) -> mlx_nn::Result<Vec<Array>> {
    Ok(vec![mlx_nn::losses::cross_entropy(
        &model.forward(x)?,
        y,
        mlx_nn::losses::Reduction::Mean,
    )?])
}

fn train<R: UpdateRule>(model: &mut Mlp, opt: &mut Optimizer<R>, steps: std::ops::Range<u64>) {
    for t in steps {
        let x = randn(&[8, 4], 100 + t, Dtype::F32);
        let y = Array::from_slice(&[0u32, 1, 2, 0, 1, 2, 0, 1], &[8]).unwrap();
        let out = value_and_grad(&*model, |m| step_loss(m, &x, &y)).unwrap();
        opt.update(model, &out.grads).unwrap();
        opt.eval_with(model, &[&out.loss]).unwrap();
    }
}

fn resume_is_bit_exact<R: UpdateRule + Clone>(rule: R, schedule: Schedule) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (n, k) = (9, 4);

    let mut straight = tiny_model(1);
    let mut opt = Optimizer::new(rule.clone(), schedule.clone());
    train(&mut straight, &mut opt, 0..n);

    let mut first = tiny_model(1);
    let mut opt1 = Optimizer::new(rule.clone(), schedule.clone());
    train(&mut first, &mut opt1, 0..k);
    first.save_weights(dir.join("model.safetensors")).unwrap();
    opt1.save(dir.join("optimizer.safetensors")).unwrap();
    drop((first, opt1));

    let mut resumed = tiny_model(2); // different values, overwritten by the load
    resumed
        .load_weights(dir.join("model.safetensors"), true)
        .unwrap();
    let mut opt2 = Optimizer::new(rule, schedule);
    opt2.load(dir.join("optimizer.safetensors")).unwrap();
    assert_eq!(opt2.step(), k);
    train(&mut resumed, &mut opt2, k..n);

    let (a, b) = (straight.parameters(), resumed.parameters());
    for (name, value) in &a {
        assert_bits_eq(&b[name], value, &format!("resumed {name}"));
    }
    let (sa, _) = opt.state_dict().unwrap();
    let (sb, _) = opt2.state_dict().unwrap();
    assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
    for (name, value) in &sa {
        assert_bits_eq(&sb[name], value, &format!("resumed state {name}"));
    }
}

#[test]
fn save_and_load_resume_bit_exactly() {
    resume_is_bit_exact(
        AdamW::new(0.05),
        Schedule::warmup_cosine(1e-2, 3, 10, 1e-4).unwrap(),
    );
    resume_is_bit_exact(
        Sgd {
            momentum: 0.9,
            weight_decay: 1e-3,
            ..Sgd::default()
        },
        Schedule::step_decay(0.1, 0.5, 2),
    );
    resume_is_bit_exact(
        Lion {
            weight_decay: 0.1,
            ..Lion::default()
        },
        Schedule::constant(1e-3),
    );
}

#[test]
fn saved_state_uses_parameter_names_and_records_the_step() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut model = tiny_model(3);
    let mut opt = Optimizer::new(Adam::default(), 1e-3);
    train(&mut model, &mut opt, 0..2);
    let path = dir.join("opt.safetensors");
    opt.save(&path).unwrap();
    let file = mlx_tensor::io::load_safetensors(&path).unwrap();
    let mut keys: Vec<&String> = file.tensors.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "layers.0.bias.m",
            "layers.0.bias.v",
            "layers.0.weight.m",
            "layers.0.weight.v",
            "layers.1.bias.m",
            "layers.1.bias.v",
            "layers.1.weight.m",
            "layers.1.weight.v"
        ]
    );
    assert_eq!(file.metadata["step"], "2");
    assert_eq!(file.metadata["optimizer"], "adam");
    // Another optimizer refuses the file.
    let err = Optimizer::new(Sgd::default(), 0.1).load(&path).unwrap_err();
    assert!(err.to_string().contains("adam"), "{err}");
}

#[test]
fn the_tree_walker_updates_only_trainable_parameters() {
    let vb = VarBuilder::random(5, Dtype::F32);
    let mut model = Mlp::new(&[2, 3, 1], mlx_nn::activations::Activation::Relu, &vb).unwrap();
    model.freeze_path("layers.0");
    let before = model.parameters();
    let x = randn(&[4, 2], 7, Dtype::F32);
    let out = value_and_grad(&model, |m| {
        Ok(vec![m.forward(&x)?.square()?.sum(Axes::All, false)?])
    })
    .unwrap();
    assert_eq!(
        out.grads.keys().collect::<Vec<_>>(),
        ["layers.1.bias", "layers.1.weight"]
    );
    let mut opt = Optimizer::new(Sgd::default(), 0.1);
    // A gradient for a frozen parameter is ignored.
    let mut grads = out.grads.clone();
    grads.insert(
        "layers.0.weight".into(),
        Array::ones(&[3, 2], Dtype::F32).unwrap(),
    );
    opt.update(&mut model, &grads).unwrap();
    let after = model.parameters();
    assert_bits_eq(
        &after["layers.0.weight"],
        &before["layers.0.weight"],
        "frozen weight",
    );
    assert!(f32s(&after["layers.1.weight"]) != f32s(&before["layers.1.weight"]));
    assert_eq!(
        opt.state().keys().collect::<Vec<_>>(),
        ["layers.1.bias", "layers.1.weight"]
    );

    // A gradient naming no parameter is an error and changes nothing.
    let bad = one("layers.7.weight", Array::ones(&[1], Dtype::F32).unwrap());
    assert!(matches!(
        opt.update(&mut model, &bad),
        Err(Error::UnknownParameter { .. })
    ));
    assert_eq!(opt.step(), 1);
    // A mis-shaped gradient too.
    let params = model.trainable_parameters();
    let bad = one("layers.1.bias", Array::ones(&[5], Dtype::F32).unwrap());
    assert!(matches!(
        opt.apply_gradients(&bad, &params),
        Err(Error::ShapeMismatch { .. })
    ));
    let _ = LinearConfig::new(1, 1, false);
}
