//! Fused kernels: normalisation, rotary embeddings, attention.

use mlx_ffi::ffi::{self, AttentionMask};

use crate::array::check;
use crate::{Array, Result};

/// RMS normalisation over the last axis: `x / sqrt(mean(x²) + eps) * weight`.
#[track_caller]
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    let placeholder;
    let w = match weight {
        Some(w) => w,
        None => {
            placeholder = Array::scalar(1.0f32)?;
            &placeholder
        }
    };
    check(
        "fast::rms_norm",
        &[x],
        ffi::fast_rms_norm(x.raw(), w.raw(), weight.is_some(), eps),
    )
}

/// Layer normalisation over the last axis with optional affine weight and bias.
#[track_caller]
pub fn layer_norm(
    x: &Array,
    weight: Option<&Array>,
    bias: Option<&Array>,
    eps: f32,
) -> Result<Array> {
    let one = Array::scalar(1.0f32)?;
    let w = weight.unwrap_or(&one);
    let b = bias.unwrap_or(&one);
    check(
        "fast::layer_norm",
        &[x],
        ffi::fast_layer_norm(
            x.raw(),
            w.raw(),
            b.raw(),
            weight.is_some(),
            bias.is_some(),
            eps,
        ),
    )
}

/// Rotary position embedding of the first `dims` features of the last axis;
/// positions start at `offset` along the second-to-last axis.
/// `traditional = false` rotates the two halves (as Qwen3 and Llama do).
#[track_caller]
pub fn rope(
    x: &Array,
    dims: i32,
    traditional: bool,
    base: f32,
    scale: f32,
    offset: i32,
) -> Result<Array> {
    check(
        "fast::rope",
        &[x],
        ffi::fast_rope(x.raw(), dims, traditional, base, scale, offset),
    )
}

/// [`rope`] with per-batch offsets (an `i32` array of shape `[B]` or scalar).
#[track_caller]
pub fn rope_with_offsets(
    x: &Array,
    dims: i32,
    traditional: bool,
    base: f32,
    scale: f32,
    offsets: &Array,
) -> Result<Array> {
    check(
        "fast::rope",
        &[x, offsets],
        ffi::fast_rope_array_offset(x.raw(), dims, traditional, base, scale, offsets.raw()),
    )
}

/// The mask of [`scaled_dot_product_attention`].
#[derive(Debug, Clone, Copy)]
pub enum SdpaMask<'a> {
    /// No mask.
    None,
    /// Causal: query `i` sees keys `0..=i + (kv_len - q_len)`.
    Causal,
    /// A boolean (keep = true) or additive float mask broadcastable to
    /// `[B, heads, q_len, kv_len]`.
    Array(&'a Array),
}

/// `softmax(q @ kᵀ * scale + mask) @ v` with `q: [B, Hq, L, D]`,
/// `k, v: [B, Hkv, S, D]` (grouped-query attention when `Hq > Hkv`).
#[track_caller]
pub fn scaled_dot_product_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: SdpaMask<'_>,
) -> Result<Array> {
    let placeholder;
    let (kind, m) = match mask {
        SdpaMask::None | SdpaMask::Causal => {
            placeholder = Array::scalar(0.0f32)?;
            (
                if matches!(mask, SdpaMask::Causal) {
                    AttentionMask::Causal
                } else {
                    AttentionMask::None
                },
                &placeholder,
            )
        }
        SdpaMask::Array(m) => (AttentionMask::Array, m),
    };
    check(
        "fast::scaled_dot_product_attention",
        &[q, k, v],
        ffi::fast_sdpa(q.raw(), k.raw(), v.raw(), scale, kind, m.raw()),
    )
}

/// `x @ weight.T` for the few rows of a decoding step as one CUDA kernel
/// that reads `weight` once at memory speed: `x` is `[..., K]` with at most
/// 8 rows in all, `weight` is `[N, K]` and both share a floating dtype; the
/// result is `[..., N]`, summed in f32 and rounded once as MLX's products
/// are (the order of the sums differs, so the last bit may too).
///
/// Returns `None` where the kernel does not apply — no CUDA device (the CPU
/// build, or `MLX_FFI_CUDA_MATVEC=0`), more rows, other shapes or dtypes —
/// and the caller computes `x.matmul(&weight.t()?)` instead. The kernel has
/// no gradient: use it where nothing is differentiated (decoding).
#[track_caller]
pub fn few_rows_linear(x: &Array, weight: &Array) -> Result<Option<Array>> {
    match ffi::few_rows_linear(x.raw(), weight.raw()) {
        Ok(ptr) if ptr.is_null() => Ok(None),
        result => check("fast::few_rows_linear", &[x, weight], result).map(Some),
    }
}

/// Whether [`few_rows_linear`] runs its CUDA kernel in this process (MLX's
/// CUDA backend with the GPU as default device, and `MLX_FFI_CUDA_MATVEC`
/// not `0`).
pub fn few_rows_linear_active() -> bool {
    ffi::few_rows_linear_active()
}

/// The query and key heads of a one-position step, normalised and rotated
/// in one CUDA kernel: of `x` (`[B, H, 1, D]`, e.g. a step's stacked q/k/v
/// heads) the first `q_heads` heads are RMS-normalised with `q_weight`, the
/// next `k_heads` with `k_weight` (both `[D]`, `eps` shared), and all are
/// rotated (the two halves of each head, as Qwen3 and Llama do) to the
/// positions `offsets` (int32, `[1]` for every row or `[B]`) with `base`
/// and `scale`. The result, `[B, q_heads + k_heads, 1, D]`, equals
/// [`rms_norm`] then [`rope`] with MLX's roundings (the normalised value
/// rounded to the dtype, the product with the weight rounded again).
///
/// Returns `None` where the kernel does not apply (no CUDA device, or
/// `MLX_FFI_CUDA_NORM_ROPE=0`; other shapes or dtypes). The kernel has no
/// gradient: use it where nothing is differentiated (decoding).
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn norm_rope_heads(
    x: &Array,
    q_weight: &Array,
    k_weight: &Array,
    offsets: &Array,
    q_heads: i32,
    k_heads: i32,
    eps: f32,
    base: f32,
    scale: f32,
) -> Result<Option<Array>> {
    let result = ffi::norm_rope_heads(
        x.raw(),
        q_weight.raw(),
        k_weight.raw(),
        offsets.raw(),
        q_heads,
        k_heads,
        eps,
        base,
        scale,
    );
    match result {
        Ok(ptr) if ptr.is_null() => Ok(None),
        result => check(
            "fast::norm_rope_heads",
            &[x, q_weight, k_weight, offsets],
            result,
        )
        .map(Some),
    }
}

/// Whether [`norm_rope_heads`] runs its CUDA kernel in this process.
pub fn norm_rope_heads_active() -> bool {
    ffi::norm_rope_heads_active()
}
