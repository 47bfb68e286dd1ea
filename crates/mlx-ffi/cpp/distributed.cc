// MLX's distributed layer: groups and collective operations.
//
// Everything here forwards to `mlx::core::distributed`; MLX's exceptions
// (an unknown backend, a missing environment, a refused connection, an
// operation the backend lacks) reach Rust as `Err`.
#include "mlx-ffi/src/bridge.rs.h"

namespace mx = mlx::core;
namespace md = mlx::core::distributed;

namespace mlx_bridge {

namespace {
std::unique_ptr<DistGroup> wrap_group(md::Group group) {
  return std::make_unique<DistGroup>(DistGroup{std::move(group)});
}
}  // namespace

bool distributed_is_available(rust::Str backend) { return md::is_available(std::string(backend)); }

std::unique_ptr<DistGroup> distributed_init(bool strict, rust::Str backend) {
  return wrap_group(md::init(strict, std::string(backend)));
}

std::int32_t group_rank(const DistGroup& g) { return g.group.rank(); }
std::int32_t group_size(const DistGroup& g) { return g.group.size(); }

std::unique_ptr<DistGroup> group_split(const DistGroup& g, std::int32_t color, std::int32_t key) {
  return wrap_group(g.group.split(color, key));
}

std::unique_ptr<DistGroup> group_clone(const DistGroup& g) { return wrap_group(g.group); }

ArrayPtr dist_all_sum(const array& a, const DistGroup& g) { return wrap(md::all_sum(a, g.group)); }
ArrayPtr dist_all_max(const array& a, const DistGroup& g) { return wrap(md::all_max(a, g.group)); }
ArrayPtr dist_all_min(const array& a, const DistGroup& g) { return wrap(md::all_min(a, g.group)); }
ArrayPtr dist_all_gather(const array& a, const DistGroup& g) { return wrap(md::all_gather(a, g.group)); }
ArrayPtr dist_sum_scatter(const array& a, const DistGroup& g) { return wrap(md::sum_scatter(a, g.group)); }

ArrayPtr dist_send(const array& a, std::int32_t dst, const DistGroup& g) {
  return wrap(md::send(a, dst, g.group));
}

ArrayPtr dist_recv(rust::Slice<const std::int32_t> shape, DType dtype, std::int32_t src, const DistGroup& g) {
  return wrap(md::recv(to_shape(shape), to_mlx(dtype), src, g.group));
}

ArrayPtr dist_recv_like(const array& like, std::int32_t src, const DistGroup& g) {
  return wrap(md::recv_like(like, src, g.group));
}

}  // namespace mlx_bridge
