#!/usr/bin/env python3
"""Generate tests/fixtures/trl_grpo.json: golden GRPO numbers from TRL 1.16 itself.

Every number in the fixture is produced by TRL's own code, run on small random
float32 tensors:

* advantages: the reward-to-advantage block of
  ``GRPOTrainer._generate_and_score_completions`` (from ``unscorable_mask = ...``
  to the ``frac_reward_zero_std`` metric). That block has no function of its
  own, so the script reads the installed method's source, cuts the block out
  between those two fixed lines and executes it, unchanged, in the
  ``trl.trainer.grpo_trainer`` module namespace with a stub ``self``.
* losses: ``GRPOTrainer._compute_loss`` called on a bare ``GRPOTrainer``
  instance (``__new__``, no ``__init__``) whose attributes are set from the
  case's config, whose accelerator is a single-process stub, and whose
  ``_get_per_token_logps_and_entropies`` returns the case's fixed
  ``per_token_logps`` (a leaf tensor, so the gradient of the loss is recorded
  too) and entropies instead of running a model.
* masks and weights: ``GRPOTrainer.get_high_entropy_mask``,
  ``GRPOTrainer.get_off_policy_mask`` and ``GRPOTrainer.get_gamma_weights``.

Conventions in the JSON: tensors are nested lists (row-major), ``null`` stands
for NaN, masks are 0/1 numbers, float32 values are written as the exact double
of the float32 (so parsing them as f32 is lossless). ``meta.sections`` explains
each section and its fields.

Usage (CPU is enough; the reference stack is not needed in CI):

    python -m venv venv && venv/bin/pip install trl==1.16.0 torch transformers
    venv/bin/python scripts/gen_grpo_fixtures.py            # writes tests/fixtures/trl_grpo.json
    venv/bin/python scripts/gen_grpo_fixtures.py --out x.json
"""

import argparse
import inspect
import json
import math
import textwrap
import types
from collections import defaultdict
from pathlib import Path

import torch
import transformers
import trl
import trl.trainer.grpo_trainer as grpo_module
from trl import GRPOTrainer

SEED = 1234
ADV_START = "unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)"
ADV_END = 'self._metrics[mode]["frac_reward_zero_std"]'


# ----------------------------------------------------------------------------- helpers


def clean(x):
    """Tensors/floats -> JSON-ready lists with NaN as None."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().tolist() if x.dtype != torch.bool else x.detach().to(torch.int64).tolist()
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    return x


def metrics_dict(metrics):
    """TRL's metric lists (one value appended per call) -> {name: value}."""
    return {name: values[-1] for name, values in metrics.items() if values}


class SingleProcessAccelerator:
    """The accelerator calls `_compute_loss` and the masks make, for one process."""

    num_processes = 1
    process_index = 0
    sync_gradients = True
    device = torch.device("cpu")

    def gather(self, tensor):
        return tensor

    def gather_for_metrics(self, tensor):
        return tensor

    def pad_across_processes(self, tensor, dim=0, pad_index=0):
        return tensor

    def reduce(self, tensor, reduction="sum"):
        return tensor


# ----------------------------------------------------------------------------- (a) advantages


def advantage_block():
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions).splitlines()
    starts = [i for i, line in enumerate(source) if line.strip() == ADV_START]
    ends = [i for i, line in enumerate(source) if line.strip().startswith(ADV_END)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] <= starts[0]:
        raise SystemExit("cannot locate the advantage block in GRPOTrainer._generate_and_score_completions")
    block = textwrap.dedent("\n".join(source[starts[0] : ends[0] + 1]))
    return compile(block, "<GRPOTrainer._generate_and_score_completions: advantages>", "exec")


def run_advantages(code, rewards_per_func, weights, names, num_generations, scale_rewards, aggregation):
    stub = types.SimpleNamespace(
        reward_weights=torch.tensor(weights, dtype=torch.float32),
        reward_funcs=[None] * len(names),
        reward_func_names=names,
        multi_objective_aggregation=aggregation,
        scale_rewards=scale_rewards,
        accelerator=SingleProcessAccelerator(),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    namespace = dict(vars(grpo_module))
    namespace.update(
        self=stub,
        rewards_per_func=rewards_per_func.clone(),
        num_generations=num_generations,
        device=torch.device("cpu"),
        mode="train",
        prompts=[None] * rewards_per_func.shape[0],
    )
    exec(code, namespace)
    return namespace["advantages"], metrics_dict(stub._metrics["train"])


def advantage_cases():
    gen = torch.Generator().manual_seed(SEED)
    nan = float("nan")
    matrices = []

    matrices.append(("normal_g4_f1", torch.randn(8, 1, generator=gen), [1.0], 4))
    matrices.append(("normal_g4_f2_weighted", torch.randn(8, 2, generator=gen), [1.0, 0.5], 4))
    binary = (torch.rand(6, 3, generator=gen) > 0.5).float()
    binary[0:3, :] = torch.tensor([1.0, 0.0, 1.0])  # first group: identical rows -> zero std
    matrices.append(("binary_g3_f3_zero_std_group", binary, [1.0, 2.0, -0.5], 3))
    with_nan = torch.randn(8, 2, generator=gen)
    with_nan[1, :] = nan  # unscorable completion
    with_nan[2, 1] = nan
    with_nan[5, 0] = nan
    with_nan[4:8, 1] = torch.tensor([nan, nan, nan, 0.7])  # second function scores once in group 1
    matrices.append(("nan_g4_f2", with_nan, [1.0, 1.0], 4))
    constant = torch.tensor([[1.0], [1.0], [0.5], [0.5], [2.0], [0.0], [3.0], [3.0]])
    matrices.append(("constant_groups_g2_f1", constant, [1.0], 2))
    scale = torch.randn(8, 2, generator=gen) * torch.tensor([10.0, 0.1])
    matrices.append(("different_scales_g2_f2", scale, [0.3, 3.0], 2))
    one_scorable_group = torch.tensor([[nan], [nan], [nan], [1.0], [0.0], [1.0]])
    matrices.append(("all_nan_group_g3_f1", one_scorable_group, [1.0], 3))

    code = advantage_block()
    cases = []
    for name, matrix, weights, g in matrices:
        matrix = matrix.float()
        names = [f"r{j}" for j in range(matrix.shape[1])]
        for aggregation in ("sum_then_normalize", "normalize_then_sum"):
            for scale in ("group", "batch", "none"):
                advantages, metrics = run_advantages(code, matrix, weights, names, g, scale, aggregation)
                cases.append(
                    {
                        "name": f"{name}/{aggregation}/{scale}",
                        "config": {
                            "num_generations": g,
                            "scale_rewards": scale,
                            "multi_objective_aggregation": aggregation,
                            "reward_weights": weights,
                            "reward_func_names": names,
                        },
                        "rewards_per_func": clean(matrix),
                        "advantages": clean(advantages),
                        "metrics": clean(metrics),
                    }
                )
    return cases


# ----------------------------------------------------------------------------- (b) losses

LOSS_DEFAULTS = {
    "loss_type": "dapo",
    "importance_sampling_level": "token",
    "beta": 0.0,
    "epsilon": 0.2,
    "epsilon_high": None,
    "delta": None,
    "sapo_temperature_pos": 1.0,
    "sapo_temperature_neg": 1.05,
    "vespo_k_pos": 2.0,
    "vespo_lambda_pos": 3.0,
    "vespo_k_neg": 3.0,
    "vespo_lambda_neg": 2.0,
    "top_entropy_quantile": 1.0,
    "off_policy_mask_threshold": None,
    "use_bias_correction_kl": True,
    "entropy_coef": 0.0,
    "max_completion_length": 8,
    "gradient_accumulation_steps": 1,
    "steps_per_generation": 1,
}


def make_trainer(cfg, per_token_logps, entropies):
    trainer = GRPOTrainer.__new__(GRPOTrainer)
    trainer.args = types.SimpleNamespace(
        use_bias_correction_kl=cfg["use_bias_correction_kl"],
        delta=cfg["delta"],
        sapo_temperature_pos=cfg["sapo_temperature_pos"],
        sapo_temperature_neg=cfg["sapo_temperature_neg"],
        vespo_k_pos=cfg["vespo_k_pos"],
        vespo_lambda_pos=cfg["vespo_lambda_pos"],
        vespo_k_neg=cfg["vespo_k_neg"],
        vespo_lambda_neg=cfg["vespo_lambda_neg"],
        steps_per_generation=cfg["steps_per_generation"],
        entropy_target=0.2,
        entropy_coef_delta=0.005,
        entropy_coef_min=0.0,
        entropy_coef_max=1.0,
    )
    trainer.model = types.SimpleNamespace(training=True)
    trainer.accelerator = SingleProcessAccelerator()
    trainer.loss_type = cfg["loss_type"]
    trainer.importance_sampling_level = cfg["importance_sampling_level"]
    trainer.beta = cfg["beta"]
    trainer.epsilon_low = cfg["epsilon"]
    trainer.epsilon_high = cfg["epsilon_high"] if cfg["epsilon_high"] is not None else cfg["epsilon"]
    trainer.top_entropy_quantile = cfg["top_entropy_quantile"]
    trainer.off_policy_mask_threshold = cfg["off_policy_mask_threshold"]
    trainer.max_completion_length = cfg["max_completion_length"]
    trainer.current_gradient_accumulation_steps = cfg["gradient_accumulation_steps"]
    trainer.use_vllm = False
    trainer.vllm_importance_sampling_correction = False
    trainer.aux_loss_enabled = False
    trainer.entropy_coef = cfg["entropy_coef"]
    trainer.use_adaptive_entropy = False
    trainer._entropy_bonus_enabled = cfg["entropy_coef"] != 0.0
    trainer._last_world_entropy = float("inf")
    trainer._entropy_window_stats = None
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    def fixed_logps(model, input_ids, attention_mask, logits_to_keep, compute_entropy=False, **kwargs):
        return per_token_logps, (entropies if compute_entropy else None), None

    trainer._get_per_token_logps_and_entropies = fixed_logps
    return trainer


def loss_inputs(gen, lengths, T):
    B = len(lengths)
    mask = torch.zeros(B, T, dtype=torch.int64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    logps = -(torch.rand(B, T, generator=gen) * 2.0 + 0.05)
    old = logps + 0.3 * torch.randn(B, T, generator=gen)
    ref = logps + 0.2 * torch.randn(B, T, generator=gen)
    advantages = torch.randn(B, generator=gen)
    advantages[0], advantages[1] = abs(advantages[0]) + 0.1, -abs(advantages[1]) - 0.1
    entropies = torch.rand(B, T, generator=gen) * 3.0
    return mask, logps.float(), old.float(), ref.float(), advantages.float(), entropies.float()


def run_loss(name, overrides, gen, lengths=(5, 3, 1, 4), T=5, on_policy=False, extra_tokens=0):
    cfg = dict(LOSS_DEFAULTS, **overrides)
    mask, logps, old, ref, advantages, entropies = loss_inputs(gen, list(lengths), T)
    per_token_logps = logps.clone().requires_grad_(True)
    trainer = make_trainer(cfg, per_token_logps, entropies)
    # The generation batch may span other micro-batches: their active tokens are `extra_tokens`.
    num_items_in_batch = mask.sum() + extra_tokens
    inputs = {
        "prompt_ids": torch.zeros(len(lengths), 1, dtype=torch.int64),
        "prompt_mask": torch.ones(len(lengths), 1, dtype=torch.int64),
        "completion_ids": torch.zeros(len(lengths), T, dtype=torch.int64),
        "completion_mask": mask,
        "advantages": advantages,
        "num_items_in_batch": num_items_in_batch,
    }
    if not on_policy:
        inputs["old_per_token_logps"] = old
    if cfg["beta"] != 0.0:
        inputs["ref_per_token_logps"] = ref
    loss = GRPOTrainer._compute_loss(trainer, None, inputs)
    loss.backward()
    return {
        "name": name,
        "config": cfg,
        "inputs": {
            "per_token_logps": clean(logps),
            "old_per_token_logps": None if on_policy else clean(old),
            "ref_per_token_logps": clean(ref) if cfg["beta"] != 0.0 else None,
            "advantages": clean(advantages),
            "completion_mask": clean(mask),
            "entropies": clean(entropies),
            "num_items_in_batch": int(num_items_in_batch),
        },
        "expected": {
            "loss": loss.item(),
            "grad_per_token_logps": clean(per_token_logps.grad),
            "metrics": clean(metrics_dict(trainer._metrics["train"])),
        },
    }


def loss_cases():
    gen = torch.Generator().manual_seed(SEED + 1)
    cases = []
    loss_types = ["grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo"]
    for loss_type in loss_types:
        for level in ("token", "sequence"):
            for beta in (0.0, 0.04):
                overrides = {"loss_type": loss_type, "importance_sampling_level": level, "beta": beta}
                cases.append(run_loss(f"{loss_type}/{level}/beta={beta}", overrides, gen))
    variants = [
        ("grpo/on_policy/beta=0.04", {"loss_type": "grpo", "beta": 0.04}, {"on_policy": True}),
        ("dapo/on_policy/beta=0.04", {"loss_type": "dapo", "beta": 0.04}, {"on_policy": True}),
        ("cispo/on_policy", {"loss_type": "cispo", "epsilon_high": 5.0}, {"on_policy": True}),
        ("vespo/on_policy", {"loss_type": "vespo"}, {"on_policy": True}),
        ("sapo/sequence/on_policy", {"loss_type": "sapo", "importance_sampling_level": "sequence"}, {"on_policy": True}),
        ("cispo/epsilon_high=5", {"loss_type": "cispo", "epsilon_high": 5.0}, {}),
        ("dapo/epsilon_high=0.28", {"loss_type": "dapo", "epsilon_high": 0.28}, {}),
        ("grpo/delta=1.5", {"loss_type": "grpo", "delta": 1.5, "epsilon_high": 0.28}, {}),
        ("luspo/sequence/delta=1.3", {"loss_type": "luspo", "importance_sampling_level": "sequence", "delta": 1.3}, {}),
        ("dapo/top_entropy_quantile=0.5", {"loss_type": "dapo", "top_entropy_quantile": 0.5}, {}),
        ("grpo/top_entropy_quantile=0.2/beta=0.04", {"loss_type": "grpo", "top_entropy_quantile": 0.2, "beta": 0.04}, {}),
        ("grpo/off_policy_mask=0.05", {"loss_type": "grpo", "off_policy_mask_threshold": 0.05}, {}),
        ("dapo/sequence/off_policy_mask=0.0", {"loss_type": "dapo", "importance_sampling_level": "sequence", "off_policy_mask_threshold": 0.0}, {}),
        ("dapo/entropy_coef=0.01", {"loss_type": "dapo", "entropy_coef": 0.01}, {}),
        ("grpo/entropy_coef=0.05/top_entropy_quantile=0.5", {"loss_type": "grpo", "entropy_coef": 0.05, "top_entropy_quantile": 0.5}, {}),
        ("grpo/no_bias_correction_kl/beta=0.04", {"loss_type": "grpo", "beta": 0.04, "use_bias_correction_kl": False}, {}),
        ("sapo/sequence/no_bias_correction_kl/beta=0.04", {"loss_type": "sapo", "importance_sampling_level": "sequence", "beta": 0.04, "use_bias_correction_kl": False}, {}),
        ("sapo/temperatures", {"loss_type": "sapo", "sapo_temperature_pos": 0.5, "sapo_temperature_neg": 2.0}, {}),
        ("vespo/custom_params", {"loss_type": "vespo", "vespo_k_pos": 1.0, "vespo_lambda_pos": 0.5, "vespo_k_neg": 4.0, "vespo_lambda_neg": 5.0}, {}),
        ("dapo/grad_accum=2/spg=2", {"loss_type": "dapo", "gradient_accumulation_steps": 2, "steps_per_generation": 2}, {"extra_tokens": 11}),
        ("cispo/grad_accum=4/spg=2", {"loss_type": "cispo", "gradient_accumulation_steps": 4, "steps_per_generation": 2, "epsilon_high": 5.0}, {"extra_tokens": 7}),
        ("vespo/grad_accum=2/spg=4", {"loss_type": "vespo", "gradient_accumulation_steps": 2, "steps_per_generation": 4}, {"extra_tokens": 30}),
        ("grpo/grad_accum=2", {"loss_type": "grpo", "gradient_accumulation_steps": 2, "steps_per_generation": 2}, {"extra_tokens": 9}),
        ("bnpo/grad_accum=3", {"loss_type": "bnpo", "gradient_accumulation_steps": 3, "steps_per_generation": 3}, {"extra_tokens": 20}),
        ("dr_grpo/grad_accum=2/max_completion_length=16", {"loss_type": "dr_grpo", "gradient_accumulation_steps": 2, "steps_per_generation": 2, "max_completion_length": 16}, {"extra_tokens": 9}),
        ("luspo/grad_accum=2", {"loss_type": "luspo", "importance_sampling_level": "sequence", "gradient_accumulation_steps": 2, "steps_per_generation": 2}, {"extra_tokens": 9}),
        ("grpo/empty_row/beta=0.04", {"loss_type": "grpo", "beta": 0.04}, {"lengths": (4, 0, 2, 3)}),
        ("grpo/sequence/empty_row", {"loss_type": "grpo", "importance_sampling_level": "sequence"}, {"lengths": (4, 0, 2, 3)}),
        ("dapo/empty_row/top_entropy_quantile=0.5", {"loss_type": "dapo", "top_entropy_quantile": 0.5}, {"lengths": (4, 0, 2, 3)}),
        ("vespo/empty_row", {"loss_type": "vespo"}, {"lengths": (4, 0, 2, 3)}),
        ("dapo/larger_batch", {"loss_type": "dapo", "beta": 0.04, "epsilon_high": 0.28}, {"lengths": (7, 2, 7, 5, 1, 6), "T": 7}),
    ]
    for name, overrides, kwargs in variants:
        cases.append(run_loss(name, overrides, gen, **kwargs))
    return cases


# ----------------------------------------------------------------------------- (c) masks, (d) gamma weights


def entropy_mask_cases():
    gen = torch.Generator().manual_seed(SEED + 2)
    trainer = GRPOTrainer.__new__(GRPOTrainer)
    trainer.accelerator = SingleProcessAccelerator()
    cases = []
    lengths = [6, 4, 1, 5]
    mask = torch.zeros(4, 6, dtype=torch.int64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    entropies = torch.rand(4, 6, generator=gen) * 3.0
    ties = torch.tensor([[0.5, 0.5, 1.0, 1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    ties_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    inputs = [
        ("random", entropies, mask),
        ("ties", ties, ties_mask),
        ("all_masked", entropies[:2], torch.zeros(2, 6, dtype=torch.int64)),
    ]
    for name, ent, m in inputs:
        for threshold in (0.0, 0.2, 0.5, 0.8, 1.0):
            out = GRPOTrainer.get_high_entropy_mask(trainer, ent.float(), m, threshold)
            cases.append(
                {
                    "name": f"{name}/threshold={threshold}",
                    "threshold": threshold,
                    "top_entropy_quantile": 1.0 - threshold,
                    "entropies": clean(ent.float()),
                    "mask": clean(m),
                    "expected": clean(out),
                }
            )
    return cases


def off_policy_mask_cases():
    gen = torch.Generator().manual_seed(SEED + 3)
    B, T = 6, 5
    mask = torch.zeros(B, T, dtype=torch.int64)
    for i, n in enumerate([5, 3, 1, 4, 0, 2]):
        mask[i, :n] = 1
    logps = -(torch.rand(B, T, generator=gen) * 2.0 + 0.05)
    sampling = logps + 0.2 * torch.randn(B, T, generator=gen)
    advantages = torch.tensor([[0.7], [-0.4], [0.0], [-1.2], [-0.3], [-0.01]])
    cases = []
    for threshold in (0.0, 0.05, 0.5):
        out = GRPOTrainer.get_off_policy_mask(advantages, logps, sampling, mask, threshold)
        cases.append(
            {
                "name": f"threshold={threshold}",
                "threshold": threshold,
                "advantages": clean(advantages),
                "per_token_logps": clean(logps),
                "sampling_per_token_logps": clean(sampling),
                "mask": clean(mask),
                "expected": clean(out),
            }
        )
    return cases


def gamma_weight_cases():
    gen = torch.Generator().manual_seed(SEED + 4)
    B, T = 6, 5
    mask = torch.zeros(B, T, dtype=torch.int64)
    for i, n in enumerate([5, 3, 1, 4, 0, 5]):
        mask[i, :n] = 1
    log_ratio = 0.2 * torch.randn(B, T, generator=gen)
    log_ratio[5] = torch.tensor([9.0, 8.0, 30.0, -25.0, 5.0])  # exercises the +-20 clamps
    advantages = torch.tensor([[0.7], [-0.4], [0.0], [-1.2], [0.3], [1.0]])
    is_ratio = torch.exp(0.1 * torch.randn(B, T, generator=gen))
    params = [
        ("default", dict(k_pos=2.0, lambda_pos=3.0, k_neg=3.0, lambda_neg=2.0)),
        ("custom", dict(k_pos=1.0, lambda_pos=0.5, k_neg=4.0, lambda_neg=5.0)),
        ("zero_lambda", dict(k_pos=2.0, lambda_pos=0.0, k_neg=3.0, lambda_neg=2.0)),
    ]
    cases = []
    for name, kw in params:
        for with_is in (False, True):
            ratio = is_ratio if with_is else None
            out = GRPOTrainer.get_gamma_weights(advantages, log_ratio, mask, ratio, **kw)
            cases.append(
                {
                    "name": f"{name}/importance_sampling_ratio={'yes' if with_is else 'none'}",
                    "params": kw,
                    "advantages": clean(advantages),
                    "log_ratio_per_token": clean(log_ratio),
                    "mask": clean(mask),
                    "importance_sampling_ratio": clean(ratio) if with_is else None,
                    "expected": clean(out),
                }
            )
    return cases


# ----------------------------------------------------------------------------- main

SECTIONS = {
    "advantages": (
        "rewards_per_func [B, F] (null = NaN, the reward function returned None) with config "
        "{num_generations, scale_rewards, multi_objective_aggregation, reward_weights, reward_func_names} -> "
        "advantages [B] and the metrics TRL logs (reward, reward_std, frac_reward_zero_std, "
        "rewards/<name>/mean, rewards/<name>/std; null = NaN)."
    ),
    "loss": (
        "One call of GRPOTrainer._compute_loss in train mode on one process. inputs: per_token_logps, "
        "old_per_token_logps (null: absent, TRL then uses per_token_logps.detach()), ref_per_token_logps "
        "(null when beta = 0), entropies (the model's per-token entropies), all [B, T] float32; advantages [B]; "
        "completion_mask [B, T] (right-padded; padded positions hold random values that must be masked out); "
        "num_items_in_batch (active tokens of the whole generation batch, i.e. this micro-batch's plus other "
        "micro-batches'). config: the GRPOConfig fields that matter, plus gradient_accumulation_steps (TRL's "
        "current_gradient_accumulation_steps) and steps_per_generation. expected: loss (the value returned, already "
        "divided for gradient accumulation where TRL does so), grad_per_token_logps (d loss / d per_token_logps) and "
        "the metrics appended by this call."
    ),
    "entropy_mask": (
        "GRPOTrainer.get_high_entropy_mask(entropies, mask, threshold); _compute_loss passes "
        "threshold = 1 - top_entropy_quantile. expected: 0/1 [B, T]."
    ),
    "off_policy_mask": (
        "GRPOTrainer.get_off_policy_mask(advantages [B, 1], per_token_logps, sampling_per_token_logps, mask, "
        "threshold). expected: 0/1 [B, 1] (1 = keep)."
    ),
    "gamma_weights": (
        "GRPOTrainer.get_gamma_weights(advantages [B, 1], log_ratio_per_token [B, T], mask, "
        "importance_sampling_ratio [B, T] or null, k_pos, lambda_pos, k_neg, lambda_neg). expected: phi [B, 1]."
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_out = Path(__file__).resolve().parent.parent / "crates" / "mlx-grpo" / "tests" / "fixtures" / "trl_grpo.json"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    if trl.__version__ != "1.16.0":
        raise SystemExit(f"expected trl 1.16.0, found {trl.__version__}")
    torch.manual_seed(SEED)
    fixture = {
        "meta": {
            "generator": "scripts/gen_grpo_fixtures.py",
            "trl": trl.__version__,
            "torch": torch.__version__.split("+")[0],
            "transformers": transformers.__version__,
            "seed": SEED,
            "dtype": "float32",
            "nan": "null",
            "sections": SECTIONS,
        },
        "advantages": advantage_cases(),
        "loss": loss_cases(),
        "entropy_mask": entropy_mask_cases(),
        "off_policy_mask": off_policy_mask_cases(),
        "gamma_weights": gamma_weight_cases(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, allow_nan=False, separators=(",", ":")) + "\n")
    counts = {k: len(v) for k, v in fixture.items() if isinstance(v, list)}
    print(f"wrote {args.out} {counts}")


if __name__ == "__main__":
    main()
