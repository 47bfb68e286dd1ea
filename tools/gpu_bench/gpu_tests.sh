#!/usr/bin/env bash
# Runs test binaries built here with `--features cuda` on the GPU machine and
# prints each binary's result line and the totals.
#
# Build (here):
#   CARGO_TARGET_DIR=/work/target-cuda cargo test --release --features cuda \
#     -p mlx-tensor -p mlx-nn --no-run
# then copy the test executables (target-cuda/release/deps/<name>-<hash>),
# stripped and xz-compressed, into a carried folder (e.g. .gpu/t/). On the GPU
# machine, after the CUDA wheel is installed (tools/gpu_bench/gpu_run.sh):
#   FARM=<the mlx-farm directory the binaries record> bash tools/gpu_bench/gpu_tests.sh .gpu/t
# Each binary runs with its tests on one thread (MLX's GPU stream is shared),
# its output in $OUT/tests/<name>.log.
set -u -o pipefail
dir=${1:?usage: gpu_tests.sh DIR_OF_TEST_BINARIES}
: "${FARM:?set FARM to the mlx-farm directory the binaries were linked against}"
OUT=${OUT:-/tmp/gpu_tests_out}
SITE=$(python3 -c "import site; print(site.getsitepackages()[0])")
mkdir -p "$FARM/mlx/lib" "$OUT/tests" /tmp/gpu_tests
cp "$SITE/mlx/lib/libmlx.so" "$FARM/mlx/lib/libmlx.so"
[ -e "$FARM/mlx/include" ] || ln -s "$SITE/mlx/include" "$FARM/mlx/include"
for d in nvidia mlx_cuda_13.libs; do
  [ -e "$FARM/$d" ] || ln -s "$SITE/$d" "$FARM/$d"
done
unset LD_LIBRARY_PATH
passed=0 failed=0 ignored=0 broken=0
for f in "$dir"/*; do
  name=$(basename "$f" .xz)
  bin=/tmp/gpu_tests/$name
  case "$f" in
    *.xz) xz -dc "$f" > "$bin" ;;
    *) cp "$f" "$bin" ;;
  esac
  chmod +x "$bin"
  timeout 300 "$bin" --test-threads=1 > "$OUT/tests/$name.log" 2>&1
  line=$(grep -E "^test result:" "$OUT/tests/$name.log" | tail -1)
  if [ -z "$line" ]; then
    broken=$((broken + 1))
    echo "$name: no result (see $name.log)"
    continue
  fi
  p=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<< "$line")
  x=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<< "$line")
  i=$(sed -E 's/.* ([0-9]+) ignored.*/\1/' <<< "$line")
  passed=$((passed + p)) failed=$((failed + x)) ignored=$((ignored + i))
  echo "$name: $p passed, $x failed, $i ignored"
  [ "$x" -gt 0 ] && grep -E "^test .* FAILED|panicked" "$OUT/tests/$name.log" | head -5
done
echo "total: $passed passed, $failed failed, $ignored ignored, $broken binaries without a result"
