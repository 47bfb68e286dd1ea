#!/usr/bin/env python3
"""Decoding throughput of our generation against mlx-lm, in one run.

Runs `cargo bench --bench decode` (benches/decode.rs), reads criterion's mean
time per iteration for each batch size, then decodes the same way with
mlx-lm 0.32.2 (`generate_step` at batch 1, `BatchGenerator` for batches) on
a Qwen3 with the same shapes (Qwen3-0.6B: vocabulary 151,936, hidden 1,024,
16/8 heads of 128, SwiGLU 3,072, tied embeddings; 28 layers unless told
otherwise), random weights, the same dtype, the same pseudo-random prompts,
greedy, end-of-sequence ignored, and prints tokens per second on both sides
and their ratios.

Only decoding is timed on both sides: from the first generated token(s) to
the last, so `n` new tokens per sequence are `n - 1` decode steps over every
row of the batch. mlx-lm's `BatchGenerator` is given
`completion_batch_size = prefill_batch_size = batch`, so that it decodes the
whole batch at once as ours does.

Usage (the reference environment has mlx and mlx-lm):

    /work/venv-ref/bin/python scripts/compare/decode_mlx_lm.py [--prompt 128] [--tokens 64]
        [--batches 1,8,64] [--layers 28] [--dtype bf16] [--repeats 3]
        [--device cpu|gpu] [--skip-rust] [--mlx-lib DIR]

For a like-for-like comparison MLX Python must use the `libmlx.so` the Rust
bench links: by default the script re-runs itself with `LD_LIBRARY_PATH` set
to the MLX prefix of the workspace build (the newest
`build/mlx-ffi-*/out/mlx-farm/mlx/lib` under `$CARGO_TARGET_DIR` or
`target/`, release first); `--mlx-lib DIR` picks another one (on the GPU
machine: the CUDA wheel's `mlx/lib`).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from bench_common import QWEN3_0_6B, ROOT, criterion_mean_ns, mlx_lib_in_use, reexec_with_mlx_lib


MASK64 = (1 << 64) - 1


def prompts(rows, length, vocab):
    """The bench's pseudo-random prompts (xorshift64, one stream for all rows)."""
    state = 0x2545F4914F6CDD1D
    out = []
    for _ in range(rows):
        row = []
        for _ in range(length):
            state ^= (state << 13) & MASK64
            state ^= state >> 7
            state ^= (state << 17) & MASK64
            row.append(state % vocab)
        out.append(row)
    return out





def bench_name(args, rows):
    return f"{args.dtype}_b{rows}_p{args.prompt}_n{args.tokens}_l{args.layers}"


def rust_tokens_per_second(args, batches):
    """Runs the criterion bench and reads its mean time per iteration."""
    env = dict(
        os.environ,
        DECODE_PROMPT=str(args.prompt),
        DECODE_TOKENS=str(args.tokens),
        DECODE_BATCHES=",".join(str(b) for b in batches),
        DECODE_LAYERS=str(args.layers),
        DECODE_DTYPE=args.dtype,
    )
    if args.device:
        env["DECODE_DEVICE"] = args.device
    env.pop("LD_LIBRARY_PATH", None)
    if not args.skip_rust:
        subprocess.run(["cargo", "bench", "--bench", "decode", "--", "--noplot"], cwd=ROOT, env=env, check=True)
    out = {}
    for rows in batches:
        mean_s = criterion_mean_ns("decode_qwen3_0.6b", bench_name(args, rows)) * 1e-9
        out[rows] = rows * (args.tokens - 1) / mean_s
    return out


def mlx_lm_tokens_per_second(args, batches):
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator, generate_step
    from mlx_lm.models import qwen3

    if args.device:
        mx.set_default_device(mx.gpu if args.device == "gpu" else mx.cpu)
    dtype = {"bf16": mx.bfloat16, "f16": mx.float16, "f32": mx.float32}[args.dtype]
    mx.random.seed(0)
    model = qwen3.Model(qwen3.ModelArgs(num_hidden_layers=args.layers, **QWEN3_0_6B))
    model.set_dtype(dtype)
    mx.eval(model.parameters())

    def single(prompt):
        first = None
        n = 0
        for _ in generate_step(mx.array(prompt), model, max_tokens=args.tokens):
            if first is None:
                first = time.perf_counter()
            n += 1
        assert n == args.tokens
        return time.perf_counter() - first

    def batch(rows):
        gen = BatchGenerator(
            model,
            max_tokens=args.tokens,
            completion_batch_size=len(rows),
            prefill_batch_size=len(rows),
        )
        gen.insert(rows)
        first = None
        counts = 0
        while responses := gen.next_generated():
            if first is None:
                first = time.perf_counter()
            counts += len(responses)
        end = time.perf_counter()
        gen.close()
        assert counts == len(rows) * args.tokens, counts
        return end - first

    out = {}
    for rows in batches:
        p = prompts(rows, args.prompt, QWEN3_0_6B["vocab_size"])
        run = (lambda: single(p[0])) if rows == 1 else (lambda: batch(p))
        run()
        times = [run() for _ in range(args.repeats)]
        out[rows] = rows * (args.tokens - 1) / statistics.median(times)
    return out, mx


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--dtype", choices=["bf16", "f16", "f32"], default="bf16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "gpu"], default=None)
    parser.add_argument("--skip-rust", action="store_true", help="reuse the last criterion results")
    parser.add_argument("--mlx-lib", default=None)
    args = parser.parse_args()
    reexec_with_mlx_lib(args.mlx_lib)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]

    rust = rust_tokens_per_second(args, batches)
    ref, mx = mlx_lm_tokens_per_second(args, batches)
    print(
        f"Qwen3-0.6B shapes ({args.layers} layers), random weights, {args.dtype}, "
        f"prompt {args.prompt}, {args.tokens} new tokens per sequence, greedy"
    )
    print(f"MLX {mx.__version__} on {mx.default_device()}, libmlx from {mlx_lib_in_use()}")
    print(f"{'batch':>5} {'mlx-grpo tok/s':>15} {'mlx-lm tok/s':>13} {'ratio':>7}")
    for rows in batches:
        print(f"{rows:>5} {rust[rows]:>15.1f} {ref[rows]:>13.1f} {rust[rows] / ref[rows]:>7.3f}")


if __name__ == "__main__":
    main()
