//! A chain of layers applied in order.

use mlx_tensor::Array;

use crate::Result;
use crate::layers::Forward;
use crate::module::{Module, Visitor, VisitorMut};

/// A layer that can sit in a [`Sequential`]: it has (possibly no) parameters,
/// maps one array to one array, and can be cloned behind a `Box`.
pub trait Layer: Module + Forward + Send {
    /// A boxed copy (the arrays are shared, as with `Array::clone`).
    fn box_clone(&self) -> Box<dyn Layer>;
}

impl<T: Module + Forward + Clone + Send + 'static> Layer for T {
    fn box_clone(&self) -> Box<dyn Layer> {
        Box::new(self.clone())
    }
}

/// Layers applied one after the other, named `layers.{i}` like MLX's
/// `nn.Sequential` (parameter-free layers keep their index).
#[derive(Default)]
pub struct Sequential {
    /// The layers, in order.
    pub layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// An empty chain (the identity).
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }

    /// Appends a layer.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Layer + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Applies every layer in order.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h)?;
        }
        Ok(h)
    }
}

impl Clone for Sequential {
    fn clone(&self) -> Self {
        Sequential {
            layers: self.layers.iter().map(|l| l.box_clone()).collect(),
        }
    }
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sequential({} layers)", self.layers.len())
    }
}

impl Forward for Sequential {
    fn forward(&self, x: &Array) -> Result<Array> {
        Sequential::forward(self, x)
    }
}

impl Module for Sequential {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        for (i, layer) in self.layers.iter().enumerate() {
            v.child(&format!("layers.{i}"), layer.as_ref());
        }
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            v.child(&format!("layers.{i}"), layer.as_mut());
        }
    }
}
