"""Helpers shared by the scripts that time a Rust bench against mlx-lm.

`QWEN3_0_6B` is the shape of Qwen3-0.6B without its layer count (the
benches' `loader::qwen3_0_6b_config`); `reexec_with_mlx_lib` makes MLX Python
load the `libmlx.so` the Rust benches link; `criterion_mean_ns` reads a
criterion result.
"""

import glob
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

QWEN3_0_6B = dict(
    model_type="qwen3",
    vocab_size=151936,
    hidden_size=1024,
    intermediate_size=3072,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    rms_norm_eps=1e-6,
    rope_theta=1000000.0,
    max_position_embeddings=40960,
    tie_word_embeddings=True,
)

REEXEC_VAR = "_MLX_BENCH_LIB"


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")


def find_mlx_lib():
    """The newest MLX prefix a workspace build prepared (release first)."""
    for profile in ["release", "debug"]:
        pattern = f"{target_dir()}/{profile}/build/mlx-ffi-*/out/mlx-farm/mlx/lib/libmlx.so"
        hits = sorted(glob.glob(pattern), key=os.path.getmtime, reverse=True)
        if hits:
            return str(Path(hits[0]).parent)
    return None


def reexec_with_mlx_lib(explicit=None):
    """Re-runs this script with `LD_LIBRARY_PATH` at `explicit` or the
    workspace's MLX library (once; a no-op when none is found)."""
    if os.environ.get(REEXEC_VAR):
        return
    lib = explicit or find_mlx_lib()
    if lib is None:
        return
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}"
    env[REEXEC_VAR] = lib
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def mlx_lib_in_use():
    return os.environ.get(REEXEC_VAR, "the mlx package")


def criterion_mean_ns(group, name):
    """Mean time per iteration of criterion benchmark `group/name`."""
    estimates = target_dir() / "criterion" / group / name / "new" / "estimates.json"
    if not estimates.exists():
        sys.exit(f"{estimates} not found: run the bench (without --skip-rust)")
    return json.loads(estimates.read_text())["mean"]["point_estimate"]
