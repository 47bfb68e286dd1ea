// Construction, inspection and read-back of arrays, and array lists.
#include "mlx-ffi/src/bridge.rs.h"

#include <cstring>
#include <stdexcept>

namespace mx = mlx::core;

namespace mlx_bridge {

mx::Dtype to_mlx(DType dtype) {
  switch (dtype) {
    case DType::Bool: return mx::bool_;
    case DType::U8: return mx::uint8;
    case DType::U16: return mx::uint16;
    case DType::U32: return mx::uint32;
    case DType::U64: return mx::uint64;
    case DType::I8: return mx::int8;
    case DType::I16: return mx::int16;
    case DType::I32: return mx::int32;
    case DType::I64: return mx::int64;
    case DType::F16: return mx::float16;
    case DType::F32: return mx::float32;
    case DType::F64: return mx::float64;
    case DType::BF16: return mx::bfloat16;
    case DType::C64: return mx::complex64;
  }
  throw std::invalid_argument("unknown dtype code");
}

DType from_mlx(mx::Dtype dtype) {
  switch (dtype.val()) {
    case mx::Dtype::Val::bool_: return DType::Bool;
    case mx::Dtype::Val::uint8: return DType::U8;
    case mx::Dtype::Val::uint16: return DType::U16;
    case mx::Dtype::Val::uint32: return DType::U32;
    case mx::Dtype::Val::uint64: return DType::U64;
    case mx::Dtype::Val::int8: return DType::I8;
    case mx::Dtype::Val::int16: return DType::I16;
    case mx::Dtype::Val::int32: return DType::I32;
    case mx::Dtype::Val::int64: return DType::I64;
    case mx::Dtype::Val::float16: return DType::F16;
    case mx::Dtype::Val::float32: return DType::F32;
    case mx::Dtype::Val::float64: return DType::F64;
    case mx::Dtype::Val::bfloat16: return DType::BF16;
    case mx::Dtype::Val::complex64: return DType::C64;
  }
  return DType::F32;
}

ArrayPtr wrap(array a) { return std::make_unique<array>(std::move(a)); }

ArrayVecPtr wrap_vec(std::vector<array> v) {
  auto out = std::make_unique<ArrayVec>();
  out->v = std::move(v);
  return out;
}

std::vector<int> to_ints(rust::Slice<const std::int32_t> s) {
  return std::vector<int>(s.begin(), s.end());
}

mx::Shape to_shape(rust::Slice<const std::int32_t> s) {
  return mx::Shape(s.begin(), s.end());
}

ArrayPtr array_from_bytes(rust::Slice<const std::uint8_t> data,
                          rust::Slice<const std::int32_t> shape, DType dtype) {
  auto mdtype = to_mlx(dtype);
  std::size_t count = 1;
  for (auto d : shape) {
    if (d < 0) throw std::invalid_argument("[array] negative dimension in shape");
    count *= static_cast<std::size_t>(d);
  }
  if (count * mdtype.size() != data.size()) {
    throw std::invalid_argument("[array] " + std::to_string(data.size()) +
                                " bytes do not fill a shape of " + std::to_string(count) +
                                " elements of " + std::to_string(mdtype.size()) + " bytes");
  }
  // MLX may keep the pointer (no-copy backends) or copy it; either way it
  // owns this buffer and frees it through the deleter.
  auto* buffer = new std::uint8_t[data.size() == 0 ? 1 : data.size()];
  if (data.size() > 0) std::memcpy(buffer, data.data(), data.size());
  return wrap(array(static_cast<void*>(buffer), to_shape(shape), mdtype,
                    [](void* p) { delete[] static_cast<std::uint8_t*>(p); }));
}

// Scalars are built already evaluated on the host (no lazy conversion op):
// an op on the CPU stream inside a GPU graph would make the GPU wait for the
// CPU at every use. Floats go through `float` as MLX Python's scalars do.
ArrayPtr array_scalar_f64(double value, DType dtype) {
  auto t = to_mlx(dtype);
  if (t == mx::float64) return wrap(array(value, t));
  if (mx::issubdtype(t, mx::floating)) return wrap(array(static_cast<float>(value), t));
  return wrap(array(value, t));
}

ArrayPtr array_scalar_i64(std::int64_t value, DType dtype) {
  return wrap(array(value, to_mlx(dtype)));
}

ArrayPtr array_clone(const array& a) { return std::make_unique<array>(a); }
std::size_t array_ndim(const array& a) { return a.ndim(); }
std::size_t array_size(const array& a) { return a.size(); }
std::size_t array_nbytes(const array& a) { return a.nbytes(); }

rust::Vec<std::int32_t> array_shape(const array& a) {
  rust::Vec<std::int32_t> out;
  out.reserve(a.ndim());
  for (auto d : a.shape()) out.push_back(d);
  return out;
}

DType array_dtype(const array& a) { return from_mlx(a.dtype()); }
std::size_t array_id(const array& a) { return a.id(); }

void array_to_bytes(const array& a, rust::Slice<std::uint8_t> out) {
  // Waits for `a` only: an array already queued with async_eval is read as
  // soon as its own step is done, without queueing anything behind the work
  // submitted after it.
  array c = a;
  c.eval();
  if (!(c.flags().row_contiguous && c.data_size() == c.size())) {
    // Views (transposes, broadcasts, strided slices) are made row-contiguous
    // first so the bytes are in logical order.
    c = mx::contiguous(c);
    c.eval();
  }
  if (c.nbytes() != out.size()) {
    throw std::invalid_argument("[to_bytes] destination holds " + std::to_string(out.size()) +
                                " bytes, the array " + std::to_string(c.nbytes()));
  }
  if (out.size() > 0) std::memcpy(out.data(), c.data<void>(), out.size());
}

void array_eval(const array& a) {
  array copy = a;
  copy.eval();
}

ArrayVecPtr array_vec_new() { return std::make_unique<ArrayVec>(); }
void array_vec_push(ArrayVec& v, const array& a) { v.v.push_back(a); }
std::size_t array_vec_len(const ArrayVec& v) { return v.v.size(); }

ArrayPtr array_vec_get(const ArrayVec& v, std::size_t i) {
  if (i >= v.v.size()) throw std::out_of_range("array list index out of range");
  return std::make_unique<array>(v.v[i]);
}

void eval_all(const ArrayVec& v) { mx::eval(v.v); }
void async_eval_all(const ArrayVec& v) { mx::async_eval(v.v); }

}  // namespace mlx_bridge
