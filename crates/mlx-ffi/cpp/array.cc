// Construction, inspection and read-back of arrays, and array lists.
#include "mlx-ffi/src/bridge.rs.h"
#include "cuda_transfer.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

namespace mx = mlx::core;

namespace mlx_bridge {

namespace {

// How many threads copy `n` bytes: one per 16 MiB, at most 8 and at most
// the hardware's threads. Small copies (scalars, token ids, every step of
// decoding) return before asking for the hardware's thread count, which
// glibc reads from sysfs (an open, a read and a close) on every call; the
// count is read once.
std::size_t copy_threads(std::size_t n) {
  constexpr std::size_t kPerThread = 16u << 20;
  if (n < 2 * kPerThread) return 1;
  static const std::size_t hw = std::max(1u, std::thread::hardware_concurrency());
  return std::min<std::size_t>({hw, 8, n / kPerThread});
}

// Copies `n` bytes; large copies (optimizer state moving between MLX and
// host memory) are split over up to 8 threads, as one thread's memcpy and
// page faults cannot keep up with the memory system. Falls back to copying
// on the calling thread when no thread can be started.
void copy_bytes(void* dst, const void* src, std::size_t n) {
  std::size_t threads = copy_threads(n);
  auto* d = static_cast<char*>(dst);
  auto* s = static_cast<const char*>(src);
  if (threads <= 1) {
    std::memcpy(d, s, n);
    return;
  }
  std::size_t per = (n + threads - 1) / threads;
  std::vector<std::thread> pool;
  std::size_t done = per;  // the calling thread copies the first part
  try {
    for (std::size_t t = 1; t < threads; ++t) {
      std::size_t begin = t * per;
      std::size_t end = std::min(n, begin + per);
      if (begin >= end) break;
      pool.emplace_back([=] { std::memcpy(d + begin, s + begin, end - begin); });
      done = end;
    }
  } catch (const std::system_error&) {
    // Whatever no thread took is copied below.
  }
  std::memcpy(d, s, std::min(n, per));
  if (done < n) std::memcpy(d + done, s + done, n - done);
  for (auto& th : pool) th.join();
}

// Copies (destination, source, length) triples, spread over up to 8
// threads by bytes when there is enough to copy; one large triple is split
// by copy_bytes instead.
struct Copy {
  char* dst;
  const char* src;
  std::size_t n;
};

void copy_all(const std::vector<Copy>& copies) {
  std::size_t total = 0;
  for (auto& c : copies) total += c.n;
  std::size_t threads = copy_threads(total);
  if (threads <= 1 || copies.size() < threads) {
    for (auto& c : copies) copy_bytes(c.dst, c.src, c.n);
    return;
  }
  // Contiguous runs of triples of about total / threads bytes each.
  std::vector<std::pair<std::size_t, std::size_t>> runs;
  std::size_t begin = 0, bytes = 0, target = (total + threads - 1) / threads;
  for (std::size_t i = 0; i < copies.size(); ++i) {
    bytes += copies[i].n;
    if (bytes >= target || i + 1 == copies.size()) {
      runs.emplace_back(begin, i + 1);
      begin = i + 1;
      bytes = 0;
    }
  }
  auto run = [&copies](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) std::memcpy(copies[i].dst, copies[i].src, copies[i].n);
  };
  std::vector<std::thread> pool;
  std::size_t started = 1;
  try {
    for (; started < runs.size(); ++started) {
      pool.emplace_back(run, runs[started].first, runs[started].second);
    }
  } catch (const std::system_error&) {
    // Runs no thread took are copied below.
  }
  run(runs[0].first, runs[0].second);
  for (std::size_t r = started; r < runs.size(); ++r) run(runs[r].first, runs[r].second);
  for (auto& th : pool) th.join();
}

// (address, length) pairs from a flat list.
std::vector<std::pair<std::uintptr_t, std::size_t>> pairs_of(rust::Slice<const std::size_t> parts) {
  if (parts.size() % 2 != 0) {
    throw std::invalid_argument("[byte parts] expected (address, length) pairs");
  }
  std::vector<std::pair<std::uintptr_t, std::size_t>> out;
  for (std::size_t i = 0; i < parts.size(); i += 2) out.emplace_back(parts[i], parts[i + 1]);
  return out;
}

// Under MLX's CUDA backend, a large array filled straight into device
// memory by the driver (see cuda_transfer.h); empty when that does not
// apply or a copy fails.
std::optional<mx::array> filled_on_device(
    const std::vector<std::pair<const char*, std::size_t>>& sources, const mx::Shape& shape,
    mx::Dtype dtype, std::size_t total) {
  auto direct = cuda::device_array(shape, dtype, total);
  if (!direct) return std::nullopt;
  std::size_t at = 0;
  for (auto& s : sources) {
    if (!cuda::copy(direct->bytes + at, s.first, s.second)) return std::nullopt;
    at += s.second;
  }
  if (!cuda::wait()) return std::nullopt;
  return std::move(direct->array);
}

// Under MLX's CUDA backend, copies the bytes of `c` (evaluated,
// row-contiguous) from its device buffer straight into the host ranges
// (address, length); false (the caller copies through MLX) when that does
// not apply or fails.
bool read_from_device(const mx::array& c,
                      const std::vector<std::pair<std::uintptr_t, std::size_t>>& ranges,
                      std::size_t total) {
  const char* base = cuda::device_bytes(c, total);
  if (base == nullptr) return false;
  std::size_t at = 0;
  for (auto& r : ranges) {
    if (!cuda::copy(reinterpret_cast<void*>(r.first), base + at, r.second)) return false;
    at += r.second;
  }
  return cuda::wait();
}

// An array of `shape` and `dtype` holding the byte ranges `sources` one
// after another, in a buffer of MLX's allocator (host-visible on every
// backend: unified memory under CUDA): one allocation and one copy.
mx::array filled_array(const std::vector<std::pair<const char*, std::size_t>>& sources,
                       mx::Shape shape, mx::Dtype dtype) {
  std::size_t total = 0;
  for (auto& s : sources) total += s.second;
  if (total == 0) {
    // MLX owns this placeholder and frees it through the deleter.
    auto* empty = new std::uint8_t[1];
    return mx::array(static_cast<void*>(empty), std::move(shape), dtype,
                     [](void* p) { delete[] static_cast<std::uint8_t*>(p); });
  }
  if (auto direct = filled_on_device(sources, shape, dtype, total)) return *direct;
  // `owned` frees the buffer if anything below throws.
  auto owned = mx::allocator::malloc(total);
  auto* base = static_cast<char*>(owned.buffer().raw_ptr());
  if (base == nullptr) {
    throw std::runtime_error("[array] could not allocate " + std::to_string(total) + " bytes");
  }
  std::vector<Copy> copies;
  std::size_t at = 0;
  for (auto& s : sources) {
    copies.push_back({base + at, s.first, s.second});
    at += s.second;
  }
  copy_all(copies);
  return mx::array(std::move(owned), std::move(shape), dtype);
}

// `a` evaluated and row-contiguous (views are copied so the bytes are in
// logical order), checked to hold `expected` bytes. Waits for `a` only: an
// array already queued with async_eval is read as soon as its own step is
// done, without queueing anything behind the work submitted after it.
mx::array readable(const mx::array& a, std::size_t expected, const char* op) {
  mx::array c = a;
  c.eval();
  if (!(c.flags().row_contiguous && c.data_size() == c.size())) {
    c = mx::contiguous(c);
    c.eval();
  }
  if (c.nbytes() != expected) {
    throw std::invalid_argument(std::string(op) + " destination holds " +
                                std::to_string(expected) + " bytes, the array " +
                                std::to_string(c.nbytes()));
  }
  return c;
}

}  // namespace

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
  std::vector<std::pair<const char*, std::size_t>> source = {
      {reinterpret_cast<const char*>(data.data()), data.size()}};
  return wrap(filled_array(source, to_shape(shape), mdtype));
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
  array c = readable(a, out.size(), "[to_bytes]");
  if (out.size() == 0) return;
  if (read_from_device(c, {{reinterpret_cast<std::uintptr_t>(out.data()), out.size()}},
                       out.size())) {
    return;
  }
  copy_bytes(out.data(), c.data<void>(), out.size());
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

namespace mlx_bridge {

ArrayPtr array_from_byte_parts(rust::Slice<const std::size_t> parts, DType dtype) {
  auto mdtype = to_mlx(dtype);
  std::vector<std::pair<const char*, std::size_t>> sources;
  std::size_t total = 0;
  for (auto& r : pairs_of(parts)) {
    sources.emplace_back(reinterpret_cast<const char*>(r.first), r.second);
    total += r.second;
  }
  if (total % mdtype.size() != 0) {
    throw std::invalid_argument("[from_byte_parts] " + std::to_string(total) +
                                " bytes are not whole elements of " +
                                std::to_string(mdtype.size()) + " bytes");
  }
  auto elements = static_cast<std::int32_t>(total / mdtype.size());
  return wrap(filled_array(sources, mx::Shape{elements}, mdtype));
}

void array_to_byte_parts(const array& a, rust::Slice<const std::size_t> parts) {
  auto ranges = pairs_of(parts);
  std::size_t total = 0;
  for (auto& r : ranges) total += r.second;
  array c = readable(a, total, "[to_byte_parts]");
  if (total == 0) return;
  if (read_from_device(c, ranges, total)) return;
  const char* base = c.data<char>();
  std::vector<Copy> copies;
  std::size_t at = 0;
  for (auto& r : ranges) {
    copies.push_back({reinterpret_cast<char*>(r.first), base + at, r.second});
    at += r.second;
  }
  copy_all(copies);
}

}  // namespace mlx_bridge
