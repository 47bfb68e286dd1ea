#!/usr/bin/env python3
"""Golden fixtures of the model tests, written with Hugging Face transformers.

Writes tiny random checkpoints and their reference logits under
crates/mlx-lm/tests/fixtures/lm/:

- qwen3_tied/     dense Qwen3, tied embeddings
- qwen3_untied/   dense Qwen3 with its own lm_head, sharded in two files
                  (model.safetensors.index.json) to exercise shard loading
- qwen3_moe/      Qwen3-MoE: layer 0 dense (mlp_only_layers), layer 1 sparse,
                  8 experts, top-2, norm_topk_prob
- qwen3_moe_tie/  Qwen3-MoE whose router rows make two experts tie closely
                  (the 2nd and 3rd choice differ by ~1e-3 of the logit scale),
                  top-2 without renormalisation

Each directory holds what `save_pretrained` writes (config.json, weights in
float32) plus:

- inputs.json       the token ids (one row) and facts about the fixture
                    (for MoE: the router load-balancing `aux_loss`)
- logits_f32.npy    float32 logits of the float32 model, eager attention
- logits_bf16.npy   the logits of the same weights run in bfloat16 (stored
                    as float32)

Norm weights are drawn from U(0.5, 1.5) and the other weights from N(0, 0.05),
so a forgotten norm weight or a wrong scale shows in the logits.

Usage (the reference environment has transformers and a CPU torch):

    python scripts/gen_lm_fixtures.py                 # regenerate fixtures
    python scripts/gen_lm_fixtures.py --check-saved /tmp/mlx-lm-saved

`--check-saved DIR` checks that transformers loads what our saver writes:
the Rust test `saved_checkpoints_for_transformers` (crates/mlx-lm/tests/
checkpoint.rs) loads every fixture with our loader and saves it with our
saver to DIR/<fixture name> (DIR defaults to `$TMPDIR/mlx-lm-saved`);
this mode loads each of those directories with
`AutoModelForCausalLM.from_pretrained` and compares its logits with the
fixture's reference logits (they must agree to 1e-5), then does the same
with mlx-lm's `load_model` if mlx-lm can be imported (within 1e-4 of the
logit scale). Run the Rust test first:

    cargo test -p mlx-lm --test checkpoint saved_checkpoints_for_transformers
    python scripts/gen_lm_fixtures.py --check-saved /tmp/mlx-lm-saved
"""

import argparse
import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3MoeConfig

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "mlx-lm" / "tests" / "fixtures" / "lm"

TOKENS = [1, 17, 245, 999, 3, 500, 42, 42, 7, 800, 123, 0, 64, 311, 998, 5]

BASE = dict(
    vocab_size=1000,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    rms_norm_eps=1e-6,
    max_position_embeddings=512,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    hidden_act="silu",
)

MOE = dict(
    num_experts=8,
    num_experts_per_tok=2,
    decoder_sparse_step=1,
    mlp_only_layers=[0],
    moe_intermediate_size=32,
)


def fixtures():
    """(name, config, seed, shard size or None, post-init hook)."""
    return [
        ("qwen3_tied", Qwen3Config(**BASE, tie_word_embeddings=True), 1, None, None),
        ("qwen3_untied", Qwen3Config(**BASE, tie_word_embeddings=False), 2, "300KB", None),
        ("qwen3_moe", Qwen3MoeConfig(**BASE, **MOE, norm_topk_prob=True, tie_word_embeddings=True), 3, None, None),
        ("qwen3_moe_tie", Qwen3MoeConfig(**BASE, **MOE, norm_topk_prob=False, tie_word_embeddings=False), 4, None, make_tie),
    ]


def randomize(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def make_tie(model):
    """Router rows of layer 1: expert 2 = 4v (first choice where v.x > 0),
    experts 0 and 1 = 3v and 3v + small noise (they compete for the second
    place and differ by ~1e-3 of their logits)."""
    gate = model.model.layers[1].mlp.gate.weight
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        v = gate[0].clone()
        gate[0] = 3 * v
        gate[1] = 3 * v + 1e-3 * torch.randn(v.shape, generator=gen) * v.abs().mean()
        gate[2] = 4 * v


def tie_gap(model, ids):
    """Smallest relative gap between the 2nd and 3rd router probability of layer 1."""
    captured = {}

    def hook(_module, inputs, _output):
        captured["x"] = inputs[0]

    handle = model.model.layers[1].mlp.register_forward_hook(hook)
    with torch.no_grad():
        model(ids)
    handle.remove()
    x = captured["x"].reshape(-1, model.config.hidden_size)
    with torch.no_grad():
        probs = torch.softmax(x @ model.model.layers[1].mlp.gate.weight.T, dim=-1)
        top = torch.sort(probs, dim=-1, descending=True).values
    return float(((top[:, 1] - top[:, 2]) / top[:, 1]).min())


def logits_of(model, ids):
    with torch.no_grad():
        return model(ids).logits[0].float().numpy()


def generate():
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([TOKENS])
    for name, config, seed, shard, hook in fixtures():
        config._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.eval()
        randomize(model, seed)
        if hook is not None:
            hook(model)
        target = OUT / name
        if target.exists():
            shutil.rmtree(target)
        kwargs = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(target, **kwargs)
        f32 = logits_of(model, ids)
        bf16 = logits_of(copy.deepcopy(model).to(torch.bfloat16), ids)
        np.save(target / "logits_f32.npy", f32.astype(np.float32))
        np.save(target / "logits_bf16.npy", bf16.astype(np.float32))
        facts = {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokens": [TOKENS],
            "logit_scale": float(np.abs(f32).max()),
        }
        if hook is not None:
            facts["min_relative_router_gap"] = tie_gap(model, ids)
        if isinstance(config, Qwen3MoeConfig):
            with torch.no_grad():
                facts["aux_loss"] = float(model(ids, output_router_logits=True).aux_loss)
        (target / "inputs.json").write_text(json.dumps(facts, indent=2) + "\n")
        size = sum(f.stat().st_size for f in target.iterdir())
        print(f"{name}: {size / 1e6:.2f} MB, logit scale {facts['logit_scale']:.3f}")


def check_saved(saved: Path):
    ids = torch.tensor([TOKENS])
    failures = 0
    for name, *_ in fixtures():
        directory = saved / name
        if not directory.is_dir():
            print(f"{name}: {directory} missing (run the Rust test first)")
            failures += 1
            continue
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        got = logits_of(model, ids)
        want = np.load(OUT / name / "logits_f32.npy")
        diff = float(np.abs(got - want).max())
        ok = diff <= 1e-5
        failures += 0 if ok else 1
        print(f"{name}: transformers loads our save, max |diff| = {diff:.2e} {'ok' if ok else 'MISMATCH'}")
    failures += check_saved_with_mlx_lm(saved)
    sys.exit(1 if failures else 0)


def check_saved_with_mlx_lm(saved: Path) -> int:
    """The same with mlx-lm, when it can be imported (it needs MLX's library)."""
    try:
        import mlx.core as mx
        from mlx_lm.utils import load_model
    except (ImportError, OSError) as e:
        print(f"mlx-lm check skipped: {e}")
        return 0
    failures = 0
    for name, *_ in fixtures():
        directory = saved / name
        if not directory.is_dir():
            continue
        model, _ = load_model(directory)
        got = np.array(model(mx.array([TOKENS])).astype(mx.float32))[0]
        want = np.load(OUT / name / "logits_f32.npy")
        diff = float(np.abs(got - want).max())
        ok = diff <= 1e-4 * float(np.abs(want).max())
        failures += 0 if ok else 1
        print(f"{name}: mlx-lm loads our save, max |diff| = {diff:.2e} {'ok' if ok else 'MISMATCH'}")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-saved", type=Path, metavar="DIR", help="check checkpoints our saver wrote under DIR")
    args = parser.parse_args()
    if args.check_saved:
        check_saved(args.check_saved)
    else:
        generate()


if __name__ == "__main__":
    main()
