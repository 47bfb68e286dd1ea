// Function transformations over Rust closures: vjp, jvp, value_and_grad,
// compile and checkpoint. A Rust closure's error (or caught panic) arrives
// here as rust::Error, an exception MLX lets through to the caller.
#include "mlx-ffi/src/bridge.rs.h"

namespace mx = mlx::core;

namespace mlx_bridge {

std::unique_ptr<ArrayFn> array_fn_from_rust(rust::Box<RustFn> f) {
  // std::function must be copyable; share the boxed closure.
  auto shared = std::make_shared<rust::Box<RustFn>>(std::move(f));
  auto out = std::make_unique<ArrayFn>();
  out->f = [shared](const std::vector<array>& inputs) {
    ArrayVec in{inputs};
    ArrayVec out_v;
    rust_fn_call(**shared, in, out_v);
    return out_v.v;
  };
  return out;
}

ArrayVecPtr array_fn_call(const ArrayFn& f, const ArrayVec& inputs) { return wrap_vec(f.f(inputs.v)); }

std::unique_ptr<ArrayFn> array_fn_compile(const ArrayFn& f, bool shapeless) {
  auto out = std::make_unique<ArrayFn>();
  out->f = mx::compile(f.f, shapeless);
  return out;
}

std::unique_ptr<ArrayFn> array_fn_checkpoint(const ArrayFn& f) {
  auto out = std::make_unique<ArrayFn>();
  out->f = mx::checkpoint(f.f);
  return out;
}

ArrayVecPtr vjp(const ArrayFn& f, const ArrayVec& primals, const ArrayVec& cotangents, ArrayVec& outputs) {
  auto [outs, grads] = mx::vjp(f.f, primals.v, cotangents.v);
  outputs.v = std::move(outs);
  return wrap_vec(std::move(grads));
}

ArrayVecPtr jvp(const ArrayFn& f, const ArrayVec& primals, const ArrayVec& tangents, ArrayVec& outputs) {
  auto [outs, tans] = mx::jvp(f.f, primals.v, tangents.v);
  outputs.v = std::move(outs);
  return wrap_vec(std::move(tans));
}

ArrayVecPtr value_and_grad(const ArrayFn& f, const ArrayVec& inputs, rust::Slice<const std::int32_t> argnums,
                           ArrayVec& values) {
  auto vg = mx::value_and_grad(f.f, to_ints(argnums));
  auto [vals, grads] = vg(inputs.v);
  values.v = std::move(vals);
  return wrap_vec(std::move(grads));
}

void set_compile_enabled(bool enabled) {
  if (enabled) {
    mx::enable_compile();
  } else {
    mx::disable_compile();
  }
}

}  // namespace mlx_bridge
