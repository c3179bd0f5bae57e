#!/usr/bin/env bash
# The second call on a GPU machine, once scripts/gpu-validate.sh passed: the measurements that
# pick defaults, within one 10-minute device call, every step under `timeout`, summary.json
# rewritten after each (same machinery: scripts/gpu-lib.sh).
#
#   scripts/gpu-validate-more.sh             results in $OUT (default bench/results/gpu-<date>; use another OUT than the first call's)
#   scripts/gpu-validate-more.sh --dry-run   anywhere: the plan parses and fits one call
#   STEPS=build,sweep scripts/gpu-validate-more.sh
#
# Steps: env, build (as in gpu-validate.sh), sweep (AdamP over chunk x group x lag on both sets:
# sweep.json), minblocks_build + minblocks (the benchmark rebuilt with ADAMP_CUDA_MIN_BLOCKS=2
# and 3, i.e. a register budget of 128 and 85 instead of 64, and with ADAMP_CUDA_NOINLINE_ITEMS=1
# (item functions as calls: no spills, a call frame per item), against the default:
# bench_mb<k>.json, bench_mbcall.json, with ptxas spills in their logs; and AdamP built with
# ADAMP_CUDA_WHOLE_CHANNEL_ITEMS=0, the decider walking every channel instead of folding the
# items' records: bench_mbw0.json against bench_mb4.json), norms (AdamP with the info norms: what
# reading lastStepInfo every step costs), ncu (Nsight Compute: DRAM throughput and L2 hit rate
# of one AdamP step on ResNet-50), node_bench (the public Node API on device params vs host
# params: scripts/bench-gpu-node.js, needs dist/).
set -u
source "$(dirname "${BASH_SOURCE[0]}")/gpu-lib.sh"

PLAN="
env             15  GPU, driver, arch and tools; the carried node
build           125 CUDA tests, benchmark and addon for this GPU's arch (ptxas -v)
sweep           75  AdamP over chunk x group x lag on ResNet-50 and GPT-2 small
minblocks_build 120 the benchmark with ADAMP_CUDA_MIN_BLOCKS=2, 3, with item calls not inlined, and with the serial decision (four builds in parallel)
minblocks       65  AdamP and SGDP at MIN_BLOCKS 2, 3, 4 (the default) and 4 with calls; AdamP with the serial decision
norms           35  AdamP with and without the info norms
ncu             55  Nsight Compute on one AdamP step (ResNet-50): DRAM throughput, L2 hit rate
node_bench      45  the Node API on device params vs host params (scripts/bench-gpu-node.js)
"
GPU_FILES="native/tests/cuda/bench_cuda_step.cu bench/shapes.json scripts/bench-gpu-node.js scripts/gpu-bench-common.js scripts/gpu-summary.py"
GPU_PYTHON="scripts/gpu-summary.py"
GPU_NODE="scripts/bench-gpu-node.js scripts/gpu-bench-common.js"

BENCH_BIN="build-gpu/native/tests/cuda/bench_cuda_step"
export BENCH_BIN
export ITERS="${ITERS:-30}"

need_bin() { [ -x "$ROOT/$1" ] || { echo "SKIP: $1 did not build (see its build log)"; exit 77; }; }
export -f need_bin

step_sweep() {
  cd "$ROOT" && need_bin "$BENCH_BIN"
  "$BENCH_BIN" --shapes bench/shapes.json --kinds adamp --sweep --iters 20 --out "$OUT/sweep.json"
}
step_minblocks_build() {
  cd "$ROOT" || exit 1
  local arch jobs k flags
  arch="$(fact cuda_arch)"
  jobs=$(( $(nproc) / 4 > 0 ? $(nproc) / 4 : 1 ))
  for k in 2 3 call w0; do
    flags="-DADAMP_CUDA_MIN_BLOCKS=$k"
    [ "$k" = call ] && flags="-DADAMP_CUDA_NOINLINE_ITEMS=1"
    [ "$k" = w0 ] && flags="-DADAMP_CUDA_WHOLE_CHANNEL_ITEMS=0"
    (cmake -S . -B "build-gpu-mb$k" $([ "$(fact has_ninja)" = yes ] && echo -G Ninja) -DCMAKE_BUILD_TYPE=Release -DADAMP_BUILD_TESTS=ON -DADAMP_WITH_CUDA=ON \
       -DCMAKE_CUDA_ARCHITECTURES="$arch" -DADAMP_CUDA_PTXAS_VERBOSE=ON "-DCMAKE_CUDA_FLAGS=$flags" \
       && cmake --build "build-gpu-mb$k" -j "$jobs" --target bench_cuda_step) > "$OUT/minblocks_build_mb$k.log" 2>&1 &
  done
  wait
  for k in 2 3 call w0; do
    echo "== $k"
    grep -A2 "Compiling entry function '.*step_kernel" "$OUT/minblocks_build_mb$k.log" | grep -E 'entry|spill|registers'
  done
  for k in 2 3 call w0; do [ -x "build-gpu-mb$k/native/tests/cuda/bench_cuda_step" ] || exit 1; done
}
step_minblocks() {
  cd "$ROOT" && need_bin "$BENCH_BIN"
  local k bin
  for k in 4 2 3 call w0; do
    bin="build-gpu-mb$k/native/tests/cuda/bench_cuda_step"
    [ "$k" = 4 ] && bin="$BENCH_BIN"
    [ -x "$bin" ] || { echo "$k: $bin missing"; continue; }
    "$bin" --shapes bench/shapes.json --kinds "$([ "$k" = w0 ] && echo adamp || echo adamp,sgdp)" --iters "$ITERS" --out "$OUT/bench_mb$k.json" || exit 1
  done
}
step_norms() {
  cd "$ROOT" && need_bin "$BENCH_BIN"
  "$BENCH_BIN" --shapes bench/shapes.json --kinds adamp --norms --iters "$ITERS" --out "$OUT/bench_norms.json"
}
step_ncu() {
  cd "$ROOT" && need_bin "$BENCH_BIN"
  [ "$(fact has_ncu)" = yes ] || { echo "SKIP: ncu (Nsight Compute) is not installed here"; exit 77; }
  ncu --kernel-name regex:step_kernel --launch-skip 10 --launch-count 2 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --csv --page details \
    "$BENCH_BIN" --shapes bench/shapes.json --sets resnet50 --kinds adamp --iters 3 > "$OUT/ncu.csv"
  grep -E 'DRAM Throughput|L2 Hit Rate|Memory Throughput|Duration' "$OUT/ncu.csv" | head -20
}
step_node_bench() {
  cd "$ROOT" || exit 1
  local node addon="$ROOT/build-gpu/Release/adamp.node"
  node="$(fact node_bin)"
  [ -n "$node" ] || { echo "SKIP: no node binary (carry .device/node.gz)"; exit 77; }
  [ -f "$addon" ] || { echo "SKIP: the addon did not build"; exit 77; }
  [ -f dist/index.js ] || { echo "SKIP: dist/ is missing (npm run build:ts, then carry dist)"; exit 77; }
  ADAMP_ADDON_PATH="$addon" "$node" scripts/bench-gpu-node.js --out "$OUT/bench_node.json" --iters 20 --reps 3
}
export -f step_sweep step_minblocks_build step_minblocks step_norms step_ncu step_node_bench

gpu_main "$@"
