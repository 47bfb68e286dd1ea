//! The one-input, one-output layer interface.

use mlx_tensor::Array;

use crate::Result;

/// A layer mapping one array to one array (`y = layer(x)`).
///
/// Implemented by the layers of this crate and by the activation types, so
/// they can be chained ([`Sequential`](super::Sequential)) or passed around
/// generically. Layers keep their inherent `forward` methods too.
pub trait Forward {
    /// Applies the layer.
    fn forward(&self, x: &Array) -> Result<Array>;
}

impl<T: Forward + ?Sized> Forward for &T {
    fn forward(&self, x: &Array) -> Result<Array> {
        (**self).forward(x)
    }
}

impl<T: Forward + ?Sized> Forward for Box<T> {
    fn forward(&self, x: &Array) -> Result<Array> {
        (**self).forward(x)
    }
}

macro_rules! forward_via_inherent {
    ($($ty:ty),*) => {
        $(
            impl Forward for $ty {
                fn forward(&self, x: &Array) -> Result<Array> {
                    <$ty>::forward(self, x)
                }
            }
        )*
    };
}

forward_via_inherent!(
    super::Linear,
    super::Embedding,
    super::RmsNorm,
    super::LayerNorm
);
