#!/usr/bin/env bash
# Runs binaries built here with `--features cuda` on the GPU machine.
#
# Such a binary records the absolute path of the `libmlx.so` its build linked
# (`<target>/…/out/mlx-farm/mlx/lib/libmlx.so`, see crates/mlx-ffi/build/farm.rs).
# On a user's machine that path exists; here the build machine's path is
# recreated from the CUDA wheel installed in site-packages (tools/gpu_bench/gpu_run.sh
# installs it), with the wheel's `nvidia/` and `mlx_cuda_13.libs/` beside it so
# the library's `$ORIGIN`-relative RPATH resolves, and `mlx/include/` (the
# headers its run-time kernel compiler needs), as the build's farm has them. No LD_LIBRARY_PATH is set.
#
# Usage: FARM=/abs/…/out/mlx-farm bash tools/gpu_bench/gpu_cuda_feature.sh BINARY...
set -u -o pipefail
: "${FARM:?set FARM to the mlx-farm directory the binaries were linked against}"
SITE=$(python3 -c "import site; print(site.getsitepackages()[0])")
mkdir -p "$FARM/mlx/lib"
cp "$SITE/mlx/lib/libmlx.so" "$FARM/mlx/lib/libmlx.so"
[ -e "$FARM/mlx/include" ] || ln -s "$SITE/mlx/include" "$FARM/mlx/include"
for d in nvidia mlx_cuda_13.libs; do
  [ -e "$FARM/$d" ] || ln -s "$SITE/$d" "$FARM/$d"
done
unset LD_LIBRARY_PATH
status=0
for bin in "$@"; do
  echo "== $(basename "$bin")"
  if ! "$bin" --test-threads=1 2>&1 | tail -4; then status=1; fi
done
exit $status
