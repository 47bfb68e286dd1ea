// Random number generation with explicit (optional) keys.
#include "mlx-ffi/src/bridge.rs.h"

namespace mx = mlx::core;

namespace mlx_bridge {

namespace {
std::optional<array> opt_key(const array& key, bool has_key) {
  if (has_key) return key;
  return std::nullopt;
}
}  // namespace

ArrayPtr random_key(std::uint64_t seed) { return wrap(mx::random::key(seed)); }
void random_seed(std::uint64_t seed) { mx::random::seed(seed); }
ArrayPtr random_split(const array& key, std::int32_t num) { return wrap(mx::random::split(key, num)); }

ArrayPtr random_uniform(const array& low, const array& high, rust::Slice<const std::int32_t> shape, DType dtype,
                        const array& key, bool has_key) {
  return wrap(mx::random::uniform(low, high, to_shape(shape), to_mlx(dtype), opt_key(key, has_key)));
}

ArrayPtr random_normal(rust::Slice<const std::int32_t> shape, DType dtype, float loc, float scale,
                       const array& key, bool has_key) {
  return wrap(mx::random::normal(to_shape(shape), to_mlx(dtype), loc, scale, opt_key(key, has_key)));
}

ArrayPtr random_randint(const array& low, const array& high, rust::Slice<const std::int32_t> shape, DType dtype,
                        const array& key, bool has_key) {
  return wrap(mx::random::randint(low, high, to_shape(shape), to_mlx(dtype), opt_key(key, has_key)));
}

ArrayPtr random_bernoulli(const array& p, rust::Slice<const std::int32_t> shape, const array& key,
                          bool has_key) {
  return wrap(mx::random::bernoulli(p, to_shape(shape), opt_key(key, has_key)));
}

ArrayPtr random_truncated_normal(const array& lower, const array& upper, rust::Slice<const std::int32_t> shape,
                                 DType dtype, const array& key, bool has_key) {
  return wrap(mx::random::truncated_normal(lower, upper, to_shape(shape), to_mlx(dtype), opt_key(key, has_key)));
}

ArrayPtr random_gumbel(rust::Slice<const std::int32_t> shape, DType dtype, const array& key, bool has_key) {
  return wrap(mx::random::gumbel(to_shape(shape), to_mlx(dtype), opt_key(key, has_key)));
}

ArrayPtr random_categorical(const array& logits, std::int32_t axis, std::int32_t num_samples, const array& key,
                            bool has_key) {
  if (num_samples <= 0) return wrap(mx::random::categorical(logits, axis, opt_key(key, has_key)));
  return wrap(mx::random::categorical(logits, axis, num_samples, opt_key(key, has_key)));
}

// One draw per row of `keys` ([B, 2]): row i of the result ([B, ...shape])
// is the single-key draw `f(keys[i])`. MLX's random front end takes one
// key only; its RandomBits primitive batches keys under vmap.
namespace {
array vmap_rows(const array& keys, std::function<array(const array&)> f) {
  return mx::vmap(f, 0, 0)(keys);
}
}  // namespace

ArrayPtr random_gumbel_rows(const array& keys, rust::Slice<const std::int32_t> shape, DType dtype) {
  auto s = to_shape(shape);
  auto t = to_mlx(dtype);
  return wrap(vmap_rows(keys, [s, t](const array& k) { return mx::random::gumbel(s, t, k); }));
}

ArrayPtr random_uniform_rows(const array& keys, rust::Slice<const std::int32_t> shape, DType dtype) {
  auto s = to_shape(shape);
  auto t = to_mlx(dtype);
  return wrap(vmap_rows(keys, [s, t](const array& k) {
    return mx::random::uniform(array(0.0f, t), array(1.0f, t), s, t, k);
  }));
}

ArrayPtr random_split_rows(const array& keys, std::int32_t num) {
  return wrap(vmap_rows(keys, [num](const array& k) { return mx::random::split(k, num); }));
}

ArrayPtr random_permutation(std::int32_t n, const array& key, bool has_key) {
  return wrap(mx::random::permutation(n, opt_key(key, has_key)));
}

}  // namespace mlx_bridge
