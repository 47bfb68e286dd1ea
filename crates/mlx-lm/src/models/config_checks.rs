//! Range checks of configuration values that would otherwise give NaN
//! outputs or overflow shape arithmetic; every error names the field and
//! its value.

use super::qwen3::{AttentionDims, Qwen3Config};
use super::rope::rope_settings;
use crate::loader::dtype_from_config;
use crate::{Error, Result};

fn bad(field: &str, message: String) -> Error {
    Error::ModelConfig {
        field: field.into(),
        message,
    }
}

/// `value` must be finite and positive, also once narrowed to `f32` (what
/// the kernels compute with).
pub(crate) fn positive_finite(field: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0 && (value as f32).is_finite() && value as f32 > 0.0) {
        return Err(bad(
            field,
            format!("must be a finite positive number, got {value}"),
        ));
    }
    Ok(())
}

/// `value` must be finite and not negative, also once narrowed to `f32`.
pub(crate) fn non_negative_finite(field: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value >= 0.0 && (value as f32).is_finite()) {
        return Err(bad(
            field,
            format!("must be a finite non-negative number, got {value}"),
        ));
    }
    Ok(())
}

/// The product of `factors` as a 32-bit shape entry (a projection's width);
/// an error naming `field` when it overflows.
pub(crate) fn width(field: &str, factors: &[i32]) -> Result<i32> {
    factors
        .iter()
        .try_fold(1i32, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| {
            bad(
                field,
                format!("the width {factors:?} multiplies to more than {}", i32::MAX),
            )
        })
}

/// A weight of shape `dims` must have an element count, and a byte size
/// (at up to 8 bytes an element), that fit the address space.
pub(crate) fn weight(field: &str, dims: &[i32]) -> Result<()> {
    let bytes = dims
        .iter()
        .try_fold(8i64, |acc, &d| acc.checked_mul(i64::from(d)))
        .filter(|&b| isize::try_from(b).is_ok());
    if bytes.is_none() {
        return Err(bad(
            field,
            format!("a weight of shape {dims:?} is too large to address"),
        ));
    }
    Ok(())
}

/// Checks the settings shared by Qwen3 and Qwen3-MoE and derives the
/// attention shapes; `default_head_dim` applies when `head_dim` is absent.
pub(crate) fn attention_dims(config: &Qwen3Config, default_head_dim: i32) -> Result<AttentionDims> {
    for (field, value) in [
        ("vocab_size", config.vocab_size),
        ("hidden_size", config.hidden_size),
        ("intermediate_size", config.intermediate_size),
        ("num_hidden_layers", config.num_hidden_layers),
        ("num_attention_heads", config.num_attention_heads),
        ("num_key_value_heads", config.kv_heads()),
    ] {
        if value <= 0 {
            return Err(bad(field, format!("must be positive, got {value}")));
        }
    }
    if config.max_position_embeddings <= 0 {
        return Err(bad(
            "max_position_embeddings",
            format!("must be positive, got {}", config.max_position_embeddings),
        ));
    }
    non_negative_finite("rms_norm_eps", config.rms_norm_eps)?;
    for (field, value) in [
        ("dtype", &config.dtype),
        ("torch_dtype", &config.torch_dtype),
    ] {
        if let Some(name) = value
            && dtype_from_config(name).is_none()
        {
            return Err(bad(
                field,
                format!(
                    "unknown dtype `{name}` (known: float32, fp32, bfloat16, bf16, float16, fp16, half)"
                ),
            ));
        }
    }
    let head_dim = config.head_dim.unwrap_or(default_head_dim);
    if head_dim <= 0 || head_dim % 2 != 0 {
        return Err(bad(
            "head_dim",
            format!("must be positive and even, got {head_dim}"),
        ));
    }
    let (heads, kv_heads) = (config.num_attention_heads, config.kv_heads());
    width("num_attention_heads", &[heads, head_dim])?;
    let all_heads = kv_heads
        .checked_mul(2)
        .and_then(|kv| kv.checked_add(heads))
        .unwrap_or(i32::MAX);
    width("num_key_value_heads", &[all_heads, head_dim])?;
    width("intermediate_size", &[2, config.intermediate_size])?;
    weight("vocab_size", &[config.vocab_size, config.hidden_size])?;
    weight(
        "intermediate_size",
        &[config.intermediate_size, config.hidden_size],
    )?;
    weight(
        "num_attention_heads",
        &[heads, head_dim, config.hidden_size],
    )?;
    if config.num_attention_heads % config.kv_heads() != 0 {
        return Err(bad(
            "num_key_value_heads",
            format!(
                "{} query heads are not a multiple of {} key/value heads",
                config.num_attention_heads,
                config.kv_heads()
            ),
        ));
    }
    if config.hidden_act != "silu" {
        return Err(bad(
            "hidden_act",
            format!(
                "activation `{}` is not supported (only silu)",
                config.hidden_act
            ),
        ));
    }
    if config.use_sliding_window {
        return Err(bad(
            "use_sliding_window",
            "sliding-window attention is not supported".into(),
        ));
    }
    if let Some(kinds) = &config.layer_types
        && let Some(other) = kinds.iter().find(|k| k.as_str() != "full_attention")
    {
        return Err(bad(
            "layer_types",
            format!("layer type `{other}` is not supported (only full_attention)"),
        ));
    }
    let rope = rope_settings(
        config.rope_theta,
        config.rope_scaling.as_ref(),
        config.rope_parameters.as_ref(),
    )?;
    Ok(AttentionDims {
        hidden: config.hidden_size,
        heads: config.num_attention_heads,
        kv_heads: config.kv_heads(),
        head_dim,
        eps: config.rms_norm_eps as f32,
        bias: config.attention_bias,
        rope,
    })
}
