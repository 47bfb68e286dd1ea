#!/usr/bin/env python3
"""Time one training step of a small MLP in MLX Python, for comparison with
`cargo bench --bench nn_step` (benches/nn_step.rs).

The step is the same as the Rust bench's: MLP 784 -> 512 -> 512 -> 10 (ReLU),
batch 64, mean cross-entropy, AdamW (lr 1e-3, weight decay 0.01); forward,
backward and update, with `mx.eval` of the loss, the parameters and the
optimizer state inside the timed region. It is timed twice: plain (eager),
and with the whole step under `mx.compile` (parameters and optimizer state
captured as inputs and outputs, the usual MLX pattern).

Usage:

    /work/venv-ref/bin/python scripts/compare/nn_step_mlx.py [--steps 200] [--repeats 5] [--device cpu|gpu] [--mlx-lib DIR]

For a like-for-like comparison MLX Python must use the same `libmlx.so` and
BLAS as the Rust binary. By default the script re-runs itself with
`LD_LIBRARY_PATH` set to the MLX prefix that the workspace build prepared
(the newest `build/mlx-ffi-*/out/mlx-farm/mlx/lib` under
`$CARGO_TARGET_DIR` or `target/`, release first), whose BLAS is the one the
Rust benches link. `--mlx-lib DIR` picks another directory holding `libmlx.so`.
"""

import argparse
import os
import statistics
import time

from bench_common import mlx_lib_in_use, reexec_with_mlx_lib

def loaded_blas():
    try:
        with open("/proc/self/maps") as maps:
            libs = {line.split()[-1] for line in maps if "blas" in line.lower() and "/" in line}
        return ", ".join(sorted(os.path.basename(l) for l in libs)) or "none mapped"
    except OSError:
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mlx-lib", default=None)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    args = parser.parse_args()
    reexec_with_mlx_lib(args.mlx_lib)

    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    mx.set_default_device(mx.gpu if args.device == "gpu" else mx.cpu)
    batch, dims = 64, [784, 512, 512, 10]

    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]

        def __call__(self, x):
            for layer in self.layers[:-1]:
                x = nn.relu(layer(x))
            return self.layers[-1](x)

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    key = mx.random.key(1)
    x = mx.random.normal((batch, dims[0]), key=key)
    y = mx.random.randint(0, dims[-1], (batch,), key=key).astype(mx.uint32)
    mx.eval(x, y)

    def make(compiled):
        mx.random.seed(0)
        model = Mlp()
        opt = optim.AdamW(learning_rate=1e-3, weight_decay=0.01)
        grad_fn = nn.value_and_grad(model, loss_fn)

        def step(x, y):
            loss, grads = grad_fn(model, x, y)
            opt.update(model, grads)
            return loss

        if compiled:
            state = [model.state, opt.state]
            step = mx.compile(step, inputs=state, outputs=state)

        def run():
            loss = step(x, y)
            mx.eval(loss, model.parameters(), opt.state)
            return loss

        return run

    results = {}
    for name, compiled in [("eager (mx.compile off)", False), ("mx.compile on", True)]:
        run = make(compiled)
        for _ in range(10):
            run()
        per_step = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.steps):
                run()
            per_step.append((time.perf_counter() - start) / args.steps * 1e3)
        results[name] = per_step

    print(f"MLX {mx.__version__} on {mx.default_device()}, libmlx from {mlx_lib_in_use()}")
    print(f"BLAS mapped: {loaded_blas()}")
    print(f"MLP {dims}, batch {batch}, AdamW; {args.steps} steps x {args.repeats} repeats")
    print(f"{'variant':<26} {'median ms/step':>15} {'min ms/step':>12} {'samples/s':>10}")
    for name, per_step in results.items():
        med = statistics.median(per_step)
        print(f"{name:<26} {med:>15.3f} {min(per_step):>12.3f} {batch / med * 1e3:>10.0f}")


if __name__ == "__main__":
    main()
