//! The optimizer and learning-rate schedule a [`GrpoConfig`] asks for.

use mlx_nn::optim::{Adam, AdamW, Optimizer, ParamState, Sgd, UpdateRule};
use mlx_nn::schedule::Schedule;
use mlx_tensor::Array;

use crate::config::{GrpoConfig, LrSchedulerType, Optim};
use crate::{Error, Result};

/// The update rules a config can choose (`optim`).
#[derive(Debug, Clone)]
pub enum ConfiguredRule {
    /// `adamw` (transformers' default).
    AdamW(AdamW),
    /// `adam`.
    Adam(Adam),
    /// `sgd`.
    Sgd(Sgd),
}

impl UpdateRule for ConfiguredRule {
    fn name(&self) -> &'static str {
        match self {
            ConfiguredRule::AdamW(r) => r.name(),
            ConfiguredRule::Adam(r) => r.name(),
            ConfiguredRule::Sgd(r) => r.name(),
        }
    }

    fn init_state(&self, grad: &Array) -> mlx_nn::Result<ParamState> {
        match self {
            ConfiguredRule::AdamW(r) => r.init_state(grad),
            ConfiguredRule::Adam(r) => r.init_state(grad),
            ConfiguredRule::Sgd(r) => r.init_state(grad),
        }
    }

    fn update(
        &self,
        param: &Array,
        grad: &Array,
        state: &mut ParamState,
        lr: &Array,
        step: u64,
    ) -> mlx_nn::Result<Array> {
        match self {
            ConfiguredRule::AdamW(r) => r.update(param, grad, state, lr, step),
            ConfiguredRule::Adam(r) => r.update(param, grad, state, lr, step),
            ConfiguredRule::Sgd(r) => r.update(param, grad, state, lr, step),
        }
    }
}

/// The optimizer of a training run.
pub type TrainerOptimizer = Optimizer<ConfiguredRule>;

/// Builds the optimizer for `total_steps` optimizer steps (its state on the
/// host when `offload_optimizer_state` is set).
pub fn build_optimizer(config: &GrpoConfig, total_steps: usize) -> Result<TrainerOptimizer> {
    let rule = match config.optim {
        Optim::AdamW => {
            let mut r = AdamW::new(config.weight_decay);
            r.adam.betas = (config.adam_beta1, config.adam_beta2);
            r.adam.eps = config.adam_epsilon;
            ConfiguredRule::AdamW(r)
        }
        Optim::Adam => ConfiguredRule::Adam(Adam {
            betas: (config.adam_beta1, config.adam_beta2),
            eps: config.adam_epsilon,
            ..Adam::default()
        }),
        Optim::Sgd => {
            let mut r = Sgd::new(0.0);
            r.weight_decay = config.weight_decay;
            ConfiguredRule::Sgd(r)
        }
    };
    let mut optimizer = Optimizer::new(rule, build_schedule(config, total_steps)?);
    super::MemoryPlan::from_config(config).prepare_optimizer(&mut optimizer)?;
    Ok(optimizer)
}

/// The learning-rate schedule of `lr_scheduler_type` with warm-up, over
/// `total_steps`, with transformers' formulas for the supported types.
pub fn build_schedule(config: &GrpoConfig, total_steps: usize) -> Result<Schedule> {
    let lr = config.learning_rate;
    let total = total_steps.max(1) as u64;
    let warmup = config.warmup_steps_for(total_steps) as u64;
    let decay_steps = total.saturating_sub(warmup).max(1);
    let after = match config.lr_scheduler_type {
        LrSchedulerType::Constant | LrSchedulerType::ConstantWithWarmup => Schedule::constant(lr),
        LrSchedulerType::Linear => Schedule::linear(lr, 0.0, decay_steps),
        LrSchedulerType::Cosine => Schedule::cosine_decay(lr, decay_steps, 0.0),
        other => {
            return Err(Error::InvalidConfigValue {
                key: "lr_scheduler_type".into(),
                value: other.as_str().into(),
                reason: "supported here: constant, constant_with_warmup, linear, cosine".into(),
            });
        }
    };
    if warmup == 0 || config.lr_scheduler_type == LrSchedulerType::Constant {
        return Ok(after);
    }
    // transformers warms up linearly from 0 over `warmup` steps.
    Ok(Schedule::join(
        vec![Schedule::linear(0.0, lr, warmup), after],
        vec![warmup],
    )?)
}
