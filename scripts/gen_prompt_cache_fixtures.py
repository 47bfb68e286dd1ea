#!/usr/bin/env python3
"""Prompt-cache files written and read by mlx-lm, for the persistence tests.

Default mode: loads the tiny Qwen3 checkpoint `crates/mlx-lm/tests/fixtures/
lm/qwen3_tied` with mlx-lm, prefills a fixed prompt of token ids (all but
the last) into each of three kinds of prompt cache, saves each cache with mlx-lm's
`save_prompt_cache` (with metadata) under
`crates/mlx-lm/tests/fixtures/prompt_cache/`, and records in
`continuations.json` the greedy continuation mlx-lm decodes from the cache
after feeding it the prompt's last token (token, its logit, and its margin
over the runner-up at every step):

- `kv`: `make_prompt_cache(model)`, one `KVCache` per layer;
- `rotating`: `make_prompt_cache(model, max_kv_size=8)`, `RotatingKVCache`s
  (keep 4) holding a prompt longer than their window, so the continuation
  rotates;
- `batch`: a `BatchKVCache` per layer over two left-padded prompts.

`--check-ours DIR`: loads the files our `save_prompt_cache` wrote into DIR
(`cargo test -p mlx-lm --test prompt_cache_mlx_lm` with
`PROMPT_CACHE_OUT=DIR`) with mlx-lm's `load_prompt_cache`, compares their
cache classes, metadata and states with mlx-lm's own prefill of the same
prompt, continues greedy decoding in mlx-lm and asserts it gives the
recorded continuation.

Reference environment (CPU is enough; no tokenizer, no download):

    python3 -m venv /work/venv-mlx
    /work/venv-mlx/bin/pip install mlx==0.32.4 mlx-cpu==0.32.4 mlx-lm==0.32.2
    /work/venv-mlx/bin/python scripts/gen_prompt_cache_fixtures.py
    /work/venv-mlx/bin/python scripts/gen_prompt_cache_fixtures.py --check-ours DIR
"""

import argparse
import json
import sys
from pathlib import Path

import mlx.core as mx
import mlx_lm
from mlx_lm.models.cache import (
    BatchKVCache,
    KVCache,
    load_prompt_cache,
    make_prompt_cache,
    save_prompt_cache,
)
from mlx_lm.utils import load_model

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates/mlx-lm/tests/fixtures"
MODEL = "qwen3_untied"
OUT = FIXTURES / "prompt_cache"

PROMPT = [1, 17, 245, 999, 3, 500, 42, 42, 7, 800, 123, 64]
# The batch case: two rows, the first left-padded by 3 (pad id 0).
BATCH_PROMPTS = [[5, 300, 77, 910, 2, 64, 451, 18, 650], [1, 17, 245, 999, 3, 500, 42, 42, 7, 800, 123, 64]]
ROTATING_MAX = 8
ROTATING_KEEP = 4  # what make_prompt_cache gives a RotatingKVCache
STEPS = 8
# Greedy tokens whose margin over the runner-up is smaller than this could
# flip between two correct implementations; the fixture must avoid them.
MIN_MARGIN = 1e-3


# mlx-lm grows its caches in blocks of `step` positions (256) and saves the
# whole block; a smaller block keeps the files small and still leaves stored
# positions beyond the offset, as any saved cache has.
KVCache.step = 16
BatchKVCache.step = 16


def left_padding():
    width = max(len(p) for p in BATCH_PROMPTS)
    return [width - len(p) for p in BATCH_PROMPTS]


def padded_batch():
    pads = left_padding()
    return [[0] * pad + p for pad, p in zip(pads, BATCH_PROMPTS)]


def fresh_cache(model, case):
    if case == "kv":
        return make_prompt_cache(model)
    if case == "rotating":
        return make_prompt_cache(model, max_kv_size=ROTATING_MAX)
    if case == "batch":
        return [BatchKVCache(left_padding()) for _ in model.layers]
    raise ValueError(case)


def prompt_rows(case):
    return padded_batch() if case == "batch" else [PROMPT]


def prefill(model, case):
    """The cache of every prompt token but the last."""
    cache = fresh_cache(model, case)
    rows = mx.array(prompt_rows(case))
    mx.eval(model(rows[:, :-1], cache=cache), [c.state for c in cache])
    return cache


def greedy(model, cache, case):
    """Feeds the prompts' last tokens to `cache`, then STEPS greedy tokens
    per row, with their logits and margins."""
    tokens, chosen, margins = [], [], []
    last = mx.array(prompt_rows(case))[:, -1:]
    logits = model(last, cache=cache)[:, -1, :]
    for _ in range(STEPS):
        logits = logits.astype(mx.float32)
        top2 = mx.sort(logits, axis=-1)[:, -2:]
        step = mx.argmax(logits, axis=-1)
        mx.eval(step, top2)
        tokens.append(step.tolist())
        chosen.append(top2[:, 1].tolist())
        margins.append((top2[:, 1] - top2[:, 0]).tolist())
        logits = model(step[:, None], cache=cache)[:, -1, :]
    # Per row: [STEPS] lists.
    rows = len(tokens[0])
    return {
        "tokens": [[t[r] for t in tokens] for r in range(rows)],
        "logits": [[c[r] for c in chosen] for r in range(rows)],
        "margins": [[m[r] for m in margins] for r in range(rows)],
    }


def describe(cache, storage=True):
    """Class and offsets of every layer (offsets as mlx-lm keeps them), and
    with `storage` the length of the stored buffers."""
    out = []
    for c in cache:
        offset = c.offset
        entry = {"class": type(c).__name__}
        if isinstance(offset, mx.array):
            entry["offsets"] = offset.tolist()
            entry["left_padding"] = c.left_padding.tolist()
            entry["idx"] = c._idx
        else:
            entry["offset"] = offset
        if hasattr(c, "max_size"):
            entry.update(keep=c.keep, max_size=c.max_size, idx=c._idx)
        if storage:
            entry["stored_positions"] = c.keys.shape[2]
        out.append(entry)
    return out


def metadata(case):
    return {"model": MODEL, "case": case, "prompt_len": str(len(prompt_rows(case)[0]))}


def generate(model):
    OUT.mkdir(parents=True, exist_ok=True)
    record = {
        "mlx": mx.__version__,
        "mlx_lm": mlx_lm.__version__,
        "model": MODEL,
        "steps": STEPS,
        "cases": {},
    }
    for case in ("kv", "rotating", "batch"):
        cache = prefill(model, case)
        name = f"mlx_lm_{case}.safetensors"
        save_prompt_cache(str(OUT / name), cache, metadata(case))
        layers = describe(cache)
        cont = greedy(model, cache, case)
        worst = min(min(m) for m in cont["margins"])
        if worst < MIN_MARGIN:
            sys.exit(f"{case}: a greedy margin of {worst} is too close to a tie; pick another prompt")
        record["cases"][case] = {
            "file": name,
            "prompt": prompt_rows(case),
            "left_padding": left_padding() if case == "batch" else [0],
            "metadata": metadata(case),
            "layers": layers,
            "continuation": cont,
        }
        print(f"{case}: {name} ({(OUT / name).stat().st_size} bytes), continuation {cont['tokens']}, min margin {worst:.4f}")
    (OUT / "continuations.json").write_text(json.dumps(record, indent=1) + "\n")


def temporal_state(c):
    """The positions a cache holds, in the order attention sees them."""
    if type(c).__name__ == "RotatingKVCache":
        # What the next update would attend to, without changing the cache.
        return c._temporal_order(c.keys), c._temporal_order(c.values)
    if type(c).__name__ == "BatchKVCache":
        return c.keys[..., : c._idx, :], c.values[..., : c._idx, :]
    return c.keys[..., : c.offset, :], c.values[..., : c.offset, :]


def check_ours(model, directory):
    record = json.loads((OUT / "continuations.json").read_text())
    failures = 0
    for case, expected in record["cases"].items():
        path = Path(directory) / f"ours_{case}.safetensors"
        cache, meta = load_prompt_cache(str(path), return_metadata=True)
        reference = prefill(model, case)
        classes = [type(c).__name__ for c in cache]
        want_classes = [type(c).__name__ for c in reference]
        ok = classes == want_classes and meta == expected["metadata"]
        diff = 0.0
        for ours, theirs in zip(cache, reference):
            ok &= describe([ours], storage=False) == describe([theirs], storage=False)
            for a, b in zip(temporal_state(ours), temporal_state(theirs)):
                ok &= a.shape == b.shape and a.dtype == b.dtype
                if a.shape == b.shape:
                    diff = max(diff, mx.max(mx.abs(a - b)).item())
        ok &= diff <= 1e-4
        offsets = [o.get("offset", o.get("offsets")) for o in describe(cache)]
        cont = greedy(model, cache, case)
        same = cont["tokens"] == expected["continuation"]["tokens"]
        print(
            f"{case}: {path.name}: classes {classes}, metadata {meta}, "
            f"offsets {offsets}, "
            f"max |ours - mlx-lm| over the cached keys/values {diff:.2e}; "
            f"continuation {cont['tokens']} {'==' if same else '!='} mlx-lm's {expected['continuation']['tokens']}"
        )
        if not (ok and same):
            failures += 1
            print(f"{case}: MISMATCH", file=sys.stderr)
    if failures:
        sys.exit(f"{failures} case(s) differ")
    print("all cases: mlx-lm reads our prompt caches and continues as from its own")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-ours", metavar="DIR", help="check the caches our tests wrote into DIR")
    args = parser.parse_args()
    mx.set_default_device(mx.cpu)
    model, _ = load_model(FIXTURES / "lm" / MODEL)
    if args.check_ours:
        check_ours(model, args.check_ours)
    else:
        generate(model)


if __name__ == "__main__":
    main()
