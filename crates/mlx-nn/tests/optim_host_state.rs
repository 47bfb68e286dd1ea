//! Optimizer state kept on the host between updates: the same bits as state
//! kept in MLX arrays, for every way of getting there (from the start,
//! switched mid-run, one group or one parameter at a time), and saved and
//! resumed from either placement.

mod common;

use common::{assert_bits_eq, randn};
use mlx_nn::layers::Mlp;
use mlx_nn::optim::{AdamW, Optimizer, Sgd, UpdateRule};
use mlx_nn::schedule::Schedule;
use mlx_nn::{ModuleExt, VarBuilder, value_and_grad};
use mlx_tensor::{Array, Dtype};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn tiny_model(seed: u64) -> Res<Mlp> {
    Ok(Mlp::new(
        &[4, 8, 8, 3],
        mlx_nn::activations::Activation::Relu,
        &VarBuilder::random(seed, Dtype::F32),
    )?)
}

/// One training step on batch `t`; `before` runs first (to switch the
/// placement mid-run).
fn train<R: UpdateRule>(
    model: &mut Mlp,
    opt: &mut Optimizer<R>,
    steps: std::ops::Range<u64>,
    mut before: impl FnMut(u64, &mut Optimizer<R>) -> Res,
) -> Res {
    for t in steps {
        before(t, opt)?;
        let x = randn(&[8, 4], 100 + t, Dtype::F32);
        let y = Array::from_slice(&[0u32, 1, 2, 0, 1, 2, 0, 1], &[8])?;
        let out = value_and_grad(&*model, |m| {
            Ok(vec![mlx_nn::losses::cross_entropy(
                &m.forward(&x)?,
                &y,
                mlx_nn::losses::Reduction::Mean,
            )?])
        })?;
        opt.update(model, &out.grads)?;
        opt.eval_with(model, &[&out.loss])?;
    }
    Ok(())
}

fn assert_same(a: &Mlp, b: &Mlp, what: &str) {
    let (pa, pb) = (a.parameters(), b.parameters());
    for (name, value) in &pa {
        assert_bits_eq(&pb[name], value, &format!("{what}: {name}"));
    }
}

fn adamw() -> (AdamW, Schedule) {
    (
        AdamW::new(0.05),
        Schedule::warmup_cosine(1e-2, 3, 10, 1e-4).unwrap_or_else(|e| panic!("{e}")),
    )
}

fn same_bits_in_every_placement<R: UpdateRule + Clone>(rule: R, schedule: Schedule) -> Res {
    let steps = 0..7;
    let mut device = tiny_model(1)?;
    let mut opt = Optimizer::new(rule.clone(), schedule.clone());
    train(&mut device, &mut opt, steps.clone(), |_, _| Ok(()))?;

    // On the host from the start: in the default groups (every slot moves
    // in its group's flat array), one parameter per group (every slot
    // moves alone) and groups of 200 bytes (weights' slots alone, biases'
    // in the flat array).
    for group_bytes in [None, Some(1), Some(200)] {
        let mut host = tiny_model(1)?;
        let mut opt_h = Optimizer::new(rule.clone(), schedule.clone());
        opt_h.set_state_on_host(true)?;
        if let Some(bytes) = group_bytes {
            opt_h.set_group_bytes(bytes);
        }
        train(&mut host, &mut opt_h, steps.clone(), |_, _| Ok(()))?;
        assert_same(
            &device,
            &host,
            &format!("host state, groups {group_bytes:?}"),
        );
        assert!(opt_h.state().is_empty() && opt_h.state_arrays().is_empty());
        assert_eq!(opt_h.step(), opt.step());
        let expected: usize = opt.state_arrays().iter().map(|a| a.nbytes()).sum();
        assert_eq!(opt_h.host_state_bytes(), expected);
        let (sa, _) = opt.state_dict()?;
        let (sb, _) = opt_h.state_dict()?;
        assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
        for (name, value) in &sa {
            assert_bits_eq(&sb[name], value, &format!("state {name}"));
        }
    }

    // Moved to the host after two steps and back after five.
    let mut switched = tiny_model(1)?;
    let mut opt_s = Optimizer::new(rule, schedule);
    train(&mut switched, &mut opt_s, steps, |t, o| {
        match t {
            2 => o.set_state_on_host(true)?,
            5 => o.set_state_on_host(false)?,
            _ => {}
        }
        Ok(())
    })?;
    assert!(!opt_s.state_on_host() && opt_s.host_state_bytes() == 0);
    assert_same(&device, &switched, "switched placement");
    Ok(())
}

#[test]
fn host_state_gives_the_same_bits_as_device_state() -> Res {
    let (rule, schedule) = adamw();
    same_bits_in_every_placement(rule, schedule)?;
    let mut sgd = Sgd::new(0.9);
    sgd.weight_decay = 0.01;
    same_bits_in_every_placement(sgd, Schedule::constant(0.05))
}

#[test]
fn apply_gradients_works_with_the_state_on_the_host() -> Res {
    let (rule, schedule) = adamw();
    let grads = tiny_model(3)?.parameters();
    let params = tiny_model(1)?.parameters();
    let mut a = Optimizer::new(rule, schedule.clone());
    let mut b = Optimizer::new(rule, schedule);
    b.set_state_on_host(true)?;
    for _ in 0..3 {
        let (ua, ub) = (
            a.apply_gradients(&grads, &params)?,
            b.apply_gradients(&grads, &params)?,
        );
        for (name, value) in &ua {
            assert_bits_eq(&ub[name], value, name);
        }
    }
    assert!(b.state().is_empty());
    Ok(())
}

#[test]
fn saved_host_state_resumes_in_either_placement() -> Res {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let (rule, schedule) = adamw();
    let (n, k) = (8, 3);
    let mut straight = tiny_model(1)?;
    let mut opt = Optimizer::new(rule, schedule.clone());
    train(&mut straight, &mut opt, 0..n, |_, _| Ok(()))?;

    let mut first = tiny_model(1)?;
    let mut opt1 = Optimizer::new(rule, schedule.clone());
    opt1.set_state_on_host(true)?;
    train(&mut first, &mut opt1, 0..k, |_, _| Ok(()))?;
    first.save_weights(dir.join("model.safetensors"))?;
    opt1.save(dir.join("optimizer.safetensors"))?;
    // A device-placed optimizer writes the same tensors.
    let mut as_device = opt1.clone();
    as_device.set_state_on_host(false)?;
    as_device.save(dir.join("device.safetensors"))?;
    let host_file = mlx_tensor::io::load_safetensors(dir.join("optimizer.safetensors"))?;
    let device_file = mlx_tensor::io::load_safetensors(dir.join("device.safetensors"))?;
    assert_eq!(host_file.metadata, device_file.metadata);
    assert_eq!(host_file.tensors.len(), device_file.tensors.len());
    for (name, a) in &device_file.tensors {
        assert_bits_eq(&host_file.tensors[name], a, name);
    }

    for on_host in [false, true] {
        let mut resumed = tiny_model(2)?;
        resumed.load_weights(dir.join("model.safetensors"), true)?;
        let mut opt2 = Optimizer::new(rule, schedule.clone());
        opt2.set_state_on_host(on_host)?;
        opt2.load(dir.join("optimizer.safetensors"))?;
        assert_eq!(opt2.step(), k);
        assert_eq!(opt2.state().is_empty(), on_host);
        train(&mut resumed, &mut opt2, k..n, |_, _| Ok(()))?;
        assert_same(
            &straight,
            &resumed,
            &format!("resumed, state on host: {on_host}"),
        );
    }
    Ok(())
}

#[test]
fn groups_mixing_dtypes_give_the_same_bits() -> Res {
    // Half of the parameters in bf16: a group's state moves as one flat
    // array per dtype.
    let mixed = || -> Res<Mlp> {
        let mut m = tiny_model(1)?;
        let halves: mlx_nn::ParamMap = m
            .parameters()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, (name, a))| Ok((name, a.as_type(Dtype::BF16)?)))
            .collect::<Res<_>>()?;
        m.update(&halves)?;
        Ok(m)
    };
    let (rule, schedule) = adamw();
    let mut device = mixed()?;
    let mut opt = Optimizer::new(rule, schedule.clone());
    train(&mut device, &mut opt, 0..4, |_, _| Ok(()))?;
    let mut host = mixed()?;
    let mut opt_h = Optimizer::new(rule, schedule);
    opt_h.set_state_on_host(true)?;
    train(&mut host, &mut opt_h, 0..4, |_, _| Ok(()))?;
    assert_same(&device, &host, "mixed dtypes");
    let dtypes: std::collections::BTreeSet<String> = host
        .parameters()
        .values()
        .map(|a| a.dtype().to_string())
        .collect();
    assert_eq!(dtypes.len(), 2, "{dtypes:?}");
    Ok(())
}

#[test]
fn host_updates_report_where_their_time_went() -> Res {
    let (rule, schedule) = adamw();
    let mut model = tiny_model(3)?;
    let mut opt = Optimizer::new(rule, schedule);
    assert!(opt.last_host_update_timings().is_none());
    opt.set_state_on_host(true)?;
    // One parameter a group: the MLP's six weights and biases.
    opt.set_group_bytes(1);
    let started = std::time::Instant::now();
    train(&mut model, &mut opt, 0..1, |_, _| Ok(()))?;
    let wall = started.elapsed();
    let timings = opt
        .last_host_update_timings()
        .expect("an update through the host reports its timings");
    assert_eq!(timings.groups, model.parameters().len());
    assert!(timings.total() <= wall, "{timings:?} within {wall:?}");
    // Every group is restored, queued, waited for and stored.
    for (part, time) in [
        ("restore", timings.restore),
        ("queue", timings.queue),
        ("wait", timings.wait),
        ("store", timings.store),
    ] {
        assert!(time > std::time::Duration::ZERO, "{part}: {timings:?}");
    }
    // Back on the device: the next update reports nothing.
    opt.set_state_on_host(false)?;
    train(&mut model, &mut opt, 1..2, |_, _| Ok(()))?;
    assert!(opt.last_host_update_timings().is_none());
    Ok(())
}
