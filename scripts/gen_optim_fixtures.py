#!/usr/bin/env python3
"""Generate the golden fixtures of the mlx-nn tests from MLX Python (mlx 0.32.4).

Writes two safetensors files under crates/mlx-nn/tests/fixtures/:

- optim.safetensors: optimizer trajectories, learning-rate schedules and
  gradient clipping computed by ``mlx.optimizers``.
  * For each optimizer case: two parameters (``layer.weight`` [4, 3] and
    ``layer.bias`` [3]) and a fresh random gradient per step, fed through
    ``Optimizer.apply_gradients`` for several steps. Tensors:
    ``<case>/init/<param>``, ``<case>/grad/<t>/<param>``,
    ``<case>/out/<t>/<param>`` (the parameter after step t, t = 1..steps)
    and ``<case>/state/<param>.<slot>`` (the state after the last step).
  * For each schedule: ``schedule/<name>`` = its values at steps 0..40
    (float32), computed by calling the schedule on a uint64 step as the
    optimizers do.
  * Clipping: ``clip/grad/<name>``, ``clip/<max_norm>/out/<name>`` and
    ``clip/<max_norm>/norm`` from ``clip_grad_norm`` on a sorted dict.
  The ``__metadata__`` entry ``cases`` is JSON: every optimizer case (its
  class, settings, schedule and steps) and every schedule's spec, in the
  vocabulary the Rust tests parse.
- losses.safetensors: inputs and outputs of ``mlx.nn.losses`` functions and
  ``mlx.nn`` activations (``<case>/<input>`` and ``<case>/out``), with
  metadata ``cases`` describing each call.

All computations run on MLX's CPU device in float32.

Usage:

    /work/venv-ref/bin/python scripts/gen_optim_fixtures.py [--out DIR]

The `mlx` Python package needs MLX's shared library. When ``import mlx.core``
fails because ``libmlx.so`` is not found, the script re-runs itself with
``LD_LIBRARY_PATH`` pointing at the ``mlx-cpu`` wheel that the build
provisions (``$MLX_CACHE_DIR`` or ``~/.cache/mlx-grpo``, folder
``mlx-cpu-0.32.4/mlx/lib``).
"""

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MLX_VERSION = "0.32.4"


def import_mlx():
    try:
        import mlx.core  # noqa: F401
    except ImportError as e:
        if "libmlx" not in str(e) or os.environ.get("_GEN_OPTIM_REEXEC"):
            raise
        cache = Path(os.environ.get("MLX_CACHE_DIR", Path.home() / ".cache" / "mlx-grpo"))
        lib = cache / f"mlx-cpu-{MLX_VERSION}" / "mlx" / "lib"
        if not (lib / "libmlx.so").exists():
            raise SystemExit(f"libmlx.so not found; build the workspace once or set LD_LIBRARY_PATH ({e})")
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}"
        env["_GEN_OPTIM_REEXEC"] = "1"
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


import_mlx()

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402

assert mx.__version__ == MLX_VERSION, f"expected mlx {MLX_VERSION}, found {mx.__version__}"
mx.set_default_device(mx.cpu)

STEPS = 5
SCHEDULE_STEPS = 41


def make_schedule(spec):
    """A schedule (or a constant) from the JSON spec the Rust tests also read."""
    kind = spec["kind"]
    if kind == "constant":
        return spec["value"]
    if kind == "linear":
        return optim.linear_schedule(spec["init"], spec["end"], spec["steps"])
    if kind == "cosine":
        return optim.cosine_decay(spec["init"], spec["decay_steps"], spec["end"])
    if kind == "step":
        return optim.step_decay(spec["init"], spec["decay_rate"], spec["step_size"])
    if kind == "exponential":
        return optim.exponential_decay(spec["init"], spec["decay_rate"])
    if kind == "join":
        parts = [make_schedule(s) for s in spec["schedules"]]
        parts = [p if callable(p) else (lambda _step, v=p: mx.array(v)) for p in parts]
        return optim.join_schedules(parts, spec["boundaries"])
    raise ValueError(kind)


WARMUP_COSINE = {
    "kind": "join",
    "schedules": [
        {"kind": "linear", "init": 0.0, "end": 0.01, "steps": 2},
        {"kind": "cosine", "init": 0.01, "decay_steps": 10, "end": 0.001},
    ],
    "boundaries": [2],
}

OPTIMIZER_CASES = [
    {"name": "sgd_plain", "class": "SGD", "args": {"weight_decay": 0.01}, "lr": {"kind": "constant", "value": 0.1}},
    {
        "name": "sgd_momentum",
        "class": "SGD",
        "args": {"momentum": 0.9, "weight_decay": 0.01, "dampening": 0.1},
        "lr": {"kind": "constant", "value": 0.05},
    },
    {
        "name": "sgd_nesterov",
        "class": "SGD",
        "args": {"momentum": 0.8, "weight_decay": 0.001, "nesterov": True},
        "lr": {"kind": "exponential", "init": 0.1, "decay_rate": 0.9},
    },
    {"name": "adam", "class": "Adam", "args": {}, "lr": {"kind": "constant", "value": 0.01}},
    {
        "name": "adam_bias_correction",
        "class": "Adam",
        "args": {"betas": [0.8, 0.95], "eps": 1e-6, "bias_correction": True},
        "lr": {"kind": "constant", "value": 0.02},
    },
    {
        "name": "adamw",
        "class": "AdamW",
        "args": {"weight_decay": 0.05},
        "lr": {"kind": "cosine", "init": 0.01, "decay_steps": 4, "end": 0.001},
    },
    {
        "name": "adamw_bias_correction",
        "class": "AdamW",
        "args": {"betas": [0.9, 0.99], "weight_decay": 0.1, "bias_correction": True},
        "lr": WARMUP_COSINE,
    },
    {"name": "rmsprop", "class": "RMSprop", "args": {"alpha": 0.9, "eps": 1e-7}, "lr": {"kind": "constant", "value": 0.01}},
    {"name": "lion", "class": "Lion", "args": {"weight_decay": 0.1}, "lr": {"kind": "constant", "value": 0.003}},
    {
        "name": "lion_step_decay",
        "class": "Lion",
        "args": {"betas": [0.95, 0.98]},
        "lr": {"kind": "step", "init": 0.01, "decay_rate": 0.5, "step_size": 2},
    },
]

SCHEDULE_CASES = {
    "constant": {"kind": "constant", "value": 0.1},
    "warmup": {"kind": "linear", "init": 0.0, "end": 0.1, "steps": 10},
    "linear_decay": {"kind": "linear", "init": 0.1, "end": 0.003, "steps": 30},
    "cosine": {"kind": "cosine", "init": 0.1, "decay_steps": 30, "end": 0.0},
    "cosine_end": {"kind": "cosine", "init": 3e-4, "decay_steps": 25, "end": 1e-5},
    "step": {"kind": "step", "init": 0.1, "decay_rate": 0.9, "step_size": 7},
    "exponential": {"kind": "exponential", "init": 0.1, "decay_rate": 0.93},
    "warmup_cosine": {
        "kind": "join",
        "schedules": [
            {"kind": "linear", "init": 0.0, "end": 1e-3, "steps": 8},
            {"kind": "cosine", "init": 1e-3, "decay_steps": 20, "end": 1e-5},
        ],
        "boundaries": [8],
    },
    "three_phase": {
        "kind": "join",
        "schedules": [
            {"kind": "linear", "init": 0.0, "end": 0.05, "steps": 5},
            {"kind": "constant", "value": 0.05},
            {"kind": "exponential", "init": 0.05, "decay_rate": 0.8},
        ],
        "boundaries": [5, 15],
    },
}


def optimizer_fixtures(tensors, key):
    for case in OPTIMIZER_CASES:
        cls = getattr(optim, case["class"])
        opt = cls(learning_rate=make_schedule(case["lr"]), **case["args"])
        key, k1, k2 = mx.random.split(key, 3)
        params = {
            "layer.bias": mx.random.normal((3,), key=k1),
            "layer.weight": mx.random.normal((4, 3), key=k2),
        }
        for name, value in params.items():
            tensors[f"{case['name']}/init/{name}"] = value
        for t in range(1, STEPS + 1):
            key, k1, k2 = mx.random.split(key, 3)
            grads = {
                "layer.bias": mx.random.normal((3,), key=k1),
                "layer.weight": mx.random.normal((4, 3), key=k2),
            }
            params = opt.apply_gradients(grads, params)
            mx.eval(params, opt.state)
            for name in grads:
                tensors[f"{case['name']}/grad/{t}/{name}"] = grads[name]
                tensors[f"{case['name']}/out/{t}/{name}"] = params[name]
        for name in params:
            for slot, value in opt.state[name].items():
                tensors[f"{case['name']}/state/{name}.{slot}"] = value
        case["steps"] = STEPS
    return key


def schedule_fixtures(tensors):
    for name, spec in SCHEDULE_CASES.items():
        schedule = make_schedule(spec)
        values = []
        for t in range(SCHEDULE_STEPS):
            step = mx.array(t, mx.uint64)
            v = schedule(step) if callable(schedule) else mx.array(schedule)
            values.append(v.astype(mx.float32))
        tensors[f"schedule/{name}"] = mx.stack(values)


CLIP_NORMS = [0.5, 100.0]


def clip_fixtures(tensors, key):
    key, k1, k2, k3 = mx.random.split(key, 4)
    grads = {
        "a.bias": mx.random.normal((5,), key=k1),
        "a.weight": mx.random.normal((5, 4), key=k2),
        "b.weight": 3.0 * mx.random.normal((2, 5), key=k3),
    }
    grads = dict(sorted(grads.items()))
    for name, g in grads.items():
        tensors[f"clip/grad/{name}"] = g
    for max_norm in CLIP_NORMS:
        clipped, norm = optim.clip_grad_norm(grads, max_norm)
        for name, g in clipped.items():
            tensors[f"clip/{max_norm}/out/{name}"] = g
        tensors[f"clip/{max_norm}/norm"] = norm
    return key


def loss_fixtures(key):
    tensors, cases = {}, []
    key, *ks = mx.random.split(key, 11)
    logits = 3.0 * mx.random.normal((6, 5), key=ks[0])
    targets = mx.random.randint(0, 5, (6,), key=ks[1]).astype(mx.int32)
    probs_targets = mx.softmax(mx.random.normal((6, 5), key=ks[2]), axis=-1)
    weights = mx.random.uniform(shape=(6,), key=ks[3])
    preds = mx.random.normal((3, 4), key=ks[4])
    reg_targets = mx.random.normal((3, 4), key=ks[5])
    bin_logits = 2.0 * mx.random.normal((8,), key=ks[6])
    bin_targets = (mx.random.uniform(shape=(8,), key=ks[7]) > 0.5).astype(mx.float32)
    log_q = nn.log_softmax(mx.random.normal((4, 6), key=ks[8]))
    log_p = nn.log_softmax(mx.random.normal((4, 6), key=ks[9]))
    act_x = mx.linspace(-6.0, 6.0, 49).reshape(7, 7)

    def add(name, fn, inputs, out, **settings):
        for k, v in inputs.items():
            tensors[f"{name}/{k}"] = v
        tensors[f"{name}/out"] = out
        cases.append({"name": name, "fn": fn, "inputs": sorted(inputs), **settings})

    for reduction in ["none", "mean", "sum"]:
        add(
            f"ce_{reduction}",
            "cross_entropy",
            {"logits": logits, "targets": targets},
            nn.losses.cross_entropy(logits, targets, reduction=reduction),
            reduction=reduction,
        )
    add(
        "ce_smooth",
        "cross_entropy",
        {"logits": logits, "targets": targets},
        nn.losses.cross_entropy(logits, targets, label_smoothing=0.1, reduction="mean"),
        reduction="mean",
        label_smoothing=0.1,
    )
    add(
        "ce_weights",
        "cross_entropy",
        {"logits": logits, "targets": targets, "weights": weights},
        nn.losses.cross_entropy(logits, targets, weights=weights, reduction="sum"),
        reduction="sum",
    )
    add(
        "ce_probs",
        "cross_entropy",
        {"logits": logits, "targets": probs_targets},
        nn.losses.cross_entropy(logits, probs_targets, label_smoothing=0.2, reduction="none"),
        reduction="none",
        label_smoothing=0.2,
    )
    add(
        "ce_axis0",
        "cross_entropy",
        {"logits": logits.T, "targets": targets},
        nn.losses.cross_entropy(logits.T, targets, axis=0, reduction="none"),
        reduction="none",
        axis=0,
    )
    add("nll", "nll", {"inputs": log_q, "targets": targets[:4]}, nn.losses.nll_loss(log_q, targets[:4], reduction="mean"), reduction="mean")
    add("kl_div", "kl_div", {"inputs": log_q, "targets": log_p}, nn.losses.kl_div_loss(log_q, log_p, reduction="none"), reduction="none")
    add("kl_div_sum", "kl_div", {"inputs": log_q, "targets": log_p}, nn.losses.kl_div_loss(log_q, log_p, reduction="sum"), reduction="sum")
    for reduction in ["none", "mean", "sum"]:
        add(
            f"mse_{reduction}",
            "mse",
            {"predictions": preds, "targets": reg_targets},
            nn.losses.mse_loss(preds, reg_targets, reduction=reduction),
            reduction=reduction,
        )
    add("bce_logits", "bce_logits", {"inputs": bin_logits, "targets": bin_targets}, nn.losses.binary_cross_entropy(bin_logits, bin_targets, reduction="mean"), reduction="mean")
    bce_weights = weights[0] * mx.arange(8) / 8
    add(
        "bce_logits_weights",
        "bce_logits",
        {"inputs": bin_logits, "targets": bin_targets, "weights": bce_weights},
        nn.losses.binary_cross_entropy(bin_logits, bin_targets, weights=bce_weights, reduction="none"),
        reduction="none",
    )
    probs = mx.sigmoid(bin_logits)
    probs = mx.concatenate([probs[:6], mx.array([0.0, 1.0])])
    add(
        "bce_probs",
        "bce_probs",
        {"inputs": probs, "targets": bin_targets},
        nn.losses.binary_cross_entropy(probs, bin_targets, with_logits=False, reduction="none"),
        reduction="none",
    )
    for act in ["silu", "gelu", "gelu_approx", "relu", "sigmoid", "softmax", "log_softmax"]:
        add(f"act_{act}", act, {"x": act_x}, getattr(nn, act)(act_x))
    mx.eval(tensors)
    return tensors, cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "crates" / "mlx-nn" / "tests" / "fixtures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    key = mx.random.key(20240611)
    tensors = {}
    key = optimizer_fixtures(tensors, key)
    schedule_fixtures(tensors)
    key = clip_fixtures(tensors, key)
    mx.eval(tensors)
    meta = {
        "optimizers": OPTIMIZER_CASES,
        "schedules": SCHEDULE_CASES,
        "schedule_steps": SCHEDULE_STEPS,
        "clip_norms": CLIP_NORMS,
        "generator": f"scripts/gen_optim_fixtures.py, mlx {mx.__version__}",
    }
    mx.save_safetensors(str(args.out / "optim.safetensors"), tensors, metadata={"cases": json.dumps(meta)})

    loss_tensors, loss_cases = loss_fixtures(key)
    loss_meta = {"cases": loss_cases, "generator": f"scripts/gen_optim_fixtures.py, mlx {mx.__version__}"}
    mx.save_safetensors(str(args.out / "losses.safetensors"), loss_tensors, metadata={"cases": json.dumps(loss_meta)})
    print(f"wrote {len(tensors)} optimizer tensors and {len(loss_tensors)} loss tensors to {args.out}")


if __name__ == "__main__":
    main()
