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

// Gradient checkpointing whose recomputation waits for the cotangents.
// MLX's own checkpoint makes the recomputed forward depend only on the
// outputs, so the scheduler may run every checkpoint's recomputation early
// and keep all of them alive until the backward pass reaches them, which
// gives back most of the memory checkpointing was meant to save. Depending on
// the cotangents too runs each recomputation just before the backward step
// that uses it.
std::unique_ptr<ArrayFn> array_fn_checkpoint(const ArrayFn& f) {
  auto fun = f.f;
  auto vjp_fun = [fun](const std::vector<array>& primals, const std::vector<array>& cotangents,
                       const std::vector<array>& outputs) -> std::vector<array> {
    std::vector<array> deps(cotangents);
    deps.insert(deps.end(), outputs.begin(), outputs.end());
    auto [unused, vjps] = mx::vjp(fun, mx::depends(primals, deps), cotangents);
    return vjps;
  };
  auto out = std::make_unique<ArrayFn>();
  out->f = mx::custom_vjp(fun, vjp_fun);
  return out;
}

// `f` with a vector-Jacobian product of the caller's: `vjp` receives
// primals, cotangents and outputs as one list followed by a scalar int32
// array holding the number of primals, and returns one array per primal.
std::unique_ptr<ArrayFn> array_fn_custom_vjp(const ArrayFn& f, const ArrayFn& vjp) {
  auto vjp_f = vjp.f;
  auto vjp_fun = [vjp_f](const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<array>& outputs) -> std::vector<array> {
    std::vector<array> flat;
    flat.reserve(primals.size() + cotangents.size() + outputs.size() + 1);
    flat.insert(flat.end(), primals.begin(), primals.end());
    flat.insert(flat.end(), cotangents.begin(), cotangents.end());
    flat.insert(flat.end(), outputs.begin(), outputs.end());
    flat.push_back(array(static_cast<int>(primals.size()), mx::int32));
    return vjp_f(flat);
  };
  auto out = std::make_unique<ArrayFn>();
  out->f = mx::custom_vjp(f.f, vjp_fun);
  return out;
}

ArrayVecPtr depends(const ArrayVec& inputs, const ArrayVec& dependencies) {
  return wrap_vec(mx::depends(inputs.v, dependencies.v));
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
