//! One training step of a small MLP: forward, backward and an AdamW update,
//! evaluated inside the timed region.
//!
//! Model `784 → 512 → 512 → 10` (ReLU), batch 64, mean cross-entropy,
//! AdamW (lr 1e-3, weight decay 0.01). Two variants:
//!
//! * `eager`: the loss closure runs op by op;
//! * `compiled_loss`: the forward pass and loss are compiled once with
//!   [`mlx_nn::compile`] and differentiated through.
//!
//! `scripts/compare/nn_step_mlx.py` times the same step in MLX Python (with
//! `mx.compile` off and on) for comparison. Run both in release:
//!
//! ```text
//! cargo bench --bench nn_step
//! python scripts/compare/nn_step_mlx.py
//! ```
//!
//! The step runs on MLX's default device; `NN_STEP_DEVICE=cpu` or `gpu`
//! picks one (the Python script's `--device`).

mod common;

use common::select_device;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mlx_nn::activations::Activation;
use mlx_nn::layers::Mlp;
use mlx_nn::losses::{Reduction, cross_entropy};
use mlx_nn::optim::{AdamW, Optimizer};
use mlx_nn::{VarBuilder, value_and_grad};
use mlx_tensor::{Array, Device, Dtype, random};

const BATCH: i32 = 64;
const DIMS: [i32; 4] = [784, 512, 512, 10];

struct Setup {
    model: Mlp,
    opt: Optimizer<AdamW>,
    x: Array,
    y: Array,
}

fn setup() -> mlx_nn::Result<Setup> {
    let model = Mlp::new(&DIMS, Activation::Relu, &VarBuilder::random(0, Dtype::F32))?;
    let opt = Optimizer::new(AdamW::new(0.01), 1e-3);
    let key = random::key(1)?;
    let x = random::normal(&[BATCH, DIMS[0]], Dtype::F32, 0.0, 1.0, Some(&key))?;
    let y = random::randint(0, i64::from(DIMS[3]), &[BATCH], Dtype::U32, Some(&key))?;
    mlx_tensor::eval(&[&x, &y])?;
    Ok(Setup { model, opt, x, y })
}

fn eager_step(s: &mut Setup) -> mlx_nn::Result<()> {
    let (x, y) = (&s.x, &s.y);
    let out = value_and_grad(&s.model, |m| {
        Ok(vec![cross_entropy(&m.forward(x)?, y, Reduction::Mean)?])
    })?;
    s.opt.update(&mut s.model, &out.grads)?;
    s.opt.eval_with(&s.model, &[&out.loss])
}

fn pick_device() {
    select_device("NN_STEP_DEVICE");
    eprintln!(
        "nn_step on {:?} (MLX {})",
        Device::default_device(),
        mlx_tensor::device::mlx_version()
    );
}

/// With `NN_STEP_BREAKDOWN=1`: median host time of building the gradient
/// graph, building the update, and evaluating, over 300 eager steps.
fn breakdown() {
    let mut s = setup().unwrap_or_else(|e| panic!("setup failed: {e}"));
    let mut times = Vec::new();
    for i in 0..320 {
        let t0 = std::time::Instant::now();
        let (x, y) = (&s.x, &s.y);
        let out = value_and_grad(&s.model, |m| {
            Ok(vec![cross_entropy(&m.forward(x)?, y, Reduction::Mean)?])
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let t1 = std::time::Instant::now();
        s.opt
            .update(&mut s.model, &out.grads)
            .unwrap_or_else(|e| panic!("{e}"));
        let t2 = std::time::Instant::now();
        s.opt
            .eval_with(&s.model, &[&out.loss])
            .unwrap_or_else(|e| panic!("{e}"));
        let t3 = std::time::Instant::now();
        if i >= 20 {
            times.push([t1 - t0, t2 - t1, t3 - t2, t3 - t0].map(|d| d.as_secs_f64() * 1e3));
        }
    }
    let median = |k: usize| {
        let mut v: Vec<f64> = times.iter().map(|t| t[k]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!(
        "breakdown (ms, median): grad-build {:.3} update-build {:.3} eval {:.3} total {:.3}",
        median(0),
        median(1),
        median(2),
        median(3)
    );
}

fn bench_step(c: &mut Criterion) {
    pick_device();
    if std::env::var_os("NN_STEP_BREAKDOWN").is_some() {
        breakdown();
    }
    let mut group = c.benchmark_group("nn_step_mlp_784_512_512_10_b64_adamw");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);

    let mut s = match setup() {
        Ok(s) => s,
        Err(e) => panic!("setup failed: {e}"),
    };
    for _ in 0..5 {
        eager_step(&mut s).unwrap_or_else(|e| panic!("warm-up failed: {e}"));
    }
    group.bench_function("eager", |b| {
        b.iter(|| eager_step(&mut s).unwrap_or_else(|e| panic!("step failed: {e}")))
    });

    let mut s = match setup() {
        Ok(s) => s,
        Err(e) => panic!("setup failed: {e}"),
    };
    let loss = mlx_nn::compile(
        &s.model,
        |m: &Mlp, xs: &[Array]| {
            Ok(vec![cross_entropy(
                &m.forward(&xs[0])?,
                &xs[1],
                Reduction::Mean,
            )?])
        },
        false,
    )
    .unwrap_or_else(|e| panic!("compile failed: {e}"));
    let compiled_step = |s: &mut Setup| -> mlx_nn::Result<()> {
        let inputs = [s.x.clone(), s.y.clone()];
        let out = value_and_grad(&s.model, |m| loss.call(m, &inputs))?;
        s.opt.update(&mut s.model, &out.grads)?;
        s.opt.eval_with(&s.model, &[&out.loss])
    };
    for _ in 0..5 {
        compiled_step(&mut s).unwrap_or_else(|e| panic!("warm-up failed: {e}"));
    }
    group.bench_function("compiled_loss", |b| {
        b.iter(|| compiled_step(&mut s).unwrap_or_else(|e| panic!("step failed: {e}")))
    });
    group.finish();
}

criterion_group!(benches, bench_step);
criterion_main!(benches);
