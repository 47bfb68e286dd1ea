// Array operations: thin, exception-propagating wrappers over mlx::core.
#include "mlx-ffi/src/bridge.rs.h"

#include <stdexcept>

namespace mx = mlx::core;

namespace mlx_bridge {

ArrayPtr unary(UnaryOp op, const array& a) {
  switch (op) {
    case UnaryOp::Abs: return wrap(mx::abs(a));
    case UnaryOp::Negative: return wrap(mx::negative(a));
    case UnaryOp::Sign: return wrap(mx::sign(a));
    case UnaryOp::LogicalNot: return wrap(mx::logical_not(a));
    case UnaryOp::Reciprocal: return wrap(mx::reciprocal(a));
    case UnaryOp::Floor: return wrap(mx::floor(a));
    case UnaryOp::Ceil: return wrap(mx::ceil(a));
    case UnaryOp::Square: return wrap(mx::square(a));
    case UnaryOp::Sqrt: return wrap(mx::sqrt(a));
    case UnaryOp::Rsqrt: return wrap(mx::rsqrt(a));
    case UnaryOp::Exp: return wrap(mx::exp(a));
    case UnaryOp::Expm1: return wrap(mx::expm1(a));
    case UnaryOp::Log: return wrap(mx::log(a));
    case UnaryOp::Log2: return wrap(mx::log2(a));
    case UnaryOp::Log10: return wrap(mx::log10(a));
    case UnaryOp::Log1p: return wrap(mx::log1p(a));
    case UnaryOp::Sin: return wrap(mx::sin(a));
    case UnaryOp::Cos: return wrap(mx::cos(a));
    case UnaryOp::Tan: return wrap(mx::tan(a));
    case UnaryOp::Tanh: return wrap(mx::tanh(a));
    case UnaryOp::Sinh: return wrap(mx::sinh(a));
    case UnaryOp::Cosh: return wrap(mx::cosh(a));
    case UnaryOp::ArcSin: return wrap(mx::arcsin(a));
    case UnaryOp::ArcCos: return wrap(mx::arccos(a));
    case UnaryOp::ArcTan: return wrap(mx::arctan(a));
    case UnaryOp::Sigmoid: return wrap(mx::sigmoid(a));
    case UnaryOp::Erf: return wrap(mx::erf(a));
    case UnaryOp::ErfInv: return wrap(mx::erfinv(a));
    case UnaryOp::StopGradient: return wrap(mx::stop_gradient(a));
    case UnaryOp::IsNan: return wrap(mx::isnan(a));
    case UnaryOp::IsInf: return wrap(mx::isinf(a));
    case UnaryOp::IsFinite: return wrap(mx::isfinite(a));
    case UnaryOp::Copy: return wrap(mx::copy(a));
    case UnaryOp::Contiguous: return wrap(mx::contiguous(a));
  }
  throw std::invalid_argument("unknown unary op");
}

ArrayPtr binary(BinaryOp op, const array& a, const array& b) {
  switch (op) {
    case BinaryOp::Add: return wrap(mx::add(a, b));
    case BinaryOp::Subtract: return wrap(mx::subtract(a, b));
    case BinaryOp::Multiply: return wrap(mx::multiply(a, b));
    case BinaryOp::Divide: return wrap(mx::divide(a, b));
    case BinaryOp::FloorDivide: return wrap(mx::floor_divide(a, b));
    case BinaryOp::Remainder: return wrap(mx::remainder(a, b));
    case BinaryOp::Power: return wrap(mx::power(a, b));
    case BinaryOp::Maximum: return wrap(mx::maximum(a, b));
    case BinaryOp::Minimum: return wrap(mx::minimum(a, b));
    case BinaryOp::LogAddExp: return wrap(mx::logaddexp(a, b));
    case BinaryOp::ArcTan2: return wrap(mx::arctan2(a, b));
    case BinaryOp::Equal: return wrap(mx::equal(a, b));
    case BinaryOp::NotEqual: return wrap(mx::not_equal(a, b));
    case BinaryOp::Less: return wrap(mx::less(a, b));
    case BinaryOp::LessEqual: return wrap(mx::less_equal(a, b));
    case BinaryOp::Greater: return wrap(mx::greater(a, b));
    case BinaryOp::GreaterEqual: return wrap(mx::greater_equal(a, b));
    case BinaryOp::LogicalAnd: return wrap(mx::logical_and(a, b));
    case BinaryOp::LogicalOr: return wrap(mx::logical_or(a, b));
    case BinaryOp::BitwiseAnd: return wrap(mx::bitwise_and(a, b));
    case BinaryOp::BitwiseOr: return wrap(mx::bitwise_or(a, b));
    case BinaryOp::BitwiseXor: return wrap(mx::bitwise_xor(a, b));
    case BinaryOp::LeftShift: return wrap(mx::left_shift(a, b));
    case BinaryOp::RightShift: return wrap(mx::right_shift(a, b));
    case BinaryOp::Matmul: return wrap(mx::matmul(a, b));
    case BinaryOp::Outer: return wrap(mx::outer(a, b));
    case BinaryOp::Inner: return wrap(mx::inner(a, b));
    case BinaryOp::Kron: return wrap(mx::kron(a, b));
  }
  throw std::invalid_argument("unknown binary op");
}

ArrayPtr reduce(ReduceOp op, const array& a, rust::Slice<const std::int32_t> axes_s, bool all_axes,
                bool keepdims) {
  std::vector<int> axes;
  if (all_axes) {
    for (int i = 0; i < static_cast<int>(a.ndim()); ++i) axes.push_back(i);
  } else {
    axes = to_ints(axes_s);
  }
  switch (op) {
    case ReduceOp::Sum: return wrap(mx::sum(a, axes, keepdims));
    case ReduceOp::Mean: return wrap(mx::mean(a, axes, keepdims));
    case ReduceOp::Prod: return wrap(mx::prod(a, axes, keepdims));
    case ReduceOp::Max: return wrap(mx::max(a, axes, keepdims));
    case ReduceOp::Min: return wrap(mx::min(a, axes, keepdims));
    case ReduceOp::All: return wrap(mx::all(a, axes, keepdims));
    case ReduceOp::Any: return wrap(mx::any(a, axes, keepdims));
    case ReduceOp::LogSumExp: return wrap(mx::logsumexp(a, axes, keepdims));
    case ReduceOp::Softmax: return wrap(mx::softmax(a, axes, false));
    case ReduceOp::SoftmaxPrecise: return wrap(mx::softmax(a, axes, true));
  }
  throw std::invalid_argument("unknown reduction");
}

ArrayPtr var_std(const array& a, rust::Slice<const std::int32_t> axes_s, bool all_axes, bool keepdims,
                 std::int32_t ddof, bool std_dev) {
  if (all_axes) {
    return wrap(std_dev ? mx::std(a, keepdims, ddof) : mx::var(a, keepdims, ddof));
  }
  auto axes = to_ints(axes_s);
  return wrap(std_dev ? mx::std(a, axes, keepdims, ddof) : mx::var(a, axes, keepdims, ddof));
}

ArrayPtr arg_reduce(const array& a, std::int32_t axis, bool all_axes, bool keepdims, bool is_max) {
  if (all_axes) return wrap(is_max ? mx::argmax(a, keepdims) : mx::argmin(a, keepdims));
  return wrap(is_max ? mx::argmax(a, axis, keepdims) : mx::argmin(a, axis, keepdims));
}

ArrayPtr scan(ScanOp op, const array& a, std::int32_t axis, bool reverse, bool inclusive) {
  switch (op) {
    case ScanOp::CumSum: return wrap(mx::cumsum(a, axis, reverse, inclusive));
    case ScanOp::CumProd: return wrap(mx::cumprod(a, axis, reverse, inclusive));
    case ScanOp::CumMax: return wrap(mx::cummax(a, axis, reverse, inclusive));
    case ScanOp::CumMin: return wrap(mx::cummin(a, axis, reverse, inclusive));
    case ScanOp::LogCumSumExp: return wrap(mx::logcumsumexp(a, axis, reverse, inclusive));
  }
  throw std::invalid_argument("unknown scan");
}

ArrayPtr astype(const array& a, DType dtype) { return wrap(mx::astype(a, to_mlx(dtype))); }
ArrayPtr view_as(const array& a, DType dtype) { return wrap(mx::view(a, to_mlx(dtype))); }

ArrayPtr full(rust::Slice<const std::int32_t> shape, const array& value, DType dtype) {
  return wrap(mx::full(to_shape(shape), value, to_mlx(dtype)));
}

ArrayPtr arange(double start, double stop, double step, DType dtype) {
  return wrap(mx::arange(start, stop, step, to_mlx(dtype)));
}

ArrayPtr linspace(double start, double stop, std::int32_t num, DType dtype) {
  return wrap(mx::linspace(start, stop, num, to_mlx(dtype)));
}

ArrayPtr eye(std::int32_t n, std::int32_t m, std::int32_t k, DType dtype) {
  return wrap(mx::eye(n, m, k, to_mlx(dtype)));
}

ArrayPtr tri(std::int32_t n, std::int32_t m, std::int32_t k, DType dtype) {
  return wrap(mx::tri(n, m, k, to_mlx(dtype)));
}

ArrayPtr tril(const array& a, std::int32_t k, bool upper) {
  return wrap(upper ? mx::triu(a, k) : mx::tril(a, k));
}

ArrayPtr reshape(const array& a, rust::Slice<const std::int32_t> shape) {
  return wrap(mx::reshape(a, to_shape(shape)));
}

ArrayPtr transpose(const array& a, rust::Slice<const std::int32_t> axes, bool reverse_all) {
  if (reverse_all) return wrap(mx::transpose(a));
  return wrap(mx::transpose(a, to_ints(axes)));
}

ArrayPtr swapaxes(const array& a, std::int32_t axis1, std::int32_t axis2) {
  return wrap(mx::swapaxes(a, axis1, axis2));
}

ArrayPtr moveaxis(const array& a, std::int32_t source, std::int32_t destination) {
  return wrap(mx::moveaxis(a, source, destination));
}

ArrayPtr expand_dims(const array& a, rust::Slice<const std::int32_t> axes) {
  return wrap(mx::expand_dims(a, to_ints(axes)));
}

ArrayPtr squeeze(const array& a, rust::Slice<const std::int32_t> axes, bool all_axes) {
  if (all_axes) return wrap(mx::squeeze(a));
  return wrap(mx::squeeze(a, to_ints(axes)));
}

ArrayPtr flatten(const array& a, std::int32_t start_axis, std::int32_t end_axis) {
  return wrap(mx::flatten(a, start_axis, end_axis));
}

ArrayPtr broadcast_to(const array& a, rust::Slice<const std::int32_t> shape) {
  return wrap(mx::broadcast_to(a, to_shape(shape)));
}

ArrayPtr concatenate(const ArrayVec& arrays, std::int32_t axis) {
  return wrap(mx::concatenate(arrays.v, axis));
}

ArrayPtr stack(const ArrayVec& arrays, std::int32_t axis) { return wrap(mx::stack(arrays.v, axis)); }

ArrayVecPtr split_sections(const array& a, std::int32_t num_splits, std::int32_t axis) {
  return wrap_vec(mx::split(a, num_splits, axis));
}

ArrayVecPtr split_at(const array& a, rust::Slice<const std::int32_t> indices, std::int32_t axis) {
  return wrap_vec(mx::split(a, to_shape(indices), axis));
}

ArrayPtr slice(const array& a, rust::Slice<const std::int32_t> start, rust::Slice<const std::int32_t> stop,
               rust::Slice<const std::int32_t> strides) {
  return wrap(mx::slice(a, to_shape(start), to_shape(stop), to_shape(strides)));
}

ArrayPtr slice_update(const array& a, const array& update, rust::Slice<const std::int32_t> start,
                      rust::Slice<const std::int32_t> stop, rust::Slice<const std::int32_t> strides) {
  return wrap(mx::slice_update(a, update, to_shape(start), to_shape(stop), to_shape(strides)));
}

ArrayPtr pad(const array& a, rust::Slice<const std::int32_t> axes, rust::Slice<const std::int32_t> low,
             rust::Slice<const std::int32_t> high, const array& value) {
  return wrap(mx::pad(a, to_ints(axes), to_shape(low), to_shape(high), value));
}

ArrayPtr repeat(const array& a, std::int32_t repeats, std::int32_t axis, bool flat) {
  if (flat) return wrap(mx::repeat(a, repeats));
  return wrap(mx::repeat(a, repeats, axis));
}

ArrayPtr tile(const array& a, rust::Slice<const std::int32_t> reps) { return wrap(mx::tile(a, to_ints(reps))); }

ArrayPtr roll(const array& a, std::int32_t shift, std::int32_t axis, bool flat) {
  if (flat) return wrap(mx::roll(a, shift));
  return wrap(mx::roll(a, shift, axis));
}

ArrayPtr clip(const array& a, const array& lo, const array& hi, bool has_lo, bool has_hi) {
  std::optional<array> l, h;
  if (has_lo) l = lo;
  if (has_hi) h = hi;
  return wrap(mx::clip(a, l, h));
}

ArrayPtr where_cond(const array& cond, const array& x, const array& y) { return wrap(mx::where(cond, x, y)); }

ArrayPtr take(const array& a, const array& indices, std::int32_t axis, bool flat) {
  if (flat) return wrap(mx::take(a, indices));
  return wrap(mx::take(a, indices, axis));
}

ArrayPtr take_along_axis(const array& a, const array& indices, std::int32_t axis) {
  return wrap(mx::take_along_axis(a, indices, axis));
}

ArrayPtr put_along_axis(const array& a, const array& indices, const array& values, std::int32_t axis) {
  return wrap(mx::put_along_axis(a, indices, values, axis));
}

ArrayPtr scatter_add_axis(const array& a, const array& indices, const array& values, std::int32_t axis) {
  return wrap(mx::scatter_add_axis(a, indices, values, axis));
}

ArrayPtr scatter_add(const array& a, const ArrayVec& indices, const array& updates,
                     rust::Slice<const std::int32_t> axes) {
  return wrap(mx::scatter_add(a, indices.v, updates, to_ints(axes)));
}

ArrayPtr sort(const array& a, std::int32_t axis, bool arg) {
  return wrap(arg ? mx::argsort(a, axis) : mx::sort(a, axis));
}

ArrayPtr partition(const array& a, std::int32_t kth, std::int32_t axis, bool arg) {
  return wrap(arg ? mx::argpartition(a, kth, axis) : mx::partition(a, kth, axis));
}

ArrayPtr topk(const array& a, std::int32_t k, std::int32_t axis) { return wrap(mx::topk(a, k, axis)); }

ArrayPtr addmm(const array& c, const array& a, const array& b, float alpha, float beta) {
  return wrap(mx::addmm(c, a, b, alpha, beta));
}

ArrayPtr norm(const array& a, double ord, rust::Slice<const std::int32_t> axes, bool all_axes, bool keepdims) {
  if (all_axes) return wrap(mx::linalg::norm(a, ord, std::nullopt, keepdims));
  return wrap(mx::linalg::norm(a, ord, to_ints(axes), keepdims));
}

ArrayPtr gather_mm(const array& a, const array& b, const array& lhs_indices, const array& rhs_indices,
                   bool has_lhs, bool has_rhs, bool sorted) {
  std::optional<array> l, r;
  if (has_lhs) l = lhs_indices;
  if (has_rhs) r = rhs_indices;
  return wrap(mx::gather_mm(a, b, l, r, sorted));
}

ArrayPtr gather_qmm(const array& x, const array& w, const array& scales, const array& biases,
                    const array& lhs_indices, const array& rhs_indices, bool has_lhs, bool has_rhs, bool transpose,
                    std::int32_t group_size, std::int32_t bits, bool sorted) {
  std::optional<array> l, r;
  if (has_lhs) l = lhs_indices;
  if (has_rhs) r = rhs_indices;
  return wrap(mx::gather_qmm(x, w, scales, biases, l, r, transpose, group_size, bits, "affine", std::nullopt, sorted));
}

ArrayVecPtr quantize(const array& w, std::int32_t group_size, std::int32_t bits) {
  return wrap_vec(mx::quantize(w, group_size, bits));
}

ArrayPtr dequantize(const array& w, const array& scales, const array& biases, std::int32_t group_size,
                    std::int32_t bits) {
  return wrap(mx::dequantize(w, scales, biases, group_size, bits));
}

ArrayPtr quantized_matmul(const array& x, const array& w, const array& scales, const array& biases,
                          bool transpose, std::int32_t group_size, std::int32_t bits) {
  return wrap(mx::quantized_matmul(x, w, scales, biases, transpose, group_size, bits));
}

ArrayPtr array_equal(const array& a, const array& b, bool equal_nan) {
  return wrap(mx::array_equal(a, b, equal_nan));
}

ArrayPtr allclose(const array& a, const array& b, double rtol, double atol, bool equal_nan) {
  return wrap(mx::allclose(a, b, rtol, atol, equal_nan));
}

ArrayPtr nan_to_num(const array& a, float nan, float posinf, float neginf) {
  return wrap(mx::nan_to_num(a, nan, posinf, neginf));
}

ArrayPtr round(const array& a, std::int32_t decimals) { return wrap(mx::round(a, decimals)); }

}  // namespace mlx_bridge
