//! Linear layers with quantized weights.

use mlx_tensor::{Array, Dtype, Quantized};

use crate::Module;
use crate::layers::{Linear, LinearConfig};
use crate::module::Param;
use crate::{Error, Result, VarBuilder};

/// Default elements per quantization group (as MLX's affine mode).
pub const DEFAULT_GROUP_SIZE: i32 = 64;
/// Default bits per weight.
pub const DEFAULT_BITS: i32 = 4;

/// `y = x Wᵀ + b` with `W` stored quantized (affine mode, 4 or 8 bits, or
/// the other widths MLX supports) as packed `weight`, per-group `scales` and
/// `biases`, the names MLX and mlx-lm use in checkpoints.
///
/// All parameters start frozen: the packed integers have no gradient. The
/// float `bias`, `scales` and `biases` may be unfrozen explicitly.
#[derive(Debug, Clone, Module)]
pub struct QuantizedLinear {
    /// Packed `u32` weights `[out, in · bits / 32]`.
    pub weight: Param,
    /// Scales `[out, in / group_size]`.
    pub scales: Param,
    /// Biases of the quantization `[out, in / group_size]`.
    pub biases: Param,
    /// The layer's additive bias `[out]`, when it has one.
    pub bias: Option<Param>,
    /// Elements per group.
    pub group_size: i32,
    /// Bits per element.
    pub bits: i32,
}

fn frozen(value: Array) -> Param {
    Param {
        value,
        frozen: true,
    }
}

fn check_config(in_features: i32, group_size: i32, bits: i32) -> Result<()> {
    if ![2, 3, 4, 5, 6, 8].contains(&bits) {
        return Err(Error::Config(format!(
            "quantization bits must be 2, 3, 4, 5, 6 or 8, got {bits}"
        )));
    }
    if ![32, 64, 128].contains(&group_size) {
        return Err(Error::Config(format!(
            "quantization group size must be 32, 64 or 128, got {group_size}"
        )));
    }
    if in_features % group_size != 0 {
        return Err(Error::Config(format!(
            "input features {in_features} are not a multiple of the group size {group_size}"
        )));
    }
    Ok(())
}

impl QuantizedLinear {
    /// Quantizes a dense layer (its bias, if any, is kept as is).
    pub fn from_linear(linear: &Linear, group_size: i32, bits: i32) -> Result<Self> {
        let (_, in_features) = linear.dims();
        check_config(in_features, group_size, bits)?;
        let q = linear.weight.value.quantize(group_size, bits)?;
        Ok(QuantizedLinear {
            weight: frozen(q.weight),
            scales: frozen(q.scales),
            biases: frozen(q.biases),
            bias: linear.bias.as_ref().map(|b| frozen(b.value.clone())),
            group_size,
            bits,
        })
    }

    /// Builds from `vb`: a checkpoint provides `weight` (packed `u32`),
    /// `scales`, `biases` and optionally `bias`; a random source draws a
    /// dense layer like [`LinearConfig::init`] and quantizes it.
    pub fn new(config: LinearConfig, group_size: i32, bits: i32, vb: &VarBuilder) -> Result<Self> {
        check_config(config.in_features, group_size, bits)?;
        if vb.is_random() {
            let dense = config.init(vb)?;
            return Self::from_linear(&dense, group_size, bits);
        }
        let out = config.out_features;
        let packed = config.in_features * bits / 32;
        let groups = config.in_features / group_size;
        let weight = vb.with_dtype(Dtype::U32).get("weight", &[out, packed])?;
        let scales = vb.get("scales", &[out, groups])?;
        let biases = vb.get("biases", &[out, groups])?;
        let bias = if config.bias {
            Some(frozen(vb.get("bias", &[out])?))
        } else {
            None
        };
        Ok(QuantizedLinear {
            weight: frozen(weight),
            scales: frozen(scales),
            biases: frozen(biases),
            bias,
            group_size,
            bits,
        })
    }

    fn quantized(&self) -> Quantized {
        Quantized {
            weight: self.weight.value.clone(),
            scales: self.scales.value.clone(),
            biases: self.biases.value.clone(),
            group_size: self.group_size,
            bits: self.bits,
        }
    }

    /// Applies the layer to `x: [..., in]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let y = self.quantized().matmul(x, true)?;
        Ok(match &self.bias {
            Some(b) => y.add(&b.value)?,
            None => y,
        })
    }

    /// The dense weight `[out, in]` the quantized one stands for.
    pub fn dequantized_weight(&self) -> Result<Array> {
        Ok(self.quantized().dequantize()?)
    }

    /// A dense [`Linear`] with the dequantized weight.
    pub fn to_linear(&self) -> Result<Linear> {
        Ok(Linear::from_arrays(
            self.dequantized_weight()?,
            self.bias.as_ref().map(|b| b.value.clone()),
        ))
    }
}

impl super::Forward for QuantizedLinear {
    fn forward(&self, x: &Array) -> Result<Array> {
        QuantizedLinear::forward(self, x)
    }
}
