//! Neural-network building blocks on MLX.
//!
//! * [`Module`] / [`ModuleExt`]: parameter trees with dotted names equal to
//!   Hugging Face checkpoint keys; freeze, update, load and save by name.
//! * [`VarBuilder`]: path-scoped weight sources, so one constructor builds a
//!   module from a checkpoint or from random values.
//! * [`layers`]: Linear, Embedding, RMSNorm, LayerNorm, Dropout,
//!   QuantizedLinear, SwiGLU, MLP, Sequential; [`activations`]: SiLU, GELU,
//!   ReLU, sigmoid, softmax, log-softmax.
//! * [`losses`]: cross-entropy, NLL, KL divergence, MSE, binary cross-entropy.
//! * [`value_and_grad`]: gradients of an ordinary Rust closure with respect to
//!   a module's trainable parameters; [`autograd`] also has `vjp`, `jvp` and
//!   `grad` over arrays, [`backward`] manual backward passes, [`transform`]
//!   gradient checkpointing and compilation.
//! * [`distributed`]: gradient averaging over the ranks of a data-parallel job.
//! * [`optim`]: SGD, Adam, AdamW, RMSprop, Lion, gradient clipping;
//!   [`schedule`]: learning-rate schedules.
//!
//! # A training step
//!
//! Build the loss as a closure over the model, take its gradients, let the
//! optimizer update the model, and evaluate the loss, the parameters and the
//! optimizer state together once per step:
//!
//! ```no_run
//! use mlx_nn::{layers::{LinearConfig, Mlp}, activations::Activation, losses, optim, value_and_grad, VarBuilder};
//! use mlx_tensor::{Array, Dtype};
//! # fn main() -> mlx_nn::Result<()> {
//! let vb = VarBuilder::random(0, Dtype::F32);
//! let mut model = Mlp::new(&[4, 16, 3], Activation::Relu, &vb)?;
//! let mut opt = optim::Optimizer::new(optim::AdamW::new(0.01), 1e-2);
//! let x = Array::ones(&[8, 4], Dtype::F32)?;
//! let y = Array::zeros(&[8], Dtype::U32)?;
//! for _ in 0..10 {
//!     let out = value_and_grad(&model, |m| Ok(vec![losses::cross_entropy(&m.forward(&x)?, &y, losses::Reduction::Mean)?]))?;
//!     opt.update(&mut model, &out.grads)?;
//!     opt.eval_with(&model, &[&out.loss])?;
//! }
//! # let _ = LinearConfig::new(1, 1, false);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

// The derive names the crate `mlx_nn`, in here as everywhere else.
extern crate self as mlx_nn;

pub mod activations;
pub mod autograd;
pub mod backward;
pub mod distributed;
mod error;
pub mod init;
pub mod layers;
pub mod losses;
mod module;
pub mod optim;
pub mod schedule;
pub mod transform;
mod var_builder;

pub use autograd::{LossAndGrads, value_and_grad, value_and_grad_with};
pub use error::{Error, Result};
pub use init::Init;
pub use mlx_nn_derive::Module;
pub use module::{LoadReport, Module, ModuleExt, Param, ParamMap, Visitor, VisitorMut};
pub use transform::{CompiledFn, compile, grad_checkpoint, sequential_checkpoint};
pub use var_builder::VarBuilder;
