#!/usr/bin/env python3
"""End-to-end check of examples/grpo.rs on a Hugging Face-layout checkpoint.

1. Writes a tiny random Qwen3 with transformers (``save_pretrained``: hidden
   64, 2 layers, 2 query / 1 key-value heads of 32, the full vocabulary of
   151,936 so that it covers the real Qwen3 tokenizer, random norm weights)
   and copies the Qwen3 tokenizer files in (the repository's ``assets/qwen3-tokenizer``
   or ``--tokenizer DIR``).
2. Writes a small JSONL dataset (text prompts and chat prompts with answers)
   and a TOML config with TRL's field names.
3. Runs ``cargo run --release --example grpo`` for a few steps.
4. Loads the saved checkpoint back with ``AutoModelForCausalLM.from_pretrained``
   and ``AutoTokenizer``, checks that the weights changed from the starting
   ones and compares transformers' per-token log-probabilities of a sequence
   with ``examples/score.rs`` on the same checkpoint.
5. Runs ``examples/generate.rs`` on the checkpoint (chat template, sampling).

    /work/venv-ref/bin/python scripts/compare/grpo_example_check.py [--work DIR] [--steps 2]

Needs torch and transformers (the reference environment). Exits non-zero on
the first failed check.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "assets" / "qwen3-tokenizer"

DATASET = [
    {"prompt": "What is 2+3? Answer with a number.", "answer": "5"},
    {"prompt": [{"role": "user", "content": "What is 7*6?"}], "answer": "42"},
    {"prompt": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is 10-4?"}], "answer": "6"},
    {"prompt": "Name the number after 9.", "answer": "10"},
]

CONFIG = """\
# GRPO settings (TRL's GRPOConfig names)
num_generations = 4
per_device_train_batch_size = 4
gradient_accumulation_steps = 2
max_completion_length = 16
temperature = 1.0
loss_type = "dapo"
beta = 0.04
learning_rate = 1e-3
# A random model earns no reward (zero advantages, zero gradients): weight
# decay still moves every weight, so the saved checkpoint differs from the
# starting one.
weight_decay = 0.1
max_steps = {steps}
logging_steps = 1
save_steps = 1
save_total_limit = 2
seed = 7
output_dir = "{output}"
"""


def run(cmd, **kwargs):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True, **kwargs)


def write_checkpoint(model_dir, tokenizer_dir):
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, rms_norm_eps=1e-6,
        max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=151643, eos_token_id=151645, pad_token_id=151643)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # norm weights other than 1, so a dropped one shows
                p.uniform_(0.5, 1.5)
    model.save_pretrained(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, model_dir / name)
    return model


def score_ours(checkpoint, tokens):
    out = run(["cargo", "run", "--release", "-q", "--example", "score", "--",
               "--model", checkpoint, "--tokens", ",".join(map(str, tokens)), "--json"],
              capture_output=True, text=True)
    text = out.stdout
    return [row["logprob"] for row in json.loads(text[text.index("{"):])["scores"]]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", help="working directory (default: a temporary one, removed)")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    a = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = None
    if a.work:
        work = Path(a.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory()
        work = Path(tmp.name)
    model_dir, out_dir = work / "model", work / "run"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    start = write_checkpoint(model_dir, a.tokenizer)
    (work / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in DATASET))
    (work / "grpo.toml").write_text(CONFIG.format(steps=a.steps, output=out_dir))

    run(["cargo", "run", "--release", "--example", "grpo", "--", "--model", model_dir,
         "--dataset", work / "data.jsonl", "--config", work / "grpo.toml",
         "--reward", "accuracy,format", "--set", "log_completions=true"])

    checkpoint = out_dir / f"checkpoint-{a.steps}" / "model"
    if not checkpoint.is_dir():
        sys.exit(f"no checkpoint at {checkpoint}: {sorted(p.name for p in out_dir.iterdir())}")
    print(f"checkpoint: {sorted(p.name for p in checkpoint.iterdir())}")
    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    model.eval()
    before, after = start.state_dict(), model.state_dict()
    missing = sorted(set(before) ^ set(after))
    if missing:
        sys.exit(f"parameter names differ after training: {missing[:5]}")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    print(f"transformers loaded the checkpoint: {len(after)} tensors, {len(changed)} changed by training")
    if not changed:
        sys.exit("no weight changed in training")

    text = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}],
                                   tokenize=False, add_generation_prompt=True) + "5"
    tokens = tok(text)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].float()
    logps = torch.log_softmax(logits, -1)[:-1].gather(1, torch.tensor(tokens[1:])[:, None])[:, 0]
    ours_logps = torch.tensor(score_ours(checkpoint, tokens))
    diff = (ours_logps - logps).abs().max().item()
    print(f"log-probabilities of {len(tokens)} tokens: max |ours - transformers| = {diff:.2e}")
    if diff > 1e-3:
        sys.exit("log-probabilities disagree")

    run(["cargo", "run", "--release", "-q", "--example", "generate", "--", "--model", checkpoint,
         "--prompt", "What is 2+3?", "--max-tokens", "12", "--seed", "1"])
    print("all checks passed")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
