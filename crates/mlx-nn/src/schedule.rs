//! Learning-rate schedules with the formulas of `mlx.optimizers`' schedules.
//!
//! A schedule maps the optimizer's step count to an `f32` scalar array. The
//! arithmetic runs in MLX with the dtypes MLX Python uses (Python-float
//! constants rounded to `f32`, the step converted to `f32`), so the values
//! carry the same bits as the reference.

use std::fmt;
use std::sync::Arc;

use mlx_tensor::{Array, Dtype};

use crate::{Error, Result};

type CustomFn = dyn Fn(u64) -> Result<Array> + Send + Sync;

/// A learning-rate schedule.
#[derive(Clone)]
pub enum Schedule {
    /// The same value at every step.
    Constant(f64),
    /// From `init` to `end` linearly over `steps` steps, then `end`:
    /// `min(t, steps) · (end - init) / steps + init`. A warm-up when
    /// `init = 0`, a linear decay when `end < init`.
    Linear {
        /// Value at step 0.
        init: f64,
        /// Value from step `steps` on.
        end: f64,
        /// Length of the ramp (≥ 1).
        steps: u64,
    },
    /// `end + (init - end) · (1 + cos(π · min(t, decay_steps) / decay_steps)) / 2`.
    Cosine {
        /// Value at step 0.
        init: f64,
        /// Steps to decay over (≥ 1); constant afterwards.
        decay_steps: u64,
        /// Final value.
        end: f64,
    },
    /// `init · decay_rate^⌊t / step_size⌋`.
    Step {
        /// Value at step 0.
        init: f64,
        /// Factor applied every `step_size` steps.
        decay_rate: f64,
        /// Steps between decays (≥ 1).
        step_size: u64,
    },
    /// `init · decay_rate^t`.
    Exponential {
        /// Value at step 0.
        init: f64,
        /// Factor per step.
        decay_rate: f64,
    },
    /// Schedule `i + 1` takes over at `boundaries[i]` and sees the steps
    /// since that boundary.
    Join {
        /// The schedules (one more than the boundaries).
        schedules: Vec<Schedule>,
        /// The steps at which the next schedule starts.
        boundaries: Vec<u64>,
    },
    /// Any function of the step returning an `f32` scalar.
    Custom(Arc<CustomFn>),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant(v) => write!(f, "Constant({v})"),
            Schedule::Linear { init, end, steps } => {
                write!(f, "Linear({init} → {end} over {steps})")
            }
            Schedule::Cosine {
                init,
                decay_steps,
                end,
            } => write!(f, "Cosine({init} → {end} over {decay_steps})"),
            Schedule::Step {
                init,
                decay_rate,
                step_size,
            } => write!(f, "Step({init} × {decay_rate} every {step_size})"),
            Schedule::Exponential { init, decay_rate } => {
                write!(f, "Exponential({init} × {decay_rate}^t)")
            }
            Schedule::Join {
                schedules,
                boundaries,
            } => write!(f, "Join({schedules:?} at {boundaries:?})"),
            Schedule::Custom(_) => write!(f, "Custom"),
        }
    }
}

impl From<f64> for Schedule {
    fn from(value: f64) -> Self {
        Schedule::Constant(value)
    }
}

impl From<f32> for Schedule {
    fn from(value: f32) -> Self {
        Schedule::Constant(f64::from(value))
    }
}

fn f32_scalar(value: f64) -> Result<Array> {
    Ok(Array::scalar_as(value, Dtype::F32)?)
}

fn positive(what: &str, value: u64) -> Result<()> {
    if value == 0 {
        return Err(Error::Config(format!("{what} must be at least 1")));
    }
    Ok(())
}

impl Schedule {
    /// A constant learning rate.
    pub fn constant(value: f64) -> Self {
        Schedule::Constant(value)
    }

    /// A linear ramp from `init` to `end` over `steps` steps.
    pub fn linear(init: f64, end: f64, steps: u64) -> Self {
        Schedule::Linear { init, end, steps }
    }

    /// A linear warm-up from 0 to `peak` over `steps` steps.
    pub fn warmup(peak: f64, steps: u64) -> Self {
        Schedule::linear(0.0, peak, steps)
    }

    /// A cosine decay from `init` to `end` over `decay_steps` steps.
    pub fn cosine_decay(init: f64, decay_steps: u64, end: f64) -> Self {
        Schedule::Cosine {
            init,
            decay_steps,
            end,
        }
    }

    /// `init` multiplied by `decay_rate` every `step_size` steps.
    pub fn step_decay(init: f64, decay_rate: f64, step_size: u64) -> Self {
        Schedule::Step {
            init,
            decay_rate,
            step_size,
        }
    }

    /// `init` multiplied by `decay_rate` every step.
    pub fn exponential_decay(init: f64, decay_rate: f64) -> Self {
        Schedule::Exponential { init, decay_rate }
    }

    /// Joins schedules at `boundaries` (one fewer than the schedules).
    pub fn join(schedules: Vec<Schedule>, boundaries: Vec<u64>) -> Result<Self> {
        if schedules.is_empty() {
            return Err(Error::Config("join needs at least one schedule".into()));
        }
        if schedules.len() != boundaries.len() + 1 {
            return Err(Error::Config(format!(
                "join got {} boundaries for {} schedules (expected {})",
                boundaries.len(),
                schedules.len(),
                schedules.len() - 1
            )));
        }
        Ok(Schedule::Join {
            schedules,
            boundaries,
        })
    }

    /// Linear warm-up from 0 to `peak` over `warmup_steps`, then cosine
    /// decay to `end` over `decay_steps`.
    pub fn warmup_cosine(peak: f64, warmup_steps: u64, decay_steps: u64, end: f64) -> Result<Self> {
        Schedule::join(
            vec![
                Schedule::warmup(peak, warmup_steps),
                Schedule::cosine_decay(peak, decay_steps, end),
            ],
            vec![warmup_steps],
        )
    }

    /// A schedule from a function of the step.
    pub fn custom(f: impl Fn(u64) -> Result<Array> + Send + Sync + 'static) -> Self {
        Schedule::Custom(Arc::new(f))
    }

    /// The value at `step` as an `f32` scalar array (lazy).
    pub fn at(&self, step: u64) -> Result<Array> {
        match self {
            Schedule::Constant(v) => f32_scalar(*v),
            Schedule::Linear { init, end, steps } => {
                positive("linear schedule steps", *steps)?;
                let t = f32_scalar(step.min(*steps) as f64)?;
                Ok(t.multiply(&f32_scalar((end - init) / *steps as f64)?)?
                    .add(&f32_scalar(*init)?)?)
            }
            Schedule::Cosine {
                init,
                decay_steps,
                end,
            } => {
                positive("cosine decay steps", *decay_steps)?;
                let t = f32_scalar(step.min(*decay_steps) as f64)?;
                let angle = f32_scalar(std::f64::consts::PI / *decay_steps as f64)?.multiply(&t)?;
                let decay = angle.cos()?.add_scalar(1.0)?.mul_scalar(0.5)?;
                Ok(decay.mul_scalar(init - end)?.add_scalar(*end)?)
            }
            Schedule::Step {
                init,
                decay_rate,
                step_size,
            } => {
                positive("step decay step_size", *step_size)?;
                let k = f32_scalar((step / step_size) as f64)?;
                Ok(f32_scalar(*decay_rate)?.power(&k)?.mul_scalar(*init)?)
            }
            Schedule::Exponential { init, decay_rate } => {
                let t = f32_scalar(step as f64)?;
                Ok(f32_scalar(*decay_rate)?.power(&t)?.mul_scalar(*init)?)
            }
            Schedule::Join {
                schedules,
                boundaries,
            } => {
                let (first, rest) = schedules
                    .split_first()
                    .ok_or_else(|| Error::Config("join needs at least one schedule".into()))?;
                let mut out = first.at(step)?;
                for (boundary, schedule) in boundaries.iter().zip(rest) {
                    if step >= *boundary {
                        out = schedule.at(step - boundary)?;
                    }
                }
                Ok(out)
            }
            Schedule::Custom(f) => f(step),
        }
    }

    /// The value at `step` as a number (evaluates).
    pub fn value(&self, step: u64) -> Result<f32> {
        Ok(self.at(step)?.item::<f32>()?)
    }
}
