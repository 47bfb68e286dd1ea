//! Neural-network building blocks on MLX.
//!
//! * [`Module`] / [`ModuleExt`]: parameter trees with dotted names equal to
//!   Hugging Face checkpoint keys; freeze, update, load and save by name.
//! * [`VarBuilder`]: path-scoped weight sources, so one constructor builds a
//!   module from a checkpoint or from random values.
//! * [`layers`]: Linear, Embedding, RMSNorm, LayerNorm, …
//! * [`value_and_grad`]: gradients of an ordinary Rust closure with respect to
//!   a module's trainable parameters.
//!
//! ```no_run
//! use mlx_nn::{layers::LinearConfig, value_and_grad, ModuleExt, VarBuilder};
//! use mlx_tensor::{Array, Axes, Dtype};
//! # fn main() -> mlx_nn::Result<()> {
//! let vb = VarBuilder::random(0, Dtype::F32);
//! let layer = LinearConfig::new(3, 2, true).init(&vb.pp("proj"))?;
//! assert_eq!(layer.parameter_names(), ["proj.weight", "proj.bias"]);
//! let x = Array::ones(&[4, 3], Dtype::F32)?;
//! let out = value_and_grad(&layer, |m| Ok(vec![m.forward(&x)?.square()?.sum(Axes::All, false)?]))?;
//! assert!(out.grads.contains_key("proj.weight"));
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod autograd;
mod error;
pub mod init;
pub mod layers;
mod module;
mod var_builder;

pub use autograd::{value_and_grad, LossAndGrads};
pub use error::{Error, Result};
pub use init::Init;
pub use module::{LoadReport, Module, ModuleExt, Param, ParamMap, Visitor, VisitorMut};
pub use var_builder::VarBuilder;
