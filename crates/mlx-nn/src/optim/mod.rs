//! Optimizers as pure per-parameter update rules with a tree walker on top.
//!
//! An [`UpdateRule`] (SGD, Adam, AdamW, RMSprop, Lion) turns one parameter,
//! its gradient and its state slots into the new parameter:
//! `rule.update(param, grad, &mut state, lr, step)`. [`Optimizer`] walks a
//! module's (or a [`ParamMap`](crate::ParamMap)'s) trainable parameters,
//! keeps each parameter's slots under the parameter's name, takes the
//! learning rate from a [`Schedule`](crate::schedule::Schedule), and saves
//! and restores its state as safetensors (`<param>.<slot>`, the step in the
//! metadata) for bit-exact resumption.
//!
//! The formulas, the order of operations and the dtypes of every
//! intermediate are those of `mlx.optimizers` (MLX 0.32), so a step gives
//! the same bits as MLX Python on the same inputs. As there, the schedule is
//! read at the step count *before* the update and the step passed to the
//! rule is the count *after* it (1 on the first update).
//!
//! ```no_run
//! use mlx_nn::optim::{AdamW, Optimizer};
//! use mlx_nn::schedule::Schedule;
//! # fn demo(model: &mut mlx_nn::layers::Linear, grads: &mlx_nn::ParamMap) -> mlx_nn::Result<()> {
//! let schedule = Schedule::join(vec![Schedule::linear(0.0, 1e-3, 100), Schedule::cosine_decay(1e-3, 900, 1e-5)], vec![100])?;
//! let mut opt = Optimizer::new(AdamW::new(0.01), schedule);
//! opt.update(model, grads)?;
//! opt.eval_with(model, &[])?; // one evaluation per step: parameters and state together
//! # Ok(()) }
//! ```

mod adam;
mod clip;
mod host_offload;
mod host_timings;
mod lion;
mod optimizer;
mod rmsprop;
mod sgd;
mod state;
mod state_check;
mod state_store;

pub use adam::{Adam, AdamW};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use host_timings::HostUpdateTimings;
pub use lion::Lion;
pub use optimizer::{EVAL_GROUP_BYTES, Optimizer};
pub use rmsprop::RmsProp;
pub use sgd::Sgd;
pub use state::ParamState;
pub use state_check::MAX_STEP;

use mlx_tensor::Array;

use crate::Result;

/// One optimizer's update of a single parameter.
pub trait UpdateRule {
    /// A short name stored with saved state (`"adamw"`), checked on load.
    fn name(&self) -> &'static str;

    /// The state of a parameter before its first update (zeros shaped like
    /// the gradient, as MLX initialises from the gradient tree).
    fn init_state(&self, grad: &Array) -> Result<ParamState>;

    /// The updated parameter. `lr` is the (scheduled) learning rate as an
    /// `f32` scalar; `step` counts updates including this one (1 first).
    fn update(
        &self,
        param: &Array,
        grad: &Array,
        state: &mut ParamState,
        lr: &Array,
        step: u64,
    ) -> Result<Array>;
}
