#!/usr/bin/env bash
# Runs tools/gpu_bench and its references (tools/gpu_bench/gpu_compare.py) on the
# GPU machine in one go; see docs/GPU_BENCH.md for the two calls around it.
#
# Expects: /root/stage/part00 (first half of the mlx-cuda-13 wheel, staged by
# the previous call), .gpu/b/part01 (second half), .gpu/b/gpu_bench (the
# benchmark built here with MLX_LINK_MODE=rpath) and .gpu/py/*.whl (mlx,
# mlx-lm, trl, datasets, dill, multiprocess, xxhash). Writes under $OUT.
#
# Environment: BENCH_ARGS (e.g. "--grpo-settings default,offload") goes to
# the main run; FARM=<mlx-farm dir> for a benchmark built with --features cuda
# (see tools/gpu_bench/gpu_cuda_feature.sh); SWEEP="50 200" also runs decode and batch generation with
# those MLX_MAX_OPS_PER_BUFFER values; NO_COMPILE_AB=1 also runs them with
# MLX's compiled kernels off; LAYER_OPS=1 also times each operation of a
# decoding step (`--only layerops`); HEADROOM_AB="none 2048" also runs batch
# generation with those `--decode-headroom-mb` values; WHOLE_STEPS_AB=N also
# runs batch generation N times each with whole decoding steps queued
# (`--whole-steps`) and in halves (the default), alternating; ENV_AB (below)
# compares MLX environment settings; SKIP_TRL=1 leaves TRL
# out; SKIP_MLX=1 leaves mlx-lm out; TRL_LORA=1 also runs TRL with PEFT LoRA
# adapters (against `--grpo-settings lora,qlora`; carry the peft wheel); ONLY_AB=1 runs only the extra A/B measurements; ONLY=parts also runs
# `--only parts` (e.g. ONLY_AB=1 ONLY=grpo); ROUNDS=N also runs N
# alternating rounds of ours and mlx-lm (decode and batch generation) and
# prints each round's ratios and their median; SIZE_ARGS="--layers 2 --vocab
# 4096 --quick" shrinks the rounds' model (a quick check on the CPU).
set -u
OUT=${OUT:-/tmp/gpu_bench_out}
mkdir -p "$OUT"
STAGE=/root/stage
WHEEL=$STAGE/mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl
[ -f "$WHEEL" ] || cat "$STAGE/part00" .gpu/b/part01 > "$WHEEL" || exit 1
python3 -m pip install -q --no-index --no-deps "$WHEEL" .gpu/py/*.whl || exit 1
SITE=$(python3 -c "import site; print(site.getsitepackages()[0])")
export LD_LIBRARY_PATH=$SITE/mlx/lib
# A benchmark built with `--features cuda` links its build machine's farm
# path; FARM=<that mlx-farm directory> recreates it from the wheel.
if [ -n "${FARM:-}" ]; then
  FARM=$FARM bash tools/gpu_bench/gpu_cuda_feature.sh || exit 1
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
BIN=.gpu/b/gpu_bench
if [ -n "${ONLY_AB:-}" ]; then
  [ -n "${ROUNDS:-}${ONLY:-}" ] || timeout 120 "$BIN" --only batch 2>&1 | grep -E "^batch|a step|^rollout" | tee -a "$OUT/ab.log"
else
  timeout 300 "$BIN" --json "$OUT/ours.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/ours.log"
fi
if [ -n "${ONLY:-}" ]; then
  timeout 300 "$BIN" --only "$ONLY" --json "$OUT/only.json" 2>&1 | tee -a "$OUT/ab.log"
fi
for h in ${HEADROOM_AB:-}; do
  echo "== --decode-headroom-mb $h" | tee -a "$OUT/ab.log"
  timeout 120 "$BIN" --only batch --decode-headroom-mb "$h" 2>&1 | grep -E "^batch|a step|^rollout" | tee -a "$OUT/ab.log"
done
for i in $(seq 1 "${WHOLE_STEPS_AB:-0}"); do
  for mode in --whole-steps ""; do
    echo "== round $i ${mode:-halves}" | tee -a "$OUT/ab.log"
    timeout 120 "$BIN" --only batch $mode --json "$OUT/steps_${i}${mode:+_whole}.json" 2>&1 | grep -E "^batch|a step|^rollout" | tee -a "$OUT/ab.log"
  done
done
# The result lines the A/B runs below keep.
AB_LINES="^decode|^batch|^rollout|^GRPO|a step|loop alone|s: rollout|^state moves|^AdamW update|groups: restore"
# ENV_AB="VAR=VALUE ..." runs `--only ${ENV_AB_ONLY:-decode,batch}` (plus
# ENV_AB_ARGS) without and with each setting, alternating, ENV_AB_ROUNDS times.
for i in $(seq 1 "${ENV_AB_ROUNDS:-1}"); do
  for e in ${ENV_AB:-}; do
    for setting in "" "$e"; do
      echo "== round $i ${setting:-baseline}" | tee -a "$OUT/env_ab.log"
      env $setting timeout 240 "$BIN" --only "${ENV_AB_ONLY:-decode,batch}" ${ENV_AB_ARGS:-} 2>&1 \
        | grep -E "$AB_LINES" | tee -a "$OUT/env_ab.log"
    done
  done
done
# BIN_AB=<another gpu_bench build> runs `--only ${ENV_AB_ONLY:-decode,batch}`
# (plus ENV_AB_ARGS) with this benchmark and that one, alternating,
# ENV_AB_ROUNDS times: two versions of the code on one machine.
if [ -n "${BIN_AB:-}" ]; then
  for i in $(seq 1 "${ENV_AB_ROUNDS:-1}"); do
    for b in "$BIN" "$BIN_AB"; do
      echo "== round $i $b" | tee -a "$OUT/bin_ab.log"
      timeout 240 "$b" --only "${ENV_AB_ONLY:-decode,batch}" ${ENV_AB_ARGS:-} 2>&1 \
        | grep -E "$AB_LINES" | tee -a "$OUT/bin_ab.log"
    done
  done
fi
if [ -n "${LAYER_OPS:-}" ]; then
  timeout 120 "$BIN" --only layerops --json "$OUT/layer_ops.json" 2>&1 | tail -2 | tee "$OUT/layer_ops.log"
fi
if [ -n "${NO_COMPILE_AB:-}" ]; then
  echo "== --no-compile" | tee -a "$OUT/sweep.log"
  timeout 120 "$BIN" --no-compile --only decode,batch 2>&1 | tee -a "$OUT/sweep.log"
fi
for n in ${SWEEP:-}; do
  echo "== MLX_MAX_OPS_PER_BUFFER=$n" | tee -a "$OUT/sweep.log"
  MLX_MAX_OPS_PER_BUFFER=$n timeout 120 "$BIN" --only decode,batch 2>&1 | tee -a "$OUT/sweep.log"
done
if [ -n "${ROUNDS:-}" ]; then
  # Alternating runs of ours and mlx-lm (decode and batch generation only),
  # the order swapped every round; the ratios' median is the robust figure.
  mkdir -p "$OUT/rounds"
  for i in $(seq 1 "$ROUNDS"); do
    ours() { timeout 150 "$BIN" --only decode,batch ${SIZE_ARGS:-} --json "$OUT/rounds/ours_$i.json" > "$OUT/rounds/ours_$i.log" 2>&1; }
    ref() { timeout 150 python3 tools/gpu_bench/gpu_compare.py --skip-trl --mlx-parts decode,batch ${SIZE_ARGS:-} --mlx-json "$OUT/rounds/mlx_$i.json" > "$OUT/rounds/mlx_$i.log" 2>&1; }
    if [ $((i % 2)) -eq 1 ]; then ours; ref; else ref; ours; fi
  done
  python3 tools/gpu_bench/gpu_compare.py --rounds "$OUT/rounds" --out "$OUT/rounds.json" | tee "$OUT/rounds.log"
fi
[ -n "${ONLY_AB:-}" ] && exit 0
extra=()
[ -n "${SKIP_TRL:-}" ] && extra+=(--skip-trl)
[ -n "${SKIP_MLX:-}" ] && extra+=(--skip-mlx)
[ -n "${TRL_LORA:-}" ] && extra+=(--trl-lora)
timeout 420 python3 tools/gpu_bench/gpu_compare.py --ours "$OUT/ours.json" --out "$OUT/compare.json" \
  "${extra[@]}" 2>&1 | tee "$OUT/compare.log"
