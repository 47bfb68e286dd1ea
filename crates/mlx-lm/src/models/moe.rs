//! The sparse mixture-of-experts feed-forward block: a softmax router picks
//! the top-k experts per token, whose SwiGLU weights are stacked
//! `[experts, out, in]` and applied with `gather_mm` (or, packed as
//! mlx-lm's quantized checkpoints store them, with `gather_qmm`).

use mlx_nn::layers::{Linear, LinearConfig};
use mlx_nn::{Init, Module, Param, VarBuilder, Visitor, VisitorMut};
use mlx_tensor::{Array, Axes, Device, Dtype, Quantized, gather_mm};

use crate::loader::QuantizationSpec;
use crate::{Error, Result};

/// Token-expert pairs from which the tokens are sorted by expert, so that
/// `gather_mm` reads each expert's weights once.
const SORT_THRESHOLD: usize = 64;

/// Linear layers of all experts: dense, or packed (affine quantization).
#[derive(Debug, Clone)]
pub(crate) enum SwitchLinear {
    /// `weight: [experts, out, in]`.
    Dense(DenseExperts),
    /// `weight: [experts, out, in · bits / 32]` (`u32`), `scales` and
    /// `biases: [experts, out, in / group_size]`, all frozen.
    Quantized(PackedExperts),
}

impl Module for SwitchLinear {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        match self {
            SwitchLinear::Dense(d) => d.visit(v),
            SwitchLinear::Quantized(q) => q.visit(v),
        }
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        match self {
            SwitchLinear::Dense(d) => d.visit_mut(v),
            SwitchLinear::Quantized(q) => q.visit_mut(v),
        }
    }
}

impl SwitchLinear {
    /// Packed when the source holds `scales` for these experts (a quantized
    /// checkpoint), dense otherwise.
    fn new(input: i32, output: i32, experts: i32, vb: &VarBuilder) -> Result<Self> {
        if !vb.is_random() && vb.contains("scales") {
            return Ok(SwitchLinear::Quantized(PackedExperts::new(
                input, output, experts, vb,
            )?));
        }
        Ok(SwitchLinear::Dense(DenseExperts::new(
            input, output, experts, vb,
        )?))
    }

    fn forward(&self, x: &Array, indices: &Array, sorted: bool) -> Result<Array> {
        match self {
            SwitchLinear::Dense(d) => d.forward(x, indices, sorted),
            SwitchLinear::Quantized(q) => q.forward(x, indices, sorted),
        }
    }
}

/// Packed expert weights as mlx-lm's quantized checkpoints store them.
#[derive(Debug, Clone, Module)]
pub(crate) struct PackedExperts {
    weight: Param,
    scales: Param,
    biases: Param,
    #[module(skip)]
    spec: QuantizationSpec,
}

impl PackedExperts {
    /// Group size and bits follow from the shapes: `scales` has `input /
    /// group_size` columns, the packed weight `input · bits / 32`.
    fn new(input: i32, output: i32, experts: i32, vb: &VarBuilder) -> Result<Self> {
        let width = |name: &str| -> Result<i32> {
            Ok(vb.get_unchecked(name)?.shape().last().copied().unwrap_or(0))
        };
        let (packed, groups) = (width("weight")?, width("scales")?);
        let bits = i64::from(packed) * 32 / i64::from(input.max(1));
        let spec = QuantizationSpec {
            group_size: if groups > 0 { input / groups } else { 0 },
            bits: i32::try_from(bits).unwrap_or(0),
        };
        let fits = groups > 0
            && input % groups == 0
            && i64::from(packed) * 32 == bits * i64::from(input)
            && spec.validate().is_ok();
        if !fits {
            return Err(Error::ModelConfig {
                field: "quantization".into(),
                message: format!(
                    "`{p}.weight` ({packed} packed columns) and `{p}.scales` ({groups} \
                     groups) do not describe a supported quantization of input width {input}",
                    p = vb.prefix()
                ),
            });
        }
        let frozen = |value: Array| Param {
            value,
            frozen: true,
        };
        let parts = [experts, output, groups];
        Ok(PackedExperts {
            weight: frozen(vb.get("weight", &[experts, output, packed])?),
            scales: frozen(vb.get("scales", &parts)?),
            biases: frozen(vb.get("biases", &parts)?),
            spec,
        })
    }

    /// `x: [..., 1, in]` through the experts `indices` selects, without
    /// dequantizing them.
    fn forward(&self, x: &Array, indices: &Array, sorted: bool) -> Result<Array> {
        let q = Quantized {
            weight: self.weight.value.clone(),
            scales: self.scales.value.clone(),
            biases: self.biases.value.clone(),
            group_size: self.spec.group_size,
            bits: self.spec.bits,
        };
        Ok(q.gather_matmul(x, None, Some(indices), true, sorted)?)
    }
}

/// Dense expert weights, `weight: [experts, out, in]`.
#[derive(Debug, Clone, Module)]
pub(crate) struct DenseExperts {
    weight: Param,
}

impl DenseExperts {
    fn new(input: i32, output: i32, experts: i32, vb: &VarBuilder) -> Result<Self> {
        let bound = 1.0 / f64::from(input.max(1)).sqrt();
        let weight = vb.get_with_init(
            "weight",
            &[experts, output, input],
            Init::Uniform {
                low: -bound,
                high: bound,
            },
        )?;
        Ok(DenseExperts {
            weight: Param::new(weight),
        })
    }

    /// `x: [..., 1, in]` through the experts `indices` selects.
    ///
    /// MLX's CPU kernel of `gather_mm` only takes `f32`; other dtypes are
    /// multiplied in `f32` there and the result rounded back.
    fn forward(&self, x: &Array, indices: &Array, sorted: bool) -> Result<Array> {
        let w = self.weight.value.swapaxes(-1, -2)?;
        let dtype = x.dtype();
        if dtype != Dtype::F32 && Device::default_device() == Device::Cpu {
            let y = gather_mm(
                &x.as_type(Dtype::F32)?,
                &w.as_type(Dtype::F32)?,
                None,
                Some(indices),
                sorted,
            )?;
            return Ok(y.as_type(dtype)?);
        }
        Ok(gather_mm(x, &w, None, Some(indices), sorted)?)
    }
}

/// SwiGLU experts: `down(silu(gate(x)) * up(x))` per selected expert.
#[derive(Debug, Clone, Module)]
pub(crate) struct SwitchGlu {
    gate_proj: SwitchLinear,
    up_proj: SwitchLinear,
    down_proj: SwitchLinear,
}

impl SwitchGlu {
    fn new(hidden: i32, intermediate: i32, experts: i32, vb: &VarBuilder) -> Result<Self> {
        Ok(SwitchGlu {
            gate_proj: SwitchLinear::new(hidden, intermediate, experts, &vb.pp("gate_proj"))?,
            up_proj: SwitchLinear::new(hidden, intermediate, experts, &vb.pp("up_proj"))?,
            down_proj: SwitchLinear::new(intermediate, hidden, experts, &vb.pp("down_proj"))?,
        })
    }

    /// `x: [..., hidden]`, `indices: [..., k]` → `[..., k, hidden]`.
    fn forward(&self, x: &Array, indices: &Array) -> Result<Array> {
        let indices = indices.stop_gradient()?;
        let index_shape = indices.shape();
        let k = index_shape.last().copied().unwrap_or(1);
        let x = x.expand_dims(&[-2, -3])?;
        let sort = indices.size() >= SORT_THRESHOLD;
        let (x, idx, inverse) = if sort {
            let flat = indices.reshape(&[-1])?;
            let order = flat.argsort(0)?;
            let inverse = order.argsort(0)?;
            let rows = order.floor_divide(&Array::scalar(k as u32)?)?;
            let hidden = x.axis_size(-1)?;
            let xs = x.reshape(&[-1, 1, hidden])?.take(&rows, Some(0))?;
            (xs, flat.take(&order, Some(0))?, Some(inverse))
        } else {
            (x, indices.clone(), None)
        };
        let up = self.up_proj.forward(&x, &idx, sort)?;
        let gate = self.gate_proj.forward(&x, &idx, sort)?;
        let h = gate.silu()?.multiply(&up)?;
        let mut y = self.down_proj.forward(&h, &idx, sort)?;
        if let Some(inverse) = inverse {
            let hidden = y.axis_size(-1)?;
            let mut shape = index_shape.0.clone();
            shape.extend([1, hidden]);
            y = y.take(&inverse, Some(0))?.reshape(&shape)?;
        }
        Ok(y.squeeze(&[-2])?)
    }
}

/// Shapes and routing settings of a sparse block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MoeDims {
    pub hidden: i32,
    pub intermediate: i32,
    pub experts: i32,
    pub top_k: i32,
    pub norm_topk_prob: bool,
}

/// Router (`gate`) plus experts (`switch_mlp`).
#[derive(Debug, Clone, Module)]
pub(crate) struct SparseMoe {
    gate: Linear,
    switch_mlp: SwitchGlu,
    #[module(skip)]
    dims: MoeDims,
}

impl SparseMoe {
    pub(crate) fn new(dims: MoeDims, vb: &VarBuilder) -> Result<Self> {
        Ok(SparseMoe {
            gate: LinearConfig::new(dims.hidden, dims.experts, false).init(&vb.pp("gate"))?,
            switch_mlp: SwitchGlu::new(
                dims.hidden,
                dims.intermediate,
                dims.experts,
                &vb.pp("switch_mlp"),
            )?,
            dims,
        })
    }

    /// `x: [B, L, hidden]` → (output, router logits `[B, L, experts]`).
    pub(crate) fn forward(&self, x: &Array) -> Result<(Array, Array)> {
        let logits = self.gate.forward(x)?;
        let probs = logits.softmax(-1, true)?;
        let k = self.dims.top_k;
        let experts = self.dims.experts;
        let indices = probs
            .argpartition(experts - k, -1)?
            .slice_axis(-1, experts - k, None, 1)?
            .stop_gradient()?;
        let mut scores = probs.take_along_axis(&indices, -1)?;
        if self.dims.norm_topk_prob {
            scores = scores.divide(&scores.sum(-1, true)?)?;
        }
        let y = self.switch_mlp.forward(x, &indices)?;
        let out = y
            .multiply(&scores.expand_dims(&[-1])?)?
            .sum(-2, false)?
            .as_type(y.dtype())?;
        Ok((out, logits))
    }
}

/// The router load-balancing loss of the Switch Transformer as Hugging Face
/// computes it for Qwen3-MoE: assignment fractions and mean router
/// probabilities are accumulated over all sparse layers (tokens where
/// `token_mask` is 0 excluded), then `experts * Σ_e fraction_e * prob_e`.
///
/// `router_logits` holds one `[..., experts]` array per sparse layer;
/// `token_mask` (`[B, L]`, 1 for real tokens) matches their leading axes.
pub(crate) fn load_balancing_loss(
    router_logits: &[Array],
    experts: i32,
    top_k: i32,
    token_mask: Option<&Array>,
) -> Result<Option<Array>> {
    if router_logits.is_empty() {
        return Ok(None);
    }
    let expert_ids = Array::arange(0.0, f64::from(experts), 1.0, Dtype::U32)?;
    let flat_mask = match token_mask {
        Some(m) => Some(m.reshape(&[-1, 1])?.as_type(Dtype::F32)?),
        None => None,
    };
    let mut counts: Option<Array> = None;
    let mut prob_sum: Option<Array> = None;
    let mut rows: Option<Array> = None;
    for logits in router_logits {
        let logits = logits.reshape(&[-1, experts])?;
        let probs = logits.softmax(-1, false)?.as_type(Dtype::F32)?;
        let selected =
            probs
                .argpartition(experts - top_k, -1)?
                .slice_axis(-1, experts - top_k, None, 1)?;
        let one_hot = selected
            .expand_dims(&[-1])?
            .eq(&expert_ids)?
            .as_type(Dtype::F32)?
            .sum(1, false)?;
        let (c, p, n) = match &flat_mask {
            Some(m) => (
                one_hot.multiply(m)?.sum(0, false)?,
                probs.multiply(m)?.sum(0, false)?,
                m.sum(Axes::All, false)?,
            ),
            None => {
                let n = logits.axis_size(0)?;
                (
                    one_hot.sum(0, false)?,
                    probs.sum(0, false)?,
                    Array::scalar(n as f32)?,
                )
            }
        };
        counts = Some(match counts {
            Some(acc) => acc.add(&c)?,
            None => c,
        });
        prob_sum = Some(match prob_sum {
            Some(acc) => acc.add(&p)?,
            None => p,
        });
        rows = Some(match rows {
            Some(acc) => acc.add(&n)?,
            None => n,
        });
    }
    let (Some(counts), Some(prob_sum), Some(rows)) = (counts, prob_sum, rows) else {
        return Ok(None);
    };
    let fractions = counts.divide(&rows)?;
    let probs = prob_sum.divide(&rows)?;
    Ok(Some(
        fractions
            .multiply(&probs)?
            .sum(Axes::All, false)?
            .mul_scalar(f64::from(experts))?,
    ))
}
