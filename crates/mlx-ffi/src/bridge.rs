//! The `cxx` bridge: every MLX function the workspace calls.
//!
//! Rules: every function that can throw returns `Result` (a C++ exception
//! becomes `Err(cxx::Exception)`); arrays cross as `UniquePtr<MlxArray>`
//! (a heap-held `mlx::core::array`, itself a reference-counted handle); lists of
//! arrays cross as the opaque `ArrayVec`.

// The two `unsafe fn`s document their safety contract in their own doc
// comments, which the generated wrappers do not carry over.
#[allow(missing_docs, clippy::missing_safety_doc)]
#[cxx::bridge(namespace = "mlx_bridge")]
pub mod ffi {
    /// Element types, in the order of `mlx::core::Dtype::Val`.
    #[repr(u8)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum DType {
        Bool = 0,
        U8 = 1,
        U16 = 2,
        U32 = 3,
        U64 = 4,
        I8 = 5,
        I16 = 6,
        I32 = 7,
        I64 = 8,
        F16 = 9,
        F32 = 10,
        F64 = 11,
        BF16 = 12,
        C64 = 13,
    }

    /// Element-wise functions of one array.
    #[repr(u8)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum UnaryOp {
        Abs,
        Negative,
        Sign,
        LogicalNot,
        Reciprocal,
        Floor,
        Ceil,
        Square,
        Sqrt,
        Rsqrt,
        Exp,
        Expm1,
        Log,
        Log2,
        Log10,
        Log1p,
        Sin,
        Cos,
        Tan,
        Tanh,
        Sinh,
        Cosh,
        ArcSin,
        ArcCos,
        ArcTan,
        Sigmoid,
        Erf,
        ErfInv,
        StopGradient,
        IsNan,
        IsInf,
        IsFinite,
        Copy,
        Contiguous,
    }

    /// Element-wise functions of two broadcast arrays.
    #[repr(u8)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum BinaryOp {
        Add,
        Subtract,
        Multiply,
        Divide,
        FloorDivide,
        Remainder,
        Power,
        Maximum,
        Minimum,
        LogAddExp,
        ArcTan2,
        Equal,
        NotEqual,
        Less,
        LessEqual,
        Greater,
        GreaterEqual,
        LogicalAnd,
        LogicalOr,
        BitwiseAnd,
        BitwiseOr,
        BitwiseXor,
        LeftShift,
        RightShift,
        Matmul,
        Outer,
        Inner,
        Kron,
    }

    /// Reductions over a set of axes.
    #[repr(u8)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ReduceOp {
        Sum,
        Mean,
        Prod,
        Max,
        Min,
        All,
        Any,
        LogSumExp,
        Softmax,
        SoftmaxPrecise,
    }

    /// Scans along one axis.
    #[repr(u8)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ScanOp {
        CumSum,
        CumProd,
        CumMax,
        CumMin,
        LogCumSumExp,
    }

    /// How `scaled_dot_product_attention` masks scores.
    #[repr(u8)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum AttentionMask {
        None,
        Causal,
        Array,
    }

    /// A device: kind 0 = cpu, 1 = gpu.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct DeviceSpec {
        pub kind: i32,
        pub index: i32,
    }

    /// A stream: its index and device.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct StreamSpec {
        pub index: i32,
        pub device: DeviceSpec,
    }

    /// One named array of a safetensors file.
    pub struct NamedArray {
        pub name: String,
        pub array: UniquePtr<MlxArray>,
    }

    /// One metadata entry of a safetensors file.
    pub struct MetadataEntry {
        pub key: String,
        pub value: String,
    }

    extern "Rust" {
        /// A Rust closure over arrays (for grad, vjp, compile, checkpoint).
        type RustFn;
        fn rust_fn_call(f: &RustFn, inputs: &ArrayVec, outputs: Pin<&mut ArrayVec>) -> Result<()>;
    }

    unsafe extern "C++" {
        include!("mlx-ffi/cpp/bridge.h");

        #[namespace = "mlx::core"]
        #[cxx_name = "array"]
        type MlxArray;
        type ArrayVec;
        /// A C++ closure over arrays (traced, compiled or transformed).
        type ArrayFn;

        // ---- array.cc: construction, inspection, read-back ----
        fn array_from_bytes(
            data: &[u8],
            shape: &[i32],
            dtype: DType,
        ) -> Result<UniquePtr<MlxArray>>;
        fn array_scalar_f64(value: f64, dtype: DType) -> Result<UniquePtr<MlxArray>>;
        fn array_scalar_i64(value: i64, dtype: DType) -> Result<UniquePtr<MlxArray>>;
        fn array_clone(a: &MlxArray) -> UniquePtr<MlxArray>;
        fn array_ndim(a: &MlxArray) -> usize;
        fn array_size(a: &MlxArray) -> usize;
        fn array_nbytes(a: &MlxArray) -> usize;
        fn array_shape(a: &MlxArray) -> Vec<i32>;
        fn array_dtype(a: &MlxArray) -> DType;
        fn array_id(a: &MlxArray) -> usize;
        fn array_to_bytes(a: &MlxArray, out: &mut [u8]) -> Result<()>;
        /// A 1-D array of `dtype` holding the concatenation of the host
        /// byte ranges `parts` (address, length, address, length, …).
        ///
        /// # Safety
        ///
        /// Every range must be readable for the duration of the call.
        unsafe fn array_from_byte_parts(
            parts: &[usize],
            dtype: DType,
        ) -> Result<UniquePtr<MlxArray>>;
        /// Evaluates `a` and writes its row-major bytes, in order, into the
        /// host byte ranges `parts` (address, length, …), whose lengths
        /// must add up to the array's bytes.
        ///
        /// # Safety
        ///
        /// Every range must be writable, and no two may overlap, for the
        /// duration of the call.
        unsafe fn array_to_byte_parts(a: &MlxArray, parts: &[usize]) -> Result<()>;
        fn array_eval(a: &MlxArray) -> Result<()>;

        fn array_vec_new() -> UniquePtr<ArrayVec>;
        fn array_vec_push(v: Pin<&mut ArrayVec>, a: &MlxArray);
        fn array_vec_len(v: &ArrayVec) -> usize;
        fn array_vec_get(v: &ArrayVec, i: usize) -> Result<UniquePtr<MlxArray>>;
        fn eval_all(v: &ArrayVec) -> Result<()>;
        fn async_eval_all(v: &ArrayVec) -> Result<()>;

        // ---- ops.cc ----
        fn unary(op: UnaryOp, a: &MlxArray) -> Result<UniquePtr<MlxArray>>;
        fn binary(op: BinaryOp, a: &MlxArray, b: &MlxArray) -> Result<UniquePtr<MlxArray>>;
        fn reduce(
            op: ReduceOp,
            a: &MlxArray,
            axes: &[i32],
            all_axes: bool,
            keepdims: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn var_std(
            a: &MlxArray,
            axes: &[i32],
            all_axes: bool,
            keepdims: bool,
            ddof: i32,
            std_dev: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn arg_reduce(
            a: &MlxArray,
            axis: i32,
            all_axes: bool,
            keepdims: bool,
            is_max: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn scan(
            op: ScanOp,
            a: &MlxArray,
            axis: i32,
            reverse: bool,
            inclusive: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn astype(a: &MlxArray, dtype: DType) -> Result<UniquePtr<MlxArray>>;
        fn view_as(a: &MlxArray, dtype: DType) -> Result<UniquePtr<MlxArray>>;
        fn full(shape: &[i32], value: &MlxArray, dtype: DType) -> Result<UniquePtr<MlxArray>>;
        fn arange(start: f64, stop: f64, step: f64, dtype: DType) -> Result<UniquePtr<MlxArray>>;
        fn linspace(start: f64, stop: f64, num: i32, dtype: DType) -> Result<UniquePtr<MlxArray>>;
        fn eye(n: i32, m: i32, k: i32, dtype: DType) -> Result<UniquePtr<MlxArray>>;
        fn tri(n: i32, m: i32, k: i32, dtype: DType) -> Result<UniquePtr<MlxArray>>;
        fn tril(a: &MlxArray, k: i32, upper: bool) -> Result<UniquePtr<MlxArray>>;
        fn reshape(a: &MlxArray, shape: &[i32]) -> Result<UniquePtr<MlxArray>>;
        fn transpose(a: &MlxArray, axes: &[i32], reverse_all: bool) -> Result<UniquePtr<MlxArray>>;
        fn swapaxes(a: &MlxArray, axis1: i32, axis2: i32) -> Result<UniquePtr<MlxArray>>;
        fn moveaxis(a: &MlxArray, source: i32, destination: i32) -> Result<UniquePtr<MlxArray>>;
        fn expand_dims(a: &MlxArray, axes: &[i32]) -> Result<UniquePtr<MlxArray>>;
        fn squeeze(a: &MlxArray, axes: &[i32], all_axes: bool) -> Result<UniquePtr<MlxArray>>;
        fn flatten(a: &MlxArray, start_axis: i32, end_axis: i32) -> Result<UniquePtr<MlxArray>>;
        fn broadcast_to(a: &MlxArray, shape: &[i32]) -> Result<UniquePtr<MlxArray>>;
        fn concatenate(arrays: &ArrayVec, axis: i32) -> Result<UniquePtr<MlxArray>>;
        fn stack(arrays: &ArrayVec, axis: i32) -> Result<UniquePtr<MlxArray>>;
        fn split_sections(a: &MlxArray, num_splits: i32, axis: i32) -> Result<UniquePtr<ArrayVec>>;
        fn split_at(a: &MlxArray, indices: &[i32], axis: i32) -> Result<UniquePtr<ArrayVec>>;
        fn slice(
            a: &MlxArray,
            start: &[i32],
            stop: &[i32],
            strides: &[i32],
        ) -> Result<UniquePtr<MlxArray>>;
        fn slice_update(
            a: &MlxArray,
            update: &MlxArray,
            start: &[i32],
            stop: &[i32],
            strides: &[i32],
        ) -> Result<UniquePtr<MlxArray>>;
        fn pad(
            a: &MlxArray,
            axes: &[i32],
            low: &[i32],
            high: &[i32],
            value: &MlxArray,
        ) -> Result<UniquePtr<MlxArray>>;
        fn repeat(a: &MlxArray, repeats: i32, axis: i32, flat: bool)
        -> Result<UniquePtr<MlxArray>>;
        fn tile(a: &MlxArray, reps: &[i32]) -> Result<UniquePtr<MlxArray>>;
        fn roll(a: &MlxArray, shift: i32, axis: i32, flat: bool) -> Result<UniquePtr<MlxArray>>;
        fn clip(
            a: &MlxArray,
            lo: &MlxArray,
            hi: &MlxArray,
            has_lo: bool,
            has_hi: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn where_cond(cond: &MlxArray, x: &MlxArray, y: &MlxArray) -> Result<UniquePtr<MlxArray>>;
        fn take(
            a: &MlxArray,
            indices: &MlxArray,
            axis: i32,
            flat: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn take_along_axis(
            a: &MlxArray,
            indices: &MlxArray,
            axis: i32,
        ) -> Result<UniquePtr<MlxArray>>;
        fn put_along_axis(
            a: &MlxArray,
            indices: &MlxArray,
            values: &MlxArray,
            axis: i32,
        ) -> Result<UniquePtr<MlxArray>>;
        fn scatter_add_axis(
            a: &MlxArray,
            indices: &MlxArray,
            values: &MlxArray,
            axis: i32,
        ) -> Result<UniquePtr<MlxArray>>;
        fn scatter_add(
            a: &MlxArray,
            indices: &ArrayVec,
            updates: &MlxArray,
            axes: &[i32],
        ) -> Result<UniquePtr<MlxArray>>;
        fn sort(a: &MlxArray, axis: i32, arg: bool) -> Result<UniquePtr<MlxArray>>;
        fn partition(a: &MlxArray, kth: i32, axis: i32, arg: bool) -> Result<UniquePtr<MlxArray>>;
        fn topk(a: &MlxArray, k: i32, axis: i32) -> Result<UniquePtr<MlxArray>>;
        fn addmm(
            c: &MlxArray,
            a: &MlxArray,
            b: &MlxArray,
            alpha: f32,
            beta: f32,
        ) -> Result<UniquePtr<MlxArray>>;
        fn norm(
            a: &MlxArray,
            ord: f64,
            axes: &[i32],
            all_axes: bool,
            keepdims: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn gather_mm(
            a: &MlxArray,
            b: &MlxArray,
            lhs_indices: &MlxArray,
            rhs_indices: &MlxArray,
            has_lhs: bool,
            has_rhs: bool,
            sorted: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        #[allow(clippy::too_many_arguments)]
        fn gather_qmm(
            x: &MlxArray,
            w: &MlxArray,
            scales: &MlxArray,
            biases: &MlxArray,
            lhs_indices: &MlxArray,
            rhs_indices: &MlxArray,
            has_lhs: bool,
            has_rhs: bool,
            transpose: bool,
            group_size: i32,
            bits: i32,
            sorted: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn quantize(w: &MlxArray, group_size: i32, bits: i32) -> Result<UniquePtr<ArrayVec>>;
        fn dequantize(
            w: &MlxArray,
            scales: &MlxArray,
            biases: &MlxArray,
            group_size: i32,
            bits: i32,
        ) -> Result<UniquePtr<MlxArray>>;
        fn quantized_matmul(
            x: &MlxArray,
            w: &MlxArray,
            scales: &MlxArray,
            biases: &MlxArray,
            transpose: bool,
            group_size: i32,
            bits: i32,
        ) -> Result<UniquePtr<MlxArray>>;
        fn array_equal(a: &MlxArray, b: &MlxArray, equal_nan: bool) -> Result<UniquePtr<MlxArray>>;
        fn allclose(
            a: &MlxArray,
            b: &MlxArray,
            rtol: f64,
            atol: f64,
            equal_nan: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn nan_to_num(
            a: &MlxArray,
            nan: f32,
            posinf: f32,
            neginf: f32,
        ) -> Result<UniquePtr<MlxArray>>;
        fn round(a: &MlxArray, decimals: i32) -> Result<UniquePtr<MlxArray>>;

        // ---- fast.cc ----
        fn fast_rms_norm(
            x: &MlxArray,
            weight: &MlxArray,
            has_weight: bool,
            eps: f32,
        ) -> Result<UniquePtr<MlxArray>>;
        fn fast_layer_norm(
            x: &MlxArray,
            weight: &MlxArray,
            bias: &MlxArray,
            has_weight: bool,
            has_bias: bool,
            eps: f32,
        ) -> Result<UniquePtr<MlxArray>>;
        fn fast_rope(
            x: &MlxArray,
            dims: i32,
            traditional: bool,
            base: f32,
            scale: f32,
            offset: i32,
        ) -> Result<UniquePtr<MlxArray>>;
        fn fast_rope_array_offset(
            x: &MlxArray,
            dims: i32,
            traditional: bool,
            base: f32,
            scale: f32,
            offset: &MlxArray,
        ) -> Result<UniquePtr<MlxArray>>;
        fn fast_sdpa(
            q: &MlxArray,
            k: &MlxArray,
            v: &MlxArray,
            scale: f32,
            mask_kind: AttentionMask,
            mask: &MlxArray,
        ) -> Result<UniquePtr<MlxArray>>;

        // ---- cuda/matvec.cc (no_cuda.cc in the CPU build) ----
        /// Whether [`few_rows_linear`] runs its CUDA kernel here (the CUDA
        /// build, MLX's CUDA backend, the GPU as default device, the path
        /// enabled by [`set_fast_paths`]).
        fn few_rows_linear_active() -> bool;
        /// `x @ w.T` for `x` of at most 8 rows (`[..., K]`, `w` `[N, K]`,
        /// one floating dtype) as one CUDA kernel; null where it does not
        /// apply (no CUDA device, other shapes or dtypes).
        fn few_rows_linear(x: &MlxArray, w: &MlxArray) -> Result<UniquePtr<MlxArray>>;

        // ---- cuda/norm_rope.cc (no_cuda.cc in the CPU build) ----
        /// Whether [`norm_rope_heads`] runs its CUDA kernel here (the CUDA
        /// build, MLX's CUDA backend, the GPU as default device, the path
        /// enabled by [`set_fast_paths`]).
        fn norm_rope_heads_active() -> bool;
        /// The first `q_heads` heads of `x` (`[B, H, 1, D]`) RMS-normalised
        /// with `q_weight`, the next `k_heads` with `k_weight`, all rotated
        /// to `offsets` (int32 `[1]` or `[B]`): `[B, q_heads + k_heads, 1,
        /// D]`, as one CUDA kernel; null where it does not apply.
        #[allow(clippy::too_many_arguments)]
        fn norm_rope_heads(
            x: &MlxArray,
            q_weight: &MlxArray,
            k_weight: &MlxArray,
            offsets: &MlxArray,
            q_heads: i32,
            k_heads: i32,
            eps: f32,
            base: f32,
            scale: f32,
        ) -> Result<UniquePtr<MlxArray>>;

        // ---- random.cc ----
        fn random_key(seed: u64) -> Result<UniquePtr<MlxArray>>;
        fn random_seed(seed: u64);
        fn random_split(key: &MlxArray, num: i32) -> Result<UniquePtr<MlxArray>>;
        fn random_uniform(
            low: &MlxArray,
            high: &MlxArray,
            shape: &[i32],
            dtype: DType,
            key: &MlxArray,
            has_key: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn random_normal(
            shape: &[i32],
            dtype: DType,
            loc: f32,
            scale: f32,
            key: &MlxArray,
            has_key: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn random_randint(
            low: &MlxArray,
            high: &MlxArray,
            shape: &[i32],
            dtype: DType,
            key: &MlxArray,
            has_key: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn random_bernoulli(
            p: &MlxArray,
            shape: &[i32],
            key: &MlxArray,
            has_key: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn random_truncated_normal(
            lower: &MlxArray,
            upper: &MlxArray,
            shape: &[i32],
            dtype: DType,
            key: &MlxArray,
            has_key: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn random_gumbel(
            shape: &[i32],
            dtype: DType,
            key: &MlxArray,
            has_key: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn random_categorical(
            logits: &MlxArray,
            axis: i32,
            num_samples: i32,
            key: &MlxArray,
            has_key: bool,
        ) -> Result<UniquePtr<MlxArray>>;
        fn random_permutation(n: i32, key: &MlxArray, has_key: bool)
        -> Result<UniquePtr<MlxArray>>;
        /// Standard Gumbel draws `[B, ...shape]`, row `i` with key `keys[i]`.
        fn random_gumbel_rows(
            keys: &MlxArray,
            shape: &[i32],
            dtype: DType,
        ) -> Result<UniquePtr<MlxArray>>;
        /// Uniform draws in `[0, 1)` `[B, ...shape]`, row `i` with key `keys[i]`.
        fn random_uniform_rows(
            keys: &MlxArray,
            shape: &[i32],
            dtype: DType,
        ) -> Result<UniquePtr<MlxArray>>;
        /// Each key of `keys` (`[B, 2]`) split into `num`: `[B, num, 2]`.
        fn random_split_rows(keys: &MlxArray, num: i32) -> Result<UniquePtr<MlxArray>>;

        // ---- transforms.cc ----
        fn array_fn_from_rust(f: Box<RustFn>) -> UniquePtr<ArrayFn>;
        fn array_fn_call(f: &ArrayFn, inputs: &ArrayVec) -> Result<UniquePtr<ArrayVec>>;
        fn array_fn_compile(f: &ArrayFn, shapeless: bool) -> Result<UniquePtr<ArrayFn>>;
        fn array_fn_checkpoint(f: &ArrayFn) -> Result<UniquePtr<ArrayFn>>;
        fn array_fn_custom_vjp(f: &ArrayFn, vjp: &ArrayFn) -> Result<UniquePtr<ArrayFn>>;
        fn depends(inputs: &ArrayVec, dependencies: &ArrayVec) -> Result<UniquePtr<ArrayVec>>;
        fn vjp(
            f: &ArrayFn,
            primals: &ArrayVec,
            cotangents: &ArrayVec,
            outputs: Pin<&mut ArrayVec>,
        ) -> Result<UniquePtr<ArrayVec>>;
        fn jvp(
            f: &ArrayFn,
            primals: &ArrayVec,
            tangents: &ArrayVec,
            outputs: Pin<&mut ArrayVec>,
        ) -> Result<UniquePtr<ArrayVec>>;
        fn value_and_grad(
            f: &ArrayFn,
            inputs: &ArrayVec,
            argnums: &[i32],
            values: Pin<&mut ArrayVec>,
        ) -> Result<UniquePtr<ArrayVec>>;
        fn set_compile_enabled(enabled: bool);

        // ---- io.cc ----
        fn load_safetensors(
            path: &str,
            metadata: &mut Vec<MetadataEntry>,
        ) -> Result<Vec<NamedArray>>;
        fn save_safetensors(
            path: &str,
            names: &Vec<String>,
            arrays: &ArrayVec,
            metadata: &Vec<MetadataEntry>,
        ) -> Result<()>;
        fn load_npy(path: &str) -> Result<UniquePtr<MlxArray>>;
        fn save_npy(path: &str, a: &MlxArray) -> Result<()>;

        // ---- runtime.cc: devices, streams, memory ----
        fn mlx_version() -> String;
        fn default_device() -> DeviceSpec;
        fn set_default_device(device: DeviceSpec) -> Result<()>;
        fn device_available(device: DeviceSpec) -> bool;
        fn device_count(kind: i32) -> i32;
        fn default_stream(device: DeviceSpec) -> Result<StreamSpec>;
        fn new_stream(device: DeviceSpec) -> Result<StreamSpec>;
        fn set_default_stream(stream: StreamSpec) -> Result<()>;
        fn synchronize(stream: StreamSpec) -> Result<()>;
        fn synchronize_default() -> Result<()>;
        fn get_active_memory() -> usize;
        fn get_peak_memory() -> usize;
        fn get_cache_memory() -> usize;
        fn reset_peak_memory();
        fn clear_cache();
        fn set_memory_limit(limit: usize) -> usize;
        fn set_cache_limit(limit: usize) -> usize;
        /// Enables the CUDA fast paths whose bits are set (1: few-rows
        /// products, 2: query/key norm and rotation, 4: direct copies, 8:
        /// page locking) and disables the others; all start enabled.
        fn set_fast_paths(bits: u32);
        /// The bits of the enabled fast paths.
        fn fast_paths_enabled() -> u32;
        fn cuda_direct_copies_active() -> bool;
        /// Page-locks `bytes` bytes at `address` (host memory that stays
        /// allocated until `cuda_unpin_host`); false when not possible.
        unsafe fn cuda_pin_host(address: usize, bytes: usize) -> bool;
        unsafe fn cuda_unpin_host(address: usize);

        // ---- distributed.cc: MLX's distributed layer ----
        /// A group of processes (`mlx::core::distributed::Group`).
        type DistGroup;
        /// Whether MLX can use `backend` (`any`, `ring`, `mpi`, `nccl`, `jaccl`).
        fn distributed_is_available(backend: &str) -> bool;
        /// `distributed::init(strict, backend)`: with `strict`, throws when
        /// the backend cannot start; otherwise falls back to a size-1 group.
        fn distributed_init(strict: bool, backend: &str) -> Result<UniquePtr<DistGroup>>;
        fn group_rank(g: &DistGroup) -> i32;
        fn group_size(g: &DistGroup) -> i32;
        fn group_split(g: &DistGroup, color: i32, key: i32) -> Result<UniquePtr<DistGroup>>;
        fn group_clone(g: &DistGroup) -> UniquePtr<DistGroup>;
        fn dist_all_sum(a: &MlxArray, g: &DistGroup) -> Result<UniquePtr<MlxArray>>;
        fn dist_all_max(a: &MlxArray, g: &DistGroup) -> Result<UniquePtr<MlxArray>>;
        fn dist_all_min(a: &MlxArray, g: &DistGroup) -> Result<UniquePtr<MlxArray>>;
        fn dist_all_gather(a: &MlxArray, g: &DistGroup) -> Result<UniquePtr<MlxArray>>;
        fn dist_sum_scatter(a: &MlxArray, g: &DistGroup) -> Result<UniquePtr<MlxArray>>;
        fn dist_send(a: &MlxArray, dst: i32, g: &DistGroup) -> Result<UniquePtr<MlxArray>>;
        fn dist_recv(
            shape: &[i32],
            dtype: DType,
            src: i32,
            g: &DistGroup,
        ) -> Result<UniquePtr<MlxArray>>;
        fn dist_recv_like(like: &MlxArray, src: i32, g: &DistGroup) -> Result<UniquePtr<MlxArray>>;
    }
}

/// The signature of [`RustFn`]'s closure: the inputs, a vector to push the
/// outputs to, and an error message on failure.
pub type RustFnBody =
    dyn Fn(&ffi::ArrayVec, &mut Vec<cxx::UniquePtr<ffi::MlxArray>>) -> Result<(), String>;

/// The Rust side of a closure that C++ calls back: receives the inputs,
/// returns the outputs or an error message.
pub struct RustFn(pub Box<RustFnBody>);

fn rust_fn_call(
    f: &RustFn,
    inputs: &ffi::ArrayVec,
    mut outputs: std::pin::Pin<&mut ffi::ArrayVec>,
) -> Result<(), String> {
    // A panic must not unwind into C++ (cxx would abort); report it as an
    // error instead, which C++ sees as an exception and MLX propagates.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut produced = Vec::new();
        (f.0)(inputs, &mut produced).map(|()| produced)
    }));
    match result {
        Ok(Ok(produced)) => {
            for array in &produced {
                if let Some(array) = array.as_ref() {
                    ffi::array_vec_push(outputs.as_mut(), array);
                }
            }
            Ok(())
        }
        Ok(Err(message)) => Err(message),
        Err(payload) => Err(format!("closure panicked: {}", panic_message(&*payload))),
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
