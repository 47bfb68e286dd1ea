#!/usr/bin/env python3
"""Prompt-processing throughput of our Qwen3 against mlx-lm, in one run.

Runs `cargo bench --bench prefill` (benches/prefill.rs), reads criterion's
mean time, then times the same prefill through mlx-lm 0.32.2's Qwen3 with
the same shapes (Qwen3-0.6B: vocabulary 151,936, hidden 1,024, 28 layers,
16/8 heads of 128, SwiGLU 3,072, tied embeddings), random weights, the same
dtype and prompt length, and prints both in tokens per second and their
ratio.

One prefill, on both sides: a fresh KV cache, the prompt through the model,
the last position projected to logits, and an `eval` of the logits and the
cache state inside the timed region.

Usage (the reference environment has mlx and mlx-lm):

    /work/venv-ref/bin/python scripts/compare/prefill_mlx_lm.py [--tokens 128] [--dtype bf16] [--repeats 10]
        [--device cpu|gpu] [--skip-rust] [--mlx-lib DIR]

For a like-for-like comparison MLX Python must use the `libmlx.so` the Rust
bench links: by default the script re-runs itself with `LD_LIBRARY_PATH`
set to the MLX prefix the workspace build prepared (the newest
`build/mlx-ffi-*/out/mlx-farm/mlx/lib` under `$CARGO_TARGET_DIR` or
`target/`, release first); `--mlx-lib DIR` picks another one.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from bench_common import QWEN3_0_6B, ROOT, criterion_mean_ns, mlx_lib_in_use, reexec_with_mlx_lib






def rust_tokens_per_second(args):
    """Runs the criterion bench and reads its mean time per iteration."""
    env = dict(os.environ, PREFILL_TOKENS=str(args.tokens), PREFILL_DTYPE=args.dtype)
    if args.device:
        env["PREFILL_DEVICE"] = args.device
    env.pop("LD_LIBRARY_PATH", None)
    if not args.skip_rust:
        subprocess.run(["cargo", "bench", "--bench", "prefill", "--", "--noplot"], cwd=ROOT, env=env, check=True)
    mean_ns = criterion_mean_ns("prefill_qwen3_0.6b", f"{args.dtype}_t{args.tokens}")
    return args.tokens / (mean_ns * 1e-9), mean_ns * 1e-6


def mlx_lm_tokens_per_second(args):
    import mlx.core as mx
    from mlx_lm.models import qwen3
    from mlx_lm.models.cache import make_prompt_cache

    if args.device:
        mx.set_default_device(mx.gpu if args.device == "gpu" else mx.cpu)
    dtype = {"bf16": mx.bfloat16, "f16": mx.float16, "f32": mx.float32}[args.dtype]
    mx.random.seed(0)
    model = qwen3.Model(qwen3.ModelArgs(num_hidden_layers=28, **QWEN3_0_6B))
    model.set_dtype(dtype)
    mx.eval(model.parameters())
    ids = mx.random.randint(0, QWEN3_0_6B["vocab_size"], (1, args.tokens)).astype(mx.uint32)
    mx.eval(ids)

    def prefill():
        cache = make_prompt_cache(model)
        hidden = model.model(ids, cache=cache)
        logits = model.model.embed_tokens.as_linear(hidden[:, -1:, :])
        mx.eval(logits, [c.state for c in cache])

    for _ in range(2):
        prefill()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        prefill()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return args.tokens / median, median * 1e3, mx


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--dtype", choices=["bf16", "f16", "f32"], default="bf16")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", choices=["cpu", "gpu"], default=None)
    parser.add_argument("--skip-rust", action="store_true", help="reuse the last criterion result")
    parser.add_argument("--mlx-lib", default=None)
    args = parser.parse_args()
    reexec_with_mlx_lib(args.mlx_lib)

    rust_tps, rust_ms = rust_tokens_per_second(args)
    py_tps, py_ms, mx = mlx_lm_tokens_per_second(args)
    print(f"Qwen3-0.6B shapes, random weights, {args.dtype}, {args.tokens}-token prompt, batch 1")
    print(f"MLX {mx.__version__} on {mx.default_device()}, libmlx from {mlx_lib_in_use()}")
    print(f"{'implementation':<16} {'ms/prefill':>11} {'tokens/s':>10}")
    print(f"{'mlx-grpo (Rust)':<16} {rust_ms:>11.1f} {rust_tps:>10.1f}")
    print(f"{'mlx-lm':<16} {py_ms:>11.1f} {py_tps:>10.1f}")
    print(f"ratio (Rust / mlx-lm tokens/s): {rust_tps / py_tps:.3f}")


if __name__ == "__main__":
    main()
