#!/usr/bin/env python3
"""One GRPO step of our trainer against TRL's GRPOTrainer, on the CPU, in one run.

Runs ``cargo bench --bench grpo_step`` (benches/grpo_step.rs) and reads
criterion's mean time per step, then builds the same model in transformers
(``Qwen3ForCausalLM`` from a ``Qwen3Config`` of the same sizes: hidden 256,
4 layers, 4 query / 2 key-value heads of 64, SwiGLU 768, vocabulary 1,000,
tied embeddings; random weights, f32, CPU) with a word-level tokenizer over
the same vocabulary and the same prompt texts, runs TRL 1.16's
``GRPOTrainer`` for ``--trl-steps`` steps (default 4) with the same settings (4 prompts of 32 tokens
x G = 8 completions of exactly 64 tokens -- ``min_new_tokens`` = 64 --,
temperature 1, loss dapo, beta 0, one iteration, micro-batches of 8 with 4
accumulation steps, AdamW, no gradient checkpointing -- both libraries turn
it on by default; benches/grpo_step.rs turns it off, as this script does) and takes the median
time of the steps after the first (each: generation, rewards, scoring,
backward and update). Prints completions/s and completion tokens/s
for both and the ratio ours / TRL (above 1: ours is faster).

    /work/venv-ref/bin/python scripts/compare/grpo_step_trl.py [--skip-rust] [--out FILE.json]
        [--hidden 256] [--layers 4] [--vocab 1000] [--prompts 4] [--group 8]
        [--prompt-len 32] [--tokens 64] [--micro 8]

Figures measured on a 2-core x86_64 CPU (MLX 0.32.4 with OpenBLAS, torch 2.15
with 2 threads, transformers 5.23, TRL 1.16.0) are in docs/GPU_BENCH.md
("GRPO step on a 2-core CPU"); they depend strongly on the machine's load.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import ROOT, criterion_mean_ns  # noqa: E402
from trl_grpo import qwen3_config, time_grpo_steps, word_tokenizer  # noqa: E402
MASK64 = (1 << 64) - 1


def prompt_texts(rows, length, vocab):
    """The bench's prompts: xorshift64 words ``t<3 + x % (vocab - 3)>``."""
    state = 0x2545_F491_4F6C_DD1D
    out = []
    for _ in range(rows):
        words = []
        for _ in range(length):
            state ^= (state << 13) & MASK64
            state ^= state >> 7
            state ^= (state << 17) & MASK64
            words.append(f"t{3 + state % (vocab - 3)}")
        out.append(" ".join(words))
    return out


def bench_name(a):
    return (f"h{a.hidden}_l{a.layers}_v{a.vocab}_p{a.prompts}_g{a.group}"
            f"_n{a.tokens}_mb{a.micro}")



def ours(a):
    """Mean seconds per step of the Rust bench (criterion's estimate)."""
    if not a.skip_rust:
        env = dict(os.environ)
        env.update({
            "GRPO_STEP_HIDDEN": str(a.hidden), "GRPO_STEP_LAYERS": str(a.layers),
            "GRPO_STEP_VOCAB": str(a.vocab), "GRPO_STEP_PROMPTS": str(a.prompts),
            "GRPO_STEP_GROUP": str(a.group), "GRPO_STEP_PROMPT_LEN": str(a.prompt_len),
            "GRPO_STEP_TOKENS": str(a.tokens), "GRPO_STEP_MICRO": str(a.micro),
        })
        subprocess.run(["cargo", "bench", "--bench", "grpo_step", "--", "--noplot"],
                       cwd=ROOT, env=env, check=True)
    return criterion_mean_ns("grpo_step", bench_name(a)) * 1e-9


def trl(a):
    """TRL's median seconds per step after the first, and the run's details."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    heads = max(a.hidden // 64, 1)
    config = qwen3_config(vocab=a.vocab, hidden=a.hidden, intermediate=3 * a.hidden,
                          layers=a.layers, heads=heads, kv_heads=max(heads // 2, 1),
                          head_dim=64, rope_theta=1_000_000.0, max_position_embeddings=4096)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    texts = prompt_texts(a.prompts, a.prompt_len, a.vocab)
    steps = max(a.trl_steps, 2)
    run = time_grpo_steps(model, word_tokenizer(a.vocab), vocab=a.vocab, prompts=a.prompts,
                          prompt_len=a.prompt_len, group=a.group, tokens=a.tokens,
                          micro=a.micro, steps=steps, use_cpu=True, prompt_texts=texts * steps,
                          gradient_checkpointing=a.gradient_checkpointing)
    for length in run["mean_completion_length"]:
        if abs(length - a.tokens) > 1e-6:
            sys.exit(f"TRL completions have mean length {length}, not {a.tokens}")
    run.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads())
    return statistics.median(run["step_seconds"][1:]), run


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--skip-rust", action="store_true", help="reuse the last bench results")
    p.add_argument("--out", help="write every figure to this JSON file")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--micro", type=int, default=8)
    p.add_argument("--trl-steps", type=int, default=4, help="TRL steps (the first is not timed)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="TRL's default; off unless given, as in benches/grpo_step.rs")
    a = p.parse_args()

    load_before = os.getloadavg()
    ours_s = ours(a)
    trl_s, trl_run = trl(a)
    completions = a.prompts * a.group
    tokens = completions * a.tokens
    rows = [("ours", ours_s), ("TRL", trl_s)]
    print(f"\nGRPO step: {a.prompts} prompts x G={a.group}, {a.tokens} tokens each, "
          f"micro-batch {a.micro}, hidden {a.hidden}, {a.layers} layers, vocab {a.vocab}, f32 CPU")
    print(f"{'':<6}{'s/step':>10}{'completions/s':>16}{'tokens/s':>12}")
    for name, s in rows:
        print(f"{name:<6}{s:>10.3f}{completions / s:>16.2f}{tokens / s:>12.0f}")
    print(f"ratio ours/TRL (throughput): {trl_s / ours_s:.2f}")
    print(f"TRL steps: {', '.join(f'{t:.3f}' for t in trl_run['step_seconds'])} s; "
          f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"settings": vars(a), "ours_seconds": ours_s, "trl_seconds": trl_s,
                       "completions": completions, "completion_tokens": tokens,
                       "ratio": trl_s / ours_s, "trl": trl_run}, f, indent=2)


if __name__ == "__main__":
    main()
