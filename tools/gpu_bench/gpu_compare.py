#!/usr/bin/env python3
"""The references for tools/gpu_bench/src/main.rs, on the same machine and shapes.

Runs mlx-lm (random-weight Qwen3-0.6B shape, bf16) through the same
measurements as the benchmark program -- prefill at 128 and 512 prompt
tokens, greedy decode at batch 1 (prompt 128, 256 new tokens),
``batch_generate`` at 8 and 64 sequences (256 new tokens, no end-of-sequence
ids) -- and TRL's ``GRPOTrainer`` for one GRPO step (8 prompts x G = 8
completions of 256 tokens, loss dapo, beta 0, one iteration, micro-batches of
8 with 8 accumulation steps; a warm-up step, then the median of three). It then reads
the benchmark's JSON and prints a table of ratios (ours / reference; above 1
is faster for rates, below 1 is smaller for memory).

    python3 tools/gpu_bench/gpu_compare.py --ours bench.json [--out compare.json]
        [--skip-trl] [--skip-mlx] [--layers N] [--vocab N] [--quick]
        [--mlx-parts decode,batch] [--mlx-json PATH]
    python3 tools/gpu_bench/gpu_compare.py --rounds DIR [--out rounds.json]

``--mlx-json`` runs only mlx-lm (the parts named by ``--mlx-parts``) and
writes its figures; ``--rounds`` summarises alternating runs of gpu_bench and
``--mlx-json`` (see tools/gpu_bench/gpu_run.sh, ROUNDS=N) as per-round ratios and
their median.

TRL runs in a child process of this script so that its CUDA memory and MLX's
do not mix. The child needs torch, transformers, trl and datasets; when any
is missing or it fails, the table shows the mlx-lm ratios alone.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "compare"))
from trl_grpo import qwen3_config, random_tokens, time_grpo_steps, word_tokenizer  # noqa: E402

HIDDEN = 1024
INTERMEDIATE = 3072
HEADS = 16
KV_HEADS = 8
HEAD_DIM = 128
ROPE_THETA = 1_000_000.0

# gpu_bench --shape: (hidden, intermediate, layers or None for --layers,
# heads, kv heads); 8b unties the output layer, as Qwen3-8B does.
SHAPES = {
    "0.6b": (HIDDEN, INTERMEDIATE, None, HEADS, KV_HEADS),
    "4b": (2560, 9728, 36, 32, 8),
}


def sizes(quick):
    """Token counts; the same as gpu_bench's (``--quick`` too)."""
    if quick:
        return dict(prefill=[16, 64], prompt=16, new=24, batches=[2, 4],
                    grpo_prompts=2, grpo_group=4, grpo_tokens=16, grpo_micro=4)
    return dict(prefill=[128, 512], prompt=128, new=256, batches=[8, 64],
                grpo_prompts=8, grpo_group=8, grpo_tokens=256, grpo_micro=8)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


# --------------------------------------------------------------------- mlx-lm


def mlx_lm_bench(layers, vocab, quick, parts=("prefill", "decode", "batch")):
    import mlx.core as mx
    from mlx_lm.generate import batch_generate, generate_step
    from mlx_lm.models import qwen3
    from mlx_lm.models.cache import make_prompt_cache

    s = sizes(quick)
    args = qwen3.ModelArgs(
        model_type="qwen3", hidden_size=HIDDEN, num_hidden_layers=layers,
        intermediate_size=INTERMEDIATE, num_attention_heads=HEADS,
        rms_norm_eps=1e-6, vocab_size=vocab, num_key_value_heads=KV_HEADS,
        max_position_embeddings=40960, head_dim=HEAD_DIM,
        tie_word_embeddings=True, rope_theta=ROPE_THETA)
    mx.random.seed(0)
    model = qwen3.Model(args)
    model.set_dtype(mx.bfloat16)
    mx.eval(model.parameters())
    out = {"device": str(mx.default_device()), "mlx_version": mx.__version__}

    def fresh_peak():
        mx.clear_cache()
        mx.reset_peak_memory()

    def peak_gib():
        return mx.get_peak_memory() / 2**30

    def prefill_once(tokens):
        start = time.perf_counter()
        cache = make_prompt_cache(model)
        logits = model(mx.array(tokens)[None], cache=cache)
        mx.eval(logits[:, -1, :])
        return time.perf_counter() - start

    prefill = {}
    for n in (s["prefill"] if "prefill" in parts else []):
        tokens = random_tokens(n, vocab, n)
        prefill_once(tokens)
        fresh_peak()
        t = median([prefill_once(tokens) for _ in range(5)])
        prefill[str(n)] = {"prompt_tokens": n, "seconds": t,
                           "tokens_per_s": n / t, "peak_gib": peak_gib()}
    if prefill:
        out["prefill"] = prefill

    def decode_once(prompt, new):
        start = time.perf_counter()
        first, count = None, 0
        for _token, _logprobs in generate_step(mx.array(prompt), model, max_tokens=new):
            count += 1
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        return first - start, end - first, count

    if "decode" in parts:
        prompt = random_tokens(s["prompt"], vocab, 7)
        decode_once(prompt, min(s["new"], 32))
        fresh_peak()
        runs = [decode_once(prompt, s["new"]) for _ in range(3)]
        out["decode"] = {
            "prompt_tokens": s["prompt"], "new_tokens": s["new"],
            "tokens_per_s": median([(n - 1) / d for _, d, n in runs]),
            "prefill_seconds": median([p for p, _, _ in runs]),
            "peak_gib": peak_gib(),
        }

    class NoTokenizer:
        eos_token_ids = []

        def decode(self, _tokens):
            return ""

    def batch_once(prompts, new):
        start = time.perf_counter()
        resp = batch_generate(model, NoTokenizer(), prompts, max_tokens=new,
                              completion_batch_size=len(prompts),
                              prefill_batch_size=len(prompts))
        total = time.perf_counter() - start
        return total, resp.stats

    batch = {}
    for b in (s["batches"] if "batch" in parts else []):
        prompts = [random_tokens(s["prompt"], vocab, 100 + i) for i in range(b)]
        batch_once(prompts, min(s["new"], 16))
        fresh_peak()
        total, stats = batch_once(prompts, s["new"])
        tokens = stats.generation_tokens
        batch[str(b)] = {
            "sequences": b, "prompt_tokens": s["prompt"], "new_tokens": s["new"],
            "generated_tokens": tokens, "seconds": total,
            "tokens_per_s": tokens / total,
            "decode_tokens_per_s": stats.generation_tps,
            "peak_gib": peak_gib(),
        }
    if batch:
        out["batch"] = batch
    del model
    mx.clear_cache()
    return out


# ------------------------------------------------------------------------ TRL


def trl_worker(layers, vocab, quick, out_path, lora=False, shape="0.6b"):
    """One GRPO run with TRL (a warm-up step, then three; the median of the
    three is reported, with their highest peak, as for ours); writes JSON.
    With ``lora``, TRL trains PEFT adapters (r = 16, alpha = 32, every
    linear layer, no dropout: ``gpu_bench --grpo-settings lora``'s)."""
    import torch
    from transformers import AutoModelForCausalLM

    s = sizes(quick)
    torch.manual_seed(0)
    tokenizer = word_tokenizer(vocab)
    hidden, intermediate, shape_layers, heads, kv_heads = SHAPES[shape]
    config = qwen3_config(vocab=vocab, hidden=hidden, intermediate=intermediate,
                          layers=shape_layers or layers, heads=heads, kv_heads=kv_heads,
                          head_dim=HEAD_DIM, rope_theta=ROPE_THETA)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.to("cuda")

    completions = s["grpo_prompts"] * s["grpo_group"]
    peft_config = None
    if lora:
        from peft import LoraConfig
        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    run = time_grpo_steps(model, tokenizer, vocab=vocab, prompts=s["grpo_prompts"],
                          prompt_len=s["prompt"], group=s["grpo_group"],
                          tokens=s["grpo_tokens"], micro=s["grpo_micro"], bf16=True,
                          steps=4, peft_config=peft_config)
    step = median(run["step_seconds"][1:])
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch_version": torch.__version__,
        "lora": lora,
        "shape": shape,
        "grpo": {
            "completions": completions, "completion_tokens": s["grpo_tokens"],
            "group": s["grpo_group"], "micro_batch": s["grpo_micro"],
            "seconds": step, "completions_per_s": completions / step,
            "step_seconds": run["step_seconds"], "peak_gib": max(run["peak_gib"][1:]),
            "train_wall_seconds": run["train_wall_seconds"],
            "steps_with_nonfinite_grads": run["steps_with_nonfinite_grads"],
        },
    }
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)


def run_trl(layers, vocab, quick, lora=False, shape="0.6b"):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = [sys.executable, os.path.abspath(__file__), "--trl-worker", path,
           "--layers", str(layers), "--vocab", str(vocab)]
    if quick:
        cmd.append("--quick")
    if lora:
        cmd.append("--trl-lora")
    cmd += ["--shape", shape]
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        return {"error": f"TRL worker exited with {proc.returncode}"}
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------------- table


def dig(d, *keys):
    """``d[k1][k2]...``, or None where a key is missing."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def ratio_rows(ours, mlx_lm, trl, trl_lora=None):
    rows = []

    def add(name, a, b, unit, kind="rate"):
        if a is None or b is None:
            ratio = None
        else:
            ratio = a / b if b else None
        rows.append({"what": name, "ours": a, "reference": b, "unit": unit,
                     "ratio": ratio, "kind": kind})

    def keys(part):
        ks = set(dig(ours, part) or {}) | set(dig(mlx_lm, part) or {})
        return sorted(ks, key=int)

    for n in keys("prefill"):
        add(f"prefill {n} (mlx-lm)", dig(ours, "prefill", n, "tokens_per_s"),
            dig(mlx_lm, "prefill", n, "tokens_per_s"), "tok/s")
    add("decode b1 (mlx-lm)", dig(ours, "decode", "tokens_per_s"),
        dig(mlx_lm, "decode", "tokens_per_s"), "tok/s")
    add("decode b1 peak (mlx-lm)", dig(ours, "decode", "peak_gib"),
        dig(mlx_lm, "decode", "peak_gib"), "GiB", "memory")
    for n in keys("batch"):
        add(f"batch {n} (mlx-lm)", dig(ours, "batch", n, "tokens_per_s"),
            dig(mlx_lm, "batch", n, "tokens_per_s"), "tok/s")
        add(f"batch {n} decode only (mlx-lm)",
            dig(ours, "batch", n, "decode_tokens_per_s"),
            dig(mlx_lm, "batch", n, "decode_tokens_per_s"), "tok/s")
        add(f"batch {n} peak (mlx-lm)", dig(ours, "batch", n, "peak_gib"),
            dig(mlx_lm, "batch", n, "peak_gib"), "GiB", "memory")
    add("GRPO step (TRL)", dig(ours, "grpo", "completions_per_s"),
        dig(trl, "grpo", "completions_per_s"), "compl/s")
    add("GRPO step peak (TRL)", dig(ours, "grpo", "peak_gib"),
        dig(trl, "grpo", "peak_gib"), "GiB", "memory")
    for setting, label in (("offload", "optimizer state on host"),
                           ("offload_whole_steps", "state on host, whole decoding steps"),
                           ("offload_bounded", "state on host, bounded"),
                           ("low_memory", "low memory"),
                           ("low_memory_offload", "low memory + state on host"),
                           ("no_checkpointing", "no checkpointing")):
        if dig(ours, "grpo", "settings", setting) is None:
            continue
        add(f"GRPO step, {label} (TRL)",
            dig(ours, "grpo", "settings", setting, "completions_per_s"),
            dig(trl, "grpo", "completions_per_s"), "compl/s")
        add(f"GRPO step peak, {label} (TRL)",
            dig(ours, "grpo", "settings", setting, "peak_gib"),
            dig(trl, "grpo", "peak_gib"), "GiB", "memory")
    for setting, label in (("lora", "LoRA r=16 all-linear"), ("qlora", "QLoRA 4-bit r=16")):
        if dig(ours, "grpo", "settings", setting) is None:
            continue
        add(f"GRPO step, {label} (TRL+PEFT LoRA)",
            dig(ours, "grpo", "settings", setting, "completions_per_s"),
            dig(trl_lora, "grpo", "completions_per_s"), "compl/s")
        add(f"GRPO step peak, {label} (TRL+PEFT LoRA)",
            dig(ours, "grpo", "settings", setting, "peak_gib"),
            dig(trl_lora, "grpo", "peak_gib"), "GiB", "memory")
    return rows


def rounds_summary(directory):
    """Per-round and median ratios of alternating runs.

    ``directory`` holds ``ours_<i>.json`` (gpu_bench) and ``mlx_<i>.json``
    (``--mlx-json``) for rounds i = 1, 2, ...; each round ran both programs
    back to back, the order alternating, so slow drift of the machine (clocks,
    temperature, neighbours) moves both sides of a round alike.
    """
    def load(path):
        with open(path) as f:
            return json.load(f)

    rounds = []
    i = 1
    while os.path.exists(os.path.join(directory, f"ours_{i}.json")):
        mlx_path = os.path.join(directory, f"mlx_{i}.json")
        if os.path.exists(mlx_path):
            rounds.append((load(os.path.join(directory, f"ours_{i}.json")), load(mlx_path)))
        i += 1
    summary = {"rounds": len(rounds), "measurements": {}}
    print(f"\n{len(rounds)} alternating rounds (ours / mlx-lm, tok/s)")
    batches = sorted({b for o, _ in rounds for b in (o.get("batch") or {})}, key=int)
    measurements = [("decode b1", ("decode", "tokens_per_s"))] + [
        (f"batch {b}", ("batch", b, "tokens_per_s")) for b in batches]
    for name, keys in measurements:
        pairs = [(dig(o, *keys), dig(m, *keys)) for o, m in rounds]
        pairs = [(a, b) for a, b in pairs if a and b]
        if not pairs:
            continue
        ratios = [a / b for a, b in pairs]
        summary["measurements"][name] = {
            "ours": [a for a, _ in pairs], "mlx_lm": [b for _, b in pairs],
            "ratios": ratios, "median_ratio": median(ratios),
            "min_ratio": min(ratios), "max_ratio": max(ratios),
        }
        cells = "  ".join(f"{a:,.0f}/{b:,.0f}={a / b:.2f}" for a, b in pairs)
        print(f"{name:<10} {cells}  median {median(ratios):.2f}")
    return summary


def fmt(x, digits=2):
    return "-" if x is None else f"{x:,.{digits}f}"


def print_table(rows, ours, mlx_lm, trl):
    print()
    print(f"device: ours {ours.get('device')} (MLX {ours.get('mlx_version')}); "
          f"mlx-lm {mlx_lm.get('device', '-')} (MLX {mlx_lm.get('mlx_version', '-')}); "
          f"TRL {trl.get('device', trl.get('error', '-'))}")
    dec = ours.get("decode") or {}
    if dec:
        print(f"decode b1: {100 * dec.get('roofline_fraction', float('nan')):.1f}% of the "
              f"{dec.get('roofline_tokens_per_s', float('nan')):,.0f} tok/s bandwidth limit; "
              f"sync step host {dec.get('sync_step_host_ms', float('nan')):.2f} ms, "
              f"device {dec.get('sync_step_device_ms', float('nan')):.2f} ms")
    print(f"{'measurement (reference)':<36}{'ours':>12}{'reference':>12}{'unit':>9}{'ratio':>8}")
    for r in rows:
        print(f"{r['what']:<36}{fmt(r['ours']):>12}{fmt(r['reference']):>12}"
              f"{r['unit']:>9}{fmt(r['ratio']):>8}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ours", help="gpu_bench's JSON")
    p.add_argument("--out", help="write references and ratios here")
    p.add_argument("--skip-trl", action="store_true")
    p.add_argument("--skip-mlx", action="store_true")
    p.add_argument("--layers", type=int)
    p.add_argument("--vocab", type=int)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--mlx-parts", default="prefill,decode,batch",
                   help="the mlx-lm measurements to run (comma-separated)")
    p.add_argument("--mlx-json", metavar="PATH",
                   help="write the mlx-lm results alone here and stop")
    p.add_argument("--rounds", metavar="DIR",
                   help="summarise alternating rounds (ours_<i>.json, mlx_<i>.json) and stop")
    p.add_argument("--trl-lora", action="store_true",
                   help="also run TRL with PEFT LoRA adapters (r=16, all-linear)")
    p.add_argument("--shape", choices=sorted(SHAPES),
                   help="the model shape of TRL's run (default: gpu_bench's, else 0.6b)")
    p.add_argument("--trl-worker", metavar="OUT", help=argparse.SUPPRESS)
    a = p.parse_args()

    if a.rounds:
        summary = rounds_summary(a.rounds)
        if a.out:
            with open(a.out, "w") as f:
                json.dump(summary, f, indent=2)
        return

    ours = {}
    if a.ours:
        with open(a.ours) as f:
            ours = json.load(f)
    layers = a.layers or ours.get("layers", 28)
    vocab = a.vocab or ours.get("vocab", 151936)
    quick = a.quick or ours.get("quick", False)
    shape = a.shape or ours.get("shape", "0.6b")

    if a.trl_worker:
        trl_worker(layers, vocab, quick, a.trl_worker, lora=a.trl_lora, shape=shape)
        return

    mlx_lm = {}
    if not a.skip_mlx:
        try:
            mlx_lm = mlx_lm_bench(layers, vocab, quick, a.mlx_parts.split(","))
        except Exception as e:  # the table still shows what ran
            mlx_lm = {"error": repr(e)}
            print(f"mlx-lm failed: {e!r}", file=sys.stderr)
        if a.mlx_json:
            with open(a.mlx_json, "w") as f:
                json.dump(mlx_lm, f, indent=2)
            return
    trl = {}
    if not a.skip_trl:
        trl = run_trl(layers, vocab, quick, shape=shape)
        if "error" in trl:
            print(f"TRL: {trl['error']}", file=sys.stderr)
    trl_lora = {}
    if a.trl_lora:
        trl_lora = run_trl(layers, vocab, quick, lora=True, shape=shape)
        if "error" in trl_lora:
            print(f"TRL+PEFT: {trl_lora['error']}", file=sys.stderr)
    rows = ratio_rows(ours, mlx_lm, trl, trl_lora)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"ours": ours, "mlx_lm": mlx_lm, "trl": trl, "trl_lora": trl_lora,
                       "ratios": rows}, f, indent=2)
    print_table(rows, ours, mlx_lm, trl)


if __name__ == "__main__":
    main()
