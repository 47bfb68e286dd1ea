#!/usr/bin/env python3
"""Regenerate the sampling and generation golden fixtures from mlx-lm itself.

Writes, under crates/mlx-lm/tests/fixtures/sample/:

- sampler_cases.json: seeded draws of mlx-lm's samplers (`make_sampler`) on
  fixed logits, the outputs of the individual filters (`apply_top_p`,
  `apply_min_p`, `apply_top_k`, `apply_xtc`) and of the logits processors
  (`make_logits_processors`) on fixed inputs.
- tiny-qwen3/: a tiny random Qwen3 checkpoint made and saved with mlx-lm
  (`mlx_lm.models.qwen3.Model`, `mlx_lm.utils.save_model` / `save_config`),
  with norm weights away from 1.
- generate_cases.json: token ids and their sampler log-probabilities from
  `mlx_lm.generate.generate_step` on that checkpoint, for several prompts,
  sampler / processor settings and seeds (`mx.random.seed(seed)` right
  before generation), plus greedy `batch_generate` outputs.

Conventions: float32 values are written as the exact double of the float32,
so parsing them as f32 is lossless; bfloat16 inputs are written as float32
values that bf16 represents exactly; `-inf` is written as null.

Usage (mlx 0.32.4 + mlx-lm 0.32.2; CPU is enough):

    python scripts/gen_sample_fixtures.py [--out crates/mlx-lm/tests/fixtures/sample]

If `import mlx.core` cannot find libmlx.so, point LD_LIBRARY_PATH at the
`mlx/lib` folder of the mlx-cpu wheel.
"""

import argparse
import json
import math
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx_lm
from mlx.utils import tree_flatten
from mlx_lm.generate import batch_generate, generate_step
from mlx_lm.models import qwen3
from mlx_lm.sample_utils import (
    apply_min_p,
    apply_top_k,
    apply_top_p,
    apply_xtc,
    make_logits_processors,
    make_sampler,
)
from mlx_lm.utils import save_config, save_model

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "crates" / "mlx-lm" / "tests" / "fixtures" / "sample"


def floats(a):
    """A float array as nested lists, -inf as None."""
    a = a.astype(mx.float32).tolist()

    def conv(x):
        if isinstance(x, list):
            return [conv(y) for y in x]
        return None if x == -math.inf else x

    return conv(a)


def sampler_kwargs(s):
    """make_sampler keyword arguments from a settings dict."""
    keys = [
        "temp",
        "top_p",
        "min_p",
        "min_tokens_to_keep",
        "top_k",
        "xtc_probability",
        "xtc_threshold",
        "xtc_special_tokens",
    ]
    return {k: s[k] for k in keys if k in s}


def processor_kwargs(p):
    """make_logits_processors keyword arguments from a settings dict."""
    out = dict(p)
    if "logit_bias" in out:
        out["logit_bias"] = {int(k): v for k, v in out["logit_bias"]}
    return out


# --- logits-level cases -----------------------------------------------------

SAMPLER_SETTINGS = [
    {"temp": 1.0},
    {"temp": 0.7},
    {"temp": 0.0},
    {"temp": 1.0, "top_p": 0.9},
    {"temp": 0.8, "top_p": 0.5},
    {"temp": 1.0, "min_p": 0.1},
    {"temp": 1.0, "min_p": 0.3, "min_tokens_to_keep": 4},
    {"temp": 1.0, "top_k": 5},
    {"temp": 1.3, "top_k": 1},
    {"temp": 1.0, "xtc_probability": 0.5, "xtc_threshold": 0.05},
    {"temp": 1.0, "xtc_probability": 1.0, "xtc_threshold": 0.1, "xtc_special_tokens": [0, 3]},
    {"temp": 0.9, "top_p": 0.95, "min_p": 0.05, "top_k": 10, "xtc_probability": 0.3, "xtc_threshold": 0.02},
]


def logits_inputs():
    """Fixed logits: (name, dtype, array)."""
    mx.random.seed(1234)
    out = []
    out.append(("normal_f32", "float32", (mx.random.normal((1, 64)) * 2.0)))
    out.append(("batch3_f32", "float32", (mx.random.normal((3, 48)) * 3.0)))
    out.append(("peaked_f32", "float32", mx.random.normal((1, 200)) * 6.0))
    out.append(("batch2_bf16", "bfloat16", (mx.random.normal((2, 40)) * 2.5).astype(mx.bfloat16)))
    return out


def sampler_cases():
    cases = []
    for name, dtype, logits in logits_inputs():
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        for settings in SAMPLER_SETTINGS:
            for seed in (0, 7):
                sampler = make_sampler(**sampler_kwargs(settings))
                mx.random.seed(seed)
                draws = []
                for _ in range(6):
                    draws.append(sampler(logprobs).tolist())
                cases.append(
                    {
                        "logits": name,
                        "settings": settings,
                        "seed": seed,
                        "draws": draws,
                    }
                )
    return cases


def filter_cases():
    cases = []
    for name, dtype, logits in logits_inputs():
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        for p in (0.1, 0.5, 0.9, 0.99):
            cases.append({"logits": name, "filter": "top_p", "args": [p], "out": floats(apply_top_p(logprobs, p))})
        for p, k in ((0.05, 1), (0.2, 1), (0.5, 3)):
            cases.append(
                {"logits": name, "filter": "min_p", "args": [p, k], "out": floats(apply_min_p(logprobs, p, k))}
            )
        for k in (1, 3, 17):
            cases.append({"logits": name, "filter": "top_k", "args": [k], "out": floats(apply_top_k(logprobs, k))})
        for thr, special in ((0.05, []), (0.1, [1, 2])):
            cases.append(
                {
                    "logits": name,
                    "filter": "xtc",
                    "args": [1.0, thr, special],
                    "out": floats(apply_xtc(logprobs, 1.0, thr, special)),
                }
            )
    return cases


PROCESSOR_SETTINGS = [
    {"logit_bias": [[3, 5.0], [10, -2.5]]},
    {"repetition_penalty": 1.3, "repetition_context_size": 4},
    {"repetition_penalty": 0.8},
    {"presence_penalty": 0.7, "presence_context_size": 6},
    {"frequency_penalty": 0.3, "frequency_context_size": 8},
    {"frequency_penalty": 0.1},
    {
        "logit_bias": [[1, 1.5]],
        "repetition_penalty": 1.5,
        "repetition_context_size": 5,
        "presence_penalty": 0.5,
        "presence_context_size": 5,
        "frequency_penalty": 0.25,
        "frequency_context_size": 5,
    },
]


def processor_cases():
    cases = []
    context = [3, 7, 7, 1, 0, 3, 3, 12, 7, 5, 3]
    for name, dtype, logits in logits_inputs():
        for settings in PROCESSOR_SETTINGS:
            # The penalties write into their input: give each case a copy.
            out = mx.array(logits)
            for proc in make_logits_processors(**processor_kwargs(settings)):
                out = proc(mx.array(context), out)
            cases.append({"logits": name, "settings": settings, "context": context, "out": floats(out)})
    return cases


# --- tiny model -------------------------------------------------------------

TINY_CONFIG = {
    "model_type": "qwen3",
    "architectures": ["Qwen3ForCausalLM"],
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "rms_norm_eps": 1e-6,
    "vocab_size": 256,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def make_tiny_model():
    mx.random.seed(20240607)
    args = qwen3.ModelArgs.from_dict(TINY_CONFIG)
    model = qwen3.Model(args)
    params = dict(tree_flatten(model.parameters()))
    new = []
    for k, v in params.items():
        if k.endswith("norm.weight"):
            new.append((k, mx.random.uniform(0.5, 1.5, v.shape)))
        elif k.endswith("embed_tokens.weight"):
            new.append((k, mx.random.normal(v.shape) * 0.5))
        elif k == "lm_head.weight":
            # Scaled so that next-token distributions are neither flat nor
            # one-hot (top probabilities of roughly 0.1 to 0.5).
            new.append((k, mx.random.normal(v.shape) * 0.25))
        else:
            new.append((k, v))
    model.load_weights(new)
    mx.eval(model.parameters())
    return model


GEN_SETTINGS = [
    {"sampler": {"temp": 0.0}},
    {"sampler": {"temp": 1.0}},
    {"sampler": {"temp": 0.7, "top_p": 0.9}},
    {"sampler": {"temp": 1.0, "top_k": 8}},
    {"sampler": {"temp": 1.0, "min_p": 0.05, "min_tokens_to_keep": 2}},
    {"sampler": {"temp": 1.0, "xtc_probability": 0.5, "xtc_threshold": 0.01, "xtc_special_tokens": [2]}},
    {"sampler": {"temp": 0.0}, "processors": {"repetition_penalty": 1.5, "repetition_context_size": 8}},
    {"sampler": {"temp": 0.9}, "processors": {"presence_penalty": 0.8, "frequency_penalty": 0.4}},
    {"sampler": {"temp": 1.0, "top_p": 0.8}, "processors": {"logit_bias": [[17, 3.0], [100, 2.0]]}},
]

PROMPTS = [[1, 45, 67, 89, 12, 200], [1, 5], [9, 8, 7, 6, 5, 4, 3, 2 + 1, 250, 13, 77, 31]]


def generate_cases(model):
    cases = []
    for settings in GEN_SETTINGS:
        for pi, prompt in enumerate(PROMPTS):
            for seed in (0, 11):
                sampler = make_sampler(**sampler_kwargs(settings["sampler"]))
                procs = make_logits_processors(**processor_kwargs(settings.get("processors", {})))
                mx.random.seed(seed)
                tokens, logprobs = [], []
                for tok, lp in generate_step(
                    mx.array(prompt),
                    model,
                    max_tokens=10,
                    sampler=sampler,
                    logits_processors=procs,
                    prefill_step_size=4,
                ):
                    tokens.append(tok)
                    logprobs.append(lp[tok].item())
                cases.append(
                    {
                        "settings": settings,
                        "prompt": prompt,
                        "seed": seed,
                        "tokens": tokens,
                        "logprobs": logprobs,
                    }
                )
    return cases


class _StubTokenizer:
    """What batch_generate needs from a tokenizer: EOS ids and decode."""

    eos_token_ids = [2]

    def decode(self, ids):
        return " ".join(str(i) for i in ids)


def batch_cases(model):
    resp = batch_generate(
        model,
        _StubTokenizer(),
        [list(p) for p in PROMPTS],
        max_tokens=12,
        return_token_ids=True,
        return_logprobs=True,
    )
    return {"prompts": PROMPTS, "max_tokens": 12, "eos": [2], "tokens": resp.token_ids, "logprobs": resp.logprobs}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    meta = {"mlx": mx.__version__, "mlx_lm": mlx_lm.__version__, "script": "scripts/gen_sample_fixtures.py"}

    inputs = {name: {"dtype": dtype, "values": floats(a)} for name, dtype, a in logits_inputs()}
    sampler = {
        "meta": meta,
        "logits": inputs,
        "sampler": sampler_cases(),
        "filters": filter_cases(),
        "processors": processor_cases(),
    }
    (out / "sampler_cases.json").write_text(json.dumps(sampler) + "\n")

    model = make_tiny_model()
    model_dir = out / "tiny-qwen3"
    save_model(model_dir, model)
    save_config(dict(TINY_CONFIG), model_dir / "config.json")

    gen = {"meta": meta, "model": "tiny-qwen3", "max_tokens": 10, "prefill_step_size": 4}
    gen["cases"] = generate_cases(model)
    gen["batch_greedy"] = batch_cases(model)
    (out / "generate_cases.json").write_text(json.dumps(gen) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
