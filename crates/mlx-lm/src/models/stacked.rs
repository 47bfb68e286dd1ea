//! Projections that share an input, computed as one matrix product (and
//! single projections with their transposed weight kept).
//!
//! Decoding a few rows at a time is bound by the number of kernels per
//! step, not by bytes: the query, key and value projections (and the gate
//! and up projections of a SwiGLU block) read the same input, so stacking
//! their weights turns three (two) matrix-vector products into one. The
//! parameters stay separate (Hugging Face names, gradients and optimiser
//! state are untouched); the stacked copy is built on first use and rebuilt
//! whenever any source array changes (after an optimiser update, a cast or a
//! load). [`StackedLinear::pack`] avoids holding the weights twice: it moves
//! the layers' weights into one stacked buffer and makes each layer's
//! parameter a view of its rows.

use std::cell::RefCell;

use mlx_nn::layers::Linear;
use mlx_tensor::{Array, concatenate, eval, fast};

use crate::Result;

/// The stacked weight (and bias) and the arrays it was built from.
///
/// Holding the sources keeps their identities from being reused by newer
/// arrays, so an identity match always means the same values.
#[derive(Debug, Clone)]
struct Stacked {
    sources: Vec<Array>,
    /// `[Σ out_i, in]`, the layers' weights one after the other.
    weight: Array,
    /// Its transposed view, kept so that a product does not add a node.
    weight_t: Array,
    bias: Option<Array>,
    /// Built by [`StackedLinear::pack`]: the sources are views of it, so
    /// it costs no memory of its own while they are the parameters.
    packed: bool,
}

/// Several [`Linear`] layers over one input applied as one product.
#[derive(Debug, Clone, Default)]
pub(crate) struct StackedLinear {
    cached: RefCell<Option<Stacked>>,
}

impl StackedLinear {
    /// `[..., Σ out_i]`: the outputs of `layers` side by side along the
    /// last axis. All layers must agree on having a bias.
    pub(crate) fn forward(&self, layers: &[&Linear], x: &Array) -> Result<Array> {
        if mixed_bias(layers.iter().copied()) {
            let outs = layers
                .iter()
                .map(|l| l.forward(x))
                .collect::<mlx_nn::Result<Vec<_>>>()?;
            let refs: Vec<&Array> = outs.iter().collect();
            return Ok(concatenate(&refs, -1)?);
        }
        let (weight, weight_t, bias) = self.stacked(layers)?;
        Ok(match bias {
            Some(b) => b.addmm(x, &weight_t, 1.0, 1.0)?,
            // A decoding step's few rows: one pass over the weight on a GPU.
            None => fast::few_rows_linear(x, &weight)?,
        })
    }

    /// Drops the stacked copy (and the references to its sources), unless
    /// it is the packed buffer that `layers`' parameters are views of.
    pub(crate) fn release(&self, layers: &[&Linear]) {
        if !self.is_packed(layers) {
            self.cached.borrow_mut().take();
        }
    }

    /// Whether the cached buffer is a packed one whose views are `layers`'
    /// current parameters.
    fn is_packed(&self, layers: &[&Linear]) -> bool {
        self.cached
            .borrow()
            .as_ref()
            .is_some_and(|s| s.packed && same_arrays(&s.sources, &sources_of(layers)))
    }

    /// Stores the weights (and biases) of `layers` in one buffer each and
    /// replaces every layer's parameter by a view of its rows, so the
    /// stacked product reads the parameters themselves: no second copy of
    /// the weights while decoding. The values are unchanged; an update that
    /// replaces a parameter (an optimiser step, a cast, a load) makes the
    /// next cached forward pass stack a copy again, until the next `pack`.
    /// Layers that disagree on having a bias, a single layer, and layers
    /// already packed are left as they are.
    pub(crate) fn pack(&self, layers: &mut [&mut Linear]) -> Result<()> {
        let refs: Vec<&Linear> = layers.iter().map(|l| &**l).collect();
        if refs.len() < 2 || mixed_bias(refs.iter().copied()) || self.is_packed(&refs) {
            return Ok(());
        }
        // An earlier buffer (or copy) is not needed to build the new one.
        self.cached.borrow_mut().take();
        let rows: Vec<i32> = refs
            .iter()
            .map(|l| l.weight.value.dim(0).unwrap_or(0))
            .collect();
        let (weight, bias) = concatenated(&refs)?;
        let mut outputs = vec![&weight];
        outputs.extend(bias.as_ref());
        eval(&outputs)?;
        let mut views = Vec::with_capacity(2 * layers.len());
        let mut start = 0;
        for (layer, n) in layers.iter_mut().zip(rows) {
            let view = |stacked: &Array| stacked.slice_axis(0, start, Some(start + n), 1);
            layer.weight.value = view(&weight)?;
            views.push(layer.weight.value.clone());
            if let (Some(b), Some(stacked)) = (layer.bias.as_mut(), bias.as_ref()) {
                b.value = view(stacked)?;
                views.push(b.value.clone());
            }
            start += n;
        }
        // Views of evaluated arrays: no copies, and nothing left to compute.
        eval(&views.iter().collect::<Vec<_>>())?;
        *self.cached.borrow_mut() = Some(Stacked {
            sources: views,
            weight_t: weight.t()?,
            weight,
            bias,
            packed: true,
        });
        Ok(())
    }

    /// The stacked weight, its transposed view and the stacked bias.
    fn stacked(&self, layers: &[&Linear]) -> Result<(Array, Array, Option<Array>)> {
        let sources = sources_of(layers);
        if let Some(s) = self.cached.borrow().as_ref()
            && same_arrays(&s.sources, &sources)
        {
            return Ok((s.weight.clone(), s.weight_t.clone(), s.bias.clone()));
        }
        let (weight, bias) = match layers {
            // One layer: no copy, its own weight (and a transposed view).
            [one] => (
                one.weight.value.clone(),
                one.bias.as_ref().map(|b| b.value.clone()),
            ),
            _ => concatenated(layers)?,
        };
        let weight_t = weight.t()?;
        *self.cached.borrow_mut() = Some(Stacked {
            sources,
            weight: weight.clone(),
            weight_t: weight_t.clone(),
            bias: bias.clone(),
            packed: false,
        });
        Ok((weight, weight_t, bias))
    }
}

/// Whether some of `layers` have a bias and others not.
fn mixed_bias<'a>(layers: impl ExactSizeIterator<Item = &'a Linear>) -> bool {
    let n = layers.len();
    let with_bias = layers.filter(|l| l.bias.is_some()).count();
    with_bias != 0 && with_bias != n
}

/// `layers`' weights stacked along the output axis (`[Σ out_i, in]`), and
/// their biases likewise when every layer has one.
fn concatenated(layers: &[&Linear]) -> Result<(Array, Option<Array>)> {
    let weights: Vec<&Array> = layers.iter().map(|l| &l.weight.value).collect();
    let biases: Option<Vec<&Array>> = layers
        .iter()
        .map(|l| l.bias.as_ref().map(|b| &b.value))
        .collect();
    let bias = match biases {
        Some(b) if !b.is_empty() => Some(concatenate(&b, 0)?),
        _ => None,
    };
    Ok((concatenate(&weights, 0)?, bias))
}

/// The parameters of `layers`: each weight, then its bias.
fn sources_of(layers: &[&Linear]) -> Vec<Array> {
    layers
        .iter()
        .flat_map(|l| {
            std::iter::once(l.weight.value.clone()).chain(l.bias.iter().map(|b| b.value.clone()))
        })
        .collect()
}

/// Whether `a` and `b` are the same arrays (by identity), in order.
fn same_arrays(a: &[Array], b: &[Array]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.id() == y.id())
}
