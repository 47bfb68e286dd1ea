// C++ side of the mlx-ffi bridge. Declarations only; the generated
// `bridge.rs.h` is included by the .cc files for the shared types.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "mlx/mlx.h"
#include "rust/cxx.h"

namespace mlx_bridge {

using mlx::core::array;
using MlxArray = mlx::core::array;

// Shared types defined by the generated header after this file is included.
enum class DType : std::uint8_t;
enum class UnaryOp : std::uint8_t;
enum class BinaryOp : std::uint8_t;
enum class ReduceOp : std::uint8_t;
enum class ScanOp : std::uint8_t;
enum class AttentionMask : std::uint8_t;
struct DeviceSpec;
struct StreamSpec;
struct NamedArray;
struct MetadataEntry;
struct RustFn;

// A list of arrays that Rust can build and read.
struct ArrayVec {
  std::vector<array> v;
};

// A group of processes of MLX's distributed layer (a shared handle).
struct DistGroup {
  mlx::core::distributed::Group group;
};

// A function from arrays to arrays (a Rust closure, or one MLX derived from it).
struct ArrayFn {
  std::function<std::vector<array>(const std::vector<array>&)> f;
};

using ArrayPtr = std::unique_ptr<array>;
using ArrayVecPtr = std::unique_ptr<ArrayVec>;

// Conversions shared by the .cc files.
mlx::core::Dtype to_mlx(DType dtype);
DType from_mlx(mlx::core::Dtype dtype);
ArrayPtr wrap(array a);
ArrayVecPtr wrap_vec(std::vector<array> v);
std::vector<int> to_ints(rust::Slice<const std::int32_t> s);
mlx::core::Shape to_shape(rust::Slice<const std::int32_t> s);

// array.cc
ArrayPtr array_from_bytes(rust::Slice<const std::uint8_t> data, rust::Slice<const std::int32_t> shape, DType dtype);
ArrayPtr array_scalar_f64(double value, DType dtype);
ArrayPtr array_scalar_i64(std::int64_t value, DType dtype);
ArrayPtr array_clone(const array& a);
std::size_t array_ndim(const array& a);
std::size_t array_size(const array& a);
std::size_t array_nbytes(const array& a);
rust::Vec<std::int32_t> array_shape(const array& a);
DType array_dtype(const array& a);
std::size_t array_id(const array& a);
void array_to_bytes(const array& a, rust::Slice<std::uint8_t> out);
ArrayPtr array_from_byte_parts(rust::Slice<const std::size_t> parts, DType dtype);
void array_to_byte_parts(const array& a, rust::Slice<const std::size_t> parts);
void array_eval(const array& a);
ArrayVecPtr array_vec_new();
void array_vec_push(ArrayVec& v, const array& a);
std::size_t array_vec_len(const ArrayVec& v);
ArrayPtr array_vec_get(const ArrayVec& v, std::size_t i);
void eval_all(const ArrayVec& v);
void async_eval_all(const ArrayVec& v);

// ops.cc
ArrayPtr unary(UnaryOp op, const array& a);
ArrayPtr binary(BinaryOp op, const array& a, const array& b);
ArrayPtr reduce(ReduceOp op, const array& a, rust::Slice<const std::int32_t> axes, bool all_axes, bool keepdims);
ArrayPtr var_std(const array& a, rust::Slice<const std::int32_t> axes, bool all_axes, bool keepdims, std::int32_t ddof, bool std_dev);
ArrayPtr arg_reduce(const array& a, std::int32_t axis, bool all_axes, bool keepdims, bool is_max);
ArrayPtr scan(ScanOp op, const array& a, std::int32_t axis, bool reverse, bool inclusive);
ArrayPtr astype(const array& a, DType dtype);
ArrayPtr view_as(const array& a, DType dtype);
ArrayPtr full(rust::Slice<const std::int32_t> shape, const array& value, DType dtype);
ArrayPtr arange(double start, double stop, double step, DType dtype);
ArrayPtr linspace(double start, double stop, std::int32_t num, DType dtype);
ArrayPtr eye(std::int32_t n, std::int32_t m, std::int32_t k, DType dtype);
ArrayPtr tri(std::int32_t n, std::int32_t m, std::int32_t k, DType dtype);
ArrayPtr tril(const array& a, std::int32_t k, bool upper);
ArrayPtr reshape(const array& a, rust::Slice<const std::int32_t> shape);
ArrayPtr transpose(const array& a, rust::Slice<const std::int32_t> axes, bool reverse_all);
ArrayPtr swapaxes(const array& a, std::int32_t axis1, std::int32_t axis2);
ArrayPtr moveaxis(const array& a, std::int32_t source, std::int32_t destination);
ArrayPtr expand_dims(const array& a, rust::Slice<const std::int32_t> axes);
ArrayPtr squeeze(const array& a, rust::Slice<const std::int32_t> axes, bool all_axes);
ArrayPtr flatten(const array& a, std::int32_t start_axis, std::int32_t end_axis);
ArrayPtr broadcast_to(const array& a, rust::Slice<const std::int32_t> shape);
ArrayPtr concatenate(const ArrayVec& arrays, std::int32_t axis);
ArrayPtr stack(const ArrayVec& arrays, std::int32_t axis);
ArrayVecPtr split_sections(const array& a, std::int32_t num_splits, std::int32_t axis);
ArrayVecPtr split_at(const array& a, rust::Slice<const std::int32_t> indices, std::int32_t axis);
ArrayPtr slice(const array& a, rust::Slice<const std::int32_t> start, rust::Slice<const std::int32_t> stop, rust::Slice<const std::int32_t> strides);
ArrayPtr slice_update(const array& a, const array& update, rust::Slice<const std::int32_t> start, rust::Slice<const std::int32_t> stop, rust::Slice<const std::int32_t> strides);
ArrayPtr pad(const array& a, rust::Slice<const std::int32_t> axes, rust::Slice<const std::int32_t> low, rust::Slice<const std::int32_t> high, const array& value);
ArrayPtr repeat(const array& a, std::int32_t repeats, std::int32_t axis, bool flat);
ArrayPtr tile(const array& a, rust::Slice<const std::int32_t> reps);
ArrayPtr roll(const array& a, std::int32_t shift, std::int32_t axis, bool flat);
ArrayPtr clip(const array& a, const array& lo, const array& hi, bool has_lo, bool has_hi);
ArrayPtr where_cond(const array& cond, const array& x, const array& y);
ArrayPtr take(const array& a, const array& indices, std::int32_t axis, bool flat);
ArrayPtr take_along_axis(const array& a, const array& indices, std::int32_t axis);
ArrayPtr put_along_axis(const array& a, const array& indices, const array& values, std::int32_t axis);
ArrayPtr scatter_add_axis(const array& a, const array& indices, const array& values, std::int32_t axis);
ArrayPtr scatter_add(const array& a, const ArrayVec& indices, const array& updates, rust::Slice<const std::int32_t> axes);
ArrayPtr sort(const array& a, std::int32_t axis, bool arg);
ArrayPtr partition(const array& a, std::int32_t kth, std::int32_t axis, bool arg);
ArrayPtr topk(const array& a, std::int32_t k, std::int32_t axis);
ArrayPtr addmm(const array& c, const array& a, const array& b, float alpha, float beta);
ArrayPtr norm(const array& a, double ord, rust::Slice<const std::int32_t> axes, bool all_axes, bool keepdims);
ArrayPtr gather_mm(const array& a, const array& b, const array& lhs_indices, const array& rhs_indices, bool has_lhs, bool has_rhs, bool sorted);
ArrayPtr gather_qmm(const array& x, const array& w, const array& scales, const array& biases, const array& lhs_indices, const array& rhs_indices, bool has_lhs, bool has_rhs, bool transpose, std::int32_t group_size, std::int32_t bits, bool sorted);
ArrayVecPtr quantize(const array& w, std::int32_t group_size, std::int32_t bits);
ArrayPtr dequantize(const array& w, const array& scales, const array& biases, std::int32_t group_size, std::int32_t bits);
ArrayPtr quantized_matmul(const array& x, const array& w, const array& scales, const array& biases, bool transpose, std::int32_t group_size, std::int32_t bits);
ArrayPtr array_equal(const array& a, const array& b, bool equal_nan);
ArrayPtr allclose(const array& a, const array& b, double rtol, double atol, bool equal_nan);
ArrayPtr nan_to_num(const array& a, float nan, float posinf, float neginf);
ArrayPtr round(const array& a, std::int32_t decimals);

// fast.cc
ArrayPtr fast_rms_norm(const array& x, const array& weight, bool has_weight, float eps);
ArrayPtr fast_layer_norm(const array& x, const array& weight, const array& bias, bool has_weight, bool has_bias, float eps);
ArrayPtr fast_rope(const array& x, std::int32_t dims, bool traditional, float base, float scale, std::int32_t offset);
ArrayPtr fast_rope_array_offset(const array& x, std::int32_t dims, bool traditional, float base, float scale, const array& offset);
ArrayPtr fast_sdpa(const array& q, const array& k, const array& v, float scale, AttentionMask mask_kind, const array& mask);

// cuda/matvec.cc (no_cuda.cc in the CPU build)
bool few_rows_linear_active();
ArrayPtr few_rows_linear(const array& x, const array& w);

// cuda/norm_rope.cc (no_cuda.cc in the CPU build)
bool norm_rope_heads_active();
ArrayPtr norm_rope_heads(const array& x, const array& q_weight, const array& k_weight, const array& offsets,
                         std::int32_t q_heads, std::int32_t k_heads, float eps, float base, float scale);

// random.cc
ArrayPtr random_key(std::uint64_t seed);
void random_seed(std::uint64_t seed);
ArrayPtr random_split(const array& key, std::int32_t num);
ArrayPtr random_uniform(const array& low, const array& high, rust::Slice<const std::int32_t> shape, DType dtype, const array& key, bool has_key);
ArrayPtr random_normal(rust::Slice<const std::int32_t> shape, DType dtype, float loc, float scale, const array& key, bool has_key);
ArrayPtr random_randint(const array& low, const array& high, rust::Slice<const std::int32_t> shape, DType dtype, const array& key, bool has_key);
ArrayPtr random_bernoulli(const array& p, rust::Slice<const std::int32_t> shape, const array& key, bool has_key);
ArrayPtr random_truncated_normal(const array& lower, const array& upper, rust::Slice<const std::int32_t> shape, DType dtype, const array& key, bool has_key);
ArrayPtr random_gumbel(rust::Slice<const std::int32_t> shape, DType dtype, const array& key, bool has_key);
ArrayPtr random_categorical(const array& logits, std::int32_t axis, std::int32_t num_samples, const array& key, bool has_key);
ArrayPtr random_permutation(std::int32_t n, const array& key, bool has_key);
ArrayPtr random_gumbel_rows(const array& keys, rust::Slice<const std::int32_t> shape, DType dtype);
ArrayPtr random_uniform_rows(const array& keys, rust::Slice<const std::int32_t> shape, DType dtype);
ArrayPtr random_split_rows(const array& keys, std::int32_t num);

// transforms.cc
std::unique_ptr<ArrayFn> array_fn_from_rust(rust::Box<RustFn> f);
ArrayVecPtr array_fn_call(const ArrayFn& f, const ArrayVec& inputs);
std::unique_ptr<ArrayFn> array_fn_compile(const ArrayFn& f, bool shapeless);
std::unique_ptr<ArrayFn> array_fn_checkpoint(const ArrayFn& f);
std::unique_ptr<ArrayFn> array_fn_custom_vjp(const ArrayFn& f, const ArrayFn& vjp);
ArrayVecPtr depends(const ArrayVec& inputs, const ArrayVec& dependencies);
ArrayVecPtr vjp(const ArrayFn& f, const ArrayVec& primals, const ArrayVec& cotangents, ArrayVec& outputs);
ArrayVecPtr jvp(const ArrayFn& f, const ArrayVec& primals, const ArrayVec& tangents, ArrayVec& outputs);
ArrayVecPtr value_and_grad(const ArrayFn& f, const ArrayVec& inputs, rust::Slice<const std::int32_t> argnums, ArrayVec& values);
void set_compile_enabled(bool enabled);

// io.cc
rust::Vec<NamedArray> load_safetensors(rust::Str path, rust::Vec<MetadataEntry>& metadata);
void save_safetensors(rust::Str path, const rust::Vec<rust::String>& names, const ArrayVec& arrays, const rust::Vec<MetadataEntry>& metadata);
ArrayPtr load_npy(rust::Str path);
void save_npy(rust::Str path, const array& a);

// runtime.cc
rust::String mlx_version();
DeviceSpec default_device();
void set_default_device(DeviceSpec device);
bool device_available(DeviceSpec device);
std::int32_t device_count(std::int32_t kind);
StreamSpec default_stream(DeviceSpec device);
StreamSpec new_stream(DeviceSpec device);
void set_default_stream(StreamSpec stream);
void synchronize(StreamSpec stream);
void synchronize_default();
std::size_t get_active_memory();
std::size_t get_peak_memory();
std::size_t get_cache_memory();
void reset_peak_memory();
void clear_cache();
std::size_t set_memory_limit(std::size_t limit);
std::size_t set_cache_limit(std::size_t limit);
void set_fast_paths(std::uint32_t bits);
std::uint32_t fast_paths_enabled();
bool cuda_direct_copies_active();
bool cuda_pin_host(std::size_t address, std::size_t bytes);
void cuda_unpin_host(std::size_t address);

// distributed.cc
bool distributed_is_available(rust::Str backend);
std::unique_ptr<DistGroup> distributed_init(bool strict, rust::Str backend);
std::int32_t group_rank(const DistGroup& g);
std::int32_t group_size(const DistGroup& g);
std::unique_ptr<DistGroup> group_split(const DistGroup& g, std::int32_t color, std::int32_t key);
std::unique_ptr<DistGroup> group_clone(const DistGroup& g);
ArrayPtr dist_all_sum(const array& a, const DistGroup& g);
ArrayPtr dist_all_max(const array& a, const DistGroup& g);
ArrayPtr dist_all_min(const array& a, const DistGroup& g);
ArrayPtr dist_all_gather(const array& a, const DistGroup& g);
ArrayPtr dist_sum_scatter(const array& a, const DistGroup& g);
ArrayPtr dist_send(const array& a, std::int32_t dst, const DistGroup& g);
ArrayPtr dist_recv(rust::Slice<const std::int32_t> shape, DType dtype, std::int32_t src, const DistGroup& g);
ArrayPtr dist_recv_like(const array& like, std::int32_t src, const DistGroup& g);

}  // namespace mlx_bridge
