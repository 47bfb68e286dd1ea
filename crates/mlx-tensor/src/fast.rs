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

/// `x @ weight.T` for the few rows of a decoding step: `x` is `[..., K]`,
/// `weight` is `[N, K]`, the result `[..., N]`.
///
/// On MLX's CUDA build with the GPU as default device, at most 8 rows in all
/// and one floating dtype, this is one kernel of the bridge that reads
/// `weight` once at memory speed (summed in f32 and rounded once as MLX's
/// products are; the order of the sums differs, so the last bit may too).
/// Elsewhere, or with the path disabled ([`FastPaths::few_rows_linear`]), it
/// is `x.matmul(&weight.t()?)`. The kernel has no gradient: use this where
/// nothing is differentiated (decoding).
#[track_caller]
pub fn few_rows_linear(x: &Array, weight: &Array) -> Result<Array> {
    match ffi::few_rows_linear(x.raw(), weight.raw()) {
        Ok(ptr) if ptr.is_null() => x.matmul(&weight.t()?),
        result => check("fast::few_rows_linear", &[x, weight], result),
    }
}

/// Whether [`few_rows_linear`] runs its CUDA kernel in this process (the
/// CUDA build with the GPU as default device, and the path enabled).
pub fn few_rows_linear_active() -> bool {
    ffi::few_rows_linear_active()
}

/// The query and key heads of a one-position step, normalised and rotated:
/// of `x` (`[B, H, 1, D]`, e.g. a step's stacked q/k/v heads) the first
/// `q_heads` heads are RMS-normalised and multiplied by `q_weight`, the
/// next `k_heads` by `k_weight` (both `[D]`, `eps` shared; heads that do not
/// fit `x` are an error), and all are
/// rotated (the two halves of each head, as Qwen3 and Llama do) to the
/// positions `offsets` (int32, `[1]` for every row or `[B]`) with `base`
/// and `scale`. The result is `[B, q_heads + k_heads, 1, D]`: [`rms_norm`]
/// without weight, the product with the weight, then [`rope_with_offsets`],
/// with MLX's roundings (the normalised value rounded to the dtype, the
/// product rounded again).
///
/// On MLX's CUDA build with the GPU as default device (and the path enabled,
/// [`FastPaths::norm_rope_heads`]) the three run as one kernel of the
/// bridge, for the shapes and dtypes it covers; elsewhere as MLX's
/// operations. The kernel has no gradient: use this where nothing is
/// differentiated (decoding).
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
) -> Result<Array> {
    let invalid = |message: String| crate::Error::Invalid {
        op: "fast::norm_rope_heads",
        message,
    };
    let shape = x.shape();
    let &[_, all_heads, _, dims] = shape.dims() else {
        return Err(invalid(format!("x is {shape}; it must be [B, H, L, D]")));
    };
    let heads_fit = q_heads.checked_add(k_heads).is_some_and(|n| n <= all_heads);
    if q_heads < 1 || k_heads < 0 || !heads_fit {
        return Err(invalid(format!(
            "{q_heads} query and {k_heads} key heads do not fit x's {all_heads} heads"
        )));
    }
    for (name, w) in [("q_weight", q_weight), ("k_weight", k_weight)] {
        if w.shape().dims() != [dims] {
            return Err(invalid(format!(
                "{name} is {}; it must be [{dims}]",
                w.shape()
            )));
        }
    }
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
        Ok(ptr) if ptr.is_null() => {
            let heads = |from: i32, n: i32, weight: &Array| -> Result<Array> {
                rms_norm(&x.slice_axis(1, from, Some(from + n), 1)?, None, eps)?.multiply(weight)
            };
            let q = heads(0, q_heads, q_weight)?;
            let k = heads(q_heads, k_heads, k_weight)?;
            let qk = crate::concatenate(&[&q, &k], 1)?;
            rope_with_offsets(&qk, dims, false, base, scale, offsets)
        }
        result => check(
            "fast::norm_rope_heads",
            &[x, q_weight, k_weight, offsets],
            result,
        ),
    }
}

/// Whether [`norm_rope_heads`] runs its CUDA kernel in this process.
pub fn norm_rope_heads_active() -> bool {
    ffi::norm_rope_heads_active()
}

/// Which of the CUDA fast paths may run: the two decoding kernels of
/// [`few_rows_linear`] and [`norm_rope_heads`], direct copies between host
/// memory and device buffers, and page-locked host buffers (see
/// [`crate::memory::cuda_direct_copies_active`]). Every path starts enabled;
/// the CPU build has none, whatever this says.
///
/// The library never reads the environment for these: a program that wants
/// an environment override calls [`FastPaths::from_env`] once, the one
/// place that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPaths {
    /// The few-rows product kernel.
    pub few_rows_linear: bool,
    /// The query/key norm-and-rotation kernel.
    pub norm_rope_heads: bool,
    /// Direct driver copies of large host transfers.
    pub direct_copies: bool,
    /// Page-locking of large host buffers.
    pub page_locking: bool,
}

impl Default for FastPaths {
    fn default() -> Self {
        FastPaths {
            few_rows_linear: true,
            norm_rope_heads: true,
            direct_copies: true,
            page_locking: true,
        }
    }
}

/// The environment variables [`FastPaths::from_env`] reads, with the field
/// each sets; `0` disables the path, anything else (or unset) keeps it on.
pub const FAST_PATH_VARIABLES: [(&str, &str); 4] = [
    ("MLX_FFI_CUDA_MATVEC", "few_rows_linear"),
    ("MLX_FFI_CUDA_NORM_ROPE", "norm_rope_heads"),
    ("MLX_FFI_CUDA_COPIES", "direct_copies"),
    ("MLX_FFI_CUDA_PIN", "page_locking"),
];

impl FastPaths {
    const FEW_ROWS_LINEAR: u32 = 1;
    const NORM_ROPE_HEADS: u32 = 2;
    const DIRECT_COPIES: u32 = 4;
    const PAGE_LOCKING: u32 = 8;

    /// Every path disabled: MLX's own operations and transfers only.
    pub fn none() -> Self {
        FastPaths {
            few_rows_linear: false,
            norm_rope_heads: false,
            direct_copies: false,
            page_locking: false,
        }
    }

    /// The defaults, with each path of [`FAST_PATH_VARIABLES`] whose
    /// variable is `0` disabled.
    pub fn from_env() -> Self {
        let off = |name: &str| std::env::var_os(name).is_some_and(|v| v == "0");
        let [matvec, norm_rope, copies, pin] = FAST_PATH_VARIABLES.map(|(name, _)| off(name));
        FastPaths {
            few_rows_linear: !matvec,
            norm_rope_heads: !norm_rope,
            direct_copies: !copies,
            page_locking: !pin,
        }
    }

    /// The paths in force now.
    pub fn current() -> Self {
        let bits = ffi::fast_paths_enabled();
        FastPaths {
            few_rows_linear: bits & Self::FEW_ROWS_LINEAR != 0,
            norm_rope_heads: bits & Self::NORM_ROPE_HEADS != 0,
            direct_copies: bits & Self::DIRECT_COPIES != 0,
            page_locking: bits & Self::PAGE_LOCKING != 0,
        }
    }

    /// Puts these settings in force for the whole process (buffers already
    /// page-locked stay so until they are freed).
    pub fn apply(self) {
        let bit = |on: bool, value: u32| if on { value } else { 0 };
        ffi::set_fast_paths(
            bit(self.few_rows_linear, Self::FEW_ROWS_LINEAR)
                | bit(self.norm_rope_heads, Self::NORM_ROPE_HEADS)
                | bit(self.direct_copies, Self::DIRECT_COPIES)
                | bit(self.page_locking, Self::PAGE_LOCKING),
        );
    }
}
