//! With the optimizer state on the host, MLX holds the parameters but not
//! the state between steps (its own test binary: it reads MLX's
//! process-wide memory counters).

use mlx_nn::layers::Mlp;
use mlx_nn::optim::{AdamW, Optimizer};
use mlx_nn::{ModuleExt, VarBuilder, value_and_grad};
use mlx_tensor::{Array, Axes, Dtype, memory};

fn step(model: &mut Mlp, opt: &mut Optimizer<AdamW>) -> Result<(), Box<dyn std::error::Error>> {
    let x = Array::ones(&[2, 256], Dtype::F32)?;
    let out = value_and_grad(&*model, |m| {
        Ok(vec![m.forward(&x)?.square()?.sum(Axes::All, false)?])
    })?;
    opt.update(model, &out.grads)?;
    opt.eval_with(model, &[&out.loss])?;
    Ok(())
}

#[test]
fn host_state_leaves_only_the_parameters_in_mlx_memory() -> Result<(), Box<dyn std::error::Error>> {
    let new_model = || {
        Mlp::new(
            &[256, 512, 256],
            mlx_nn::activations::Activation::Relu,
            &VarBuilder::random(1, Dtype::F32),
        )
    };
    let param_bytes: usize = new_model()?.parameters().values().map(Array::nbytes).sum();
    let mut active = Vec::new();
    for on_host in [false, true] {
        let mut model = new_model()?;
        model.eval_params()?;
        let mut opt = Optimizer::new(AdamW::new(0.01), 1e-3);
        opt.set_state_on_host(on_host)?;
        step(&mut model, &mut opt)?;
        step(&mut model, &mut opt)?;
        memory::clear_cache();
        active.push(memory::active_memory());
        if on_host {
            // Adam's two moments of every parameter, in host memory.
            assert_eq!(opt.host_state_bytes(), 2 * param_bytes);
        }
        drop((model, opt));
    }
    // The moments (twice the parameters' bytes) are what the device
    // placement holds beyond the host placement (give or take allocator
    // rounding of small buffers).
    let saved = active[0].abs_diff(active[1]);
    assert!(
        active[0] > active[1] && saved.abs_diff(2 * param_bytes) < 16 << 10,
        "active {active:?}, moments {} bytes",
        2 * param_bytes
    );
    Ok(())
}
