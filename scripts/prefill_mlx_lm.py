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

    /work/venv-ref/bin/python scripts/prefill_mlx_lm.py [--tokens 128] [--dtype bf16] [--repeats 10]
        [--device cpu|gpu] [--skip-rust] [--mlx-lib DIR]

For a like-for-like comparison MLX Python must use the `libmlx.so` the Rust
bench links: by default the script re-runs itself with `LD_LIBRARY_PATH`
set to the MLX prefix the workspace build prepared (the newest
`build/mlx-ffi-*/out/mlx-farm/mlx/lib` under `$CARGO_TARGET_DIR` or
`target/`, release first); `--mlx-lib DIR` picks another one.
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SHAPES = dict(
    model_type="qwen3",
    vocab_size=151936,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    rms_norm_eps=1e-6,
    rope_theta=1000000.0,
    max_position_embeddings=40960,
    tie_word_embeddings=True,
)


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")


def find_mlx_lib():
    for profile in ["release", "debug"]:
        pattern = f"{target_dir()}/{profile}/build/mlx-ffi-*/out/mlx-farm/mlx/lib/libmlx.so"
        hits = sorted(glob.glob(pattern), key=os.path.getmtime, reverse=True)
        if hits:
            return str(Path(hits[0]).parent)
    return None


def ensure_library(args):
    if os.environ.get("_PREFILL_REEXEC"):
        return
    lib = args.mlx_lib or find_mlx_lib()
    if lib is None:
        return
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}"
    env["_PREFILL_REEXEC"] = lib
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def rust_tokens_per_second(args):
    """Runs the criterion bench and reads its mean time per iteration."""
    env = dict(os.environ, PREFILL_TOKENS=str(args.tokens), PREFILL_DTYPE=args.dtype)
    if args.device:
        env["PREFILL_DEVICE"] = args.device
    env.pop("LD_LIBRARY_PATH", None)
    if not args.skip_rust:
        subprocess.run(["cargo", "bench", "--bench", "prefill", "--", "--noplot"], cwd=ROOT, env=env, check=True)
    estimates = target_dir() / "criterion" / "prefill_qwen3_0.6b" / f"{args.dtype}_t{args.tokens}" / "new" / "estimates.json"
    if not estimates.exists():
        sys.exit(f"{estimates} not found: run the bench (without --skip-rust)")
    mean_ns = json.loads(estimates.read_text())["mean"]["point_estimate"]
    return args.tokens / (mean_ns * 1e-9), mean_ns * 1e-6


def mlx_lm_tokens_per_second(args):
    import mlx.core as mx
    from mlx_lm.models import qwen3
    from mlx_lm.models.cache import make_prompt_cache

    if args.device:
        mx.set_default_device(mx.gpu if args.device == "gpu" else mx.cpu)
    dtype = {"bf16": mx.bfloat16, "f16": mx.float16, "f32": mx.float32}[args.dtype]
    mx.random.seed(0)
    model = qwen3.Model(qwen3.ModelArgs(**SHAPES))
    model.set_dtype(dtype)
    mx.eval(model.parameters())
    ids = mx.random.randint(0, SHAPES["vocab_size"], (1, args.tokens)).astype(mx.uint32)
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
    ensure_library(args)

    rust_tps, rust_ms = rust_tokens_per_second(args)
    py_tps, py_ms, mx = mlx_lm_tokens_per_second(args)
    print(f"Qwen3-0.6B shapes, random weights, {args.dtype}, {args.tokens}-token prompt, batch 1")
    print(f"MLX {mx.__version__} on {mx.default_device()}, libmlx from {os.environ.get('_PREFILL_REEXEC', 'the mlx package')}")
    print(f"{'implementation':<16} {'ms/prefill':>11} {'tokens/s':>10}")
    print(f"{'mlx-grpo (Rust)':<16} {rust_ms:>11.1f} {rust_tps:>10.1f}")
    print(f"{'mlx-lm':<16} {py_ms:>11.1f} {py_tps:>10.1f}")
    print(f"ratio (Rust / mlx-lm tokens/s): {rust_tps / py_tps:.3f}")


if __name__ == "__main__":
    main()
