#!/usr/bin/env bash
# The first call on a GPU machine (docs/gpu-runner.md): the CUDA backend's truth within one 10-minute
# device call, most valuable first, every step under `timeout`, summary.json rewritten after each.
#
#   scripts/gpu-validate.sh             on a GPU machine; results in $OUT (default bench/results/gpu-<date>)
#   scripts/gpu-validate.sh --dry-run   anywhere (CI): the plan parses, its steps exist, the sum of
#                                       the timeouts fits one call, the summary writer works
#   STEPS=build,sass,quick scripts/gpu-validate.sh     a subset (names below)
#
# Steps, in order (timeouts in PLAN): env (GPU, arch, tools; unpacks .device/node.gz), build (the
# CUDA tests, the benchmark and the addon for this GPU's arch, ptxas -v), sass (cuobjdump facts:
# CCTL.IVALL after the fences, local loads/stores per kernel), quick (the four kinds against the
# host reference, one block vs the full grid bit for bit over 200 steps, fixtures), bench (ours on
# ResNet-50 and GPT-2 small, no sweep, tensors made on the device), torch (PyTorch's fused Adam /
# AdamW, SGD foreach and an official-style eager AdamP on the same sets), half (bfloat16: PyTorch's
# fused AdamW on bf16 params against ours, timing, GB/s of the bytes moved, bits; ours against the
# js backend bit for bit: scripts/half_torch_gpu.py, scripts/bench-gpu-half.js), full (every shape, seed
# and option), memcheck and synccheck (compute-sanitizer, no out-of-memory probe), racecheck, node
# (the addon in Node: scripts/gpu-smoke.js). The second call: scripts/gpu-validate-more.sh.
#
# Files in $OUT: summary.json (status, failed/skipped steps with reasons, facts, ptxas and SASS
# facts per kernel, figures and ratios to the PyTorch anchors), <step>.log, sass.txt,
# bench_cuda.json, bench_torch.json, half_torch.json, half_node.json, node.json. Exit 0 passed, 1 failed, 2 no GPU.
#
# From this machine (see docs/gpu-runner.md for the device tool; everything it needs is carried in
# .device, about 40 MB):
#   mkdir -p .device/node_modules && gzip -c "$(command -v node)" > .device/node.gz && git rev-parse HEAD > .device/commit
#   cp -rL node_modules/node-addon-api node_modules/node-api-headers .device/node_modules/ && npm run build:ts
#   run(command: 'scripts/gpu-validate.sh', timeout_s: 600, carry: [".device", "dist"])
# then copy $OUT's files into bench/results/gpu-<date>/ and commit them. A second call (if the
# first passed): 'OUT=bench/results/gpu-<date>/more scripts/gpu-validate-more.sh'.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/gpu-lib.sh"

PLAN="
env        15  GPU, driver, arch and tools; the carried node
build      125 CUDA tests, benchmark and addon for this GPU's arch (ptxas -v)
sass       15  cuobjdump -sass facts: CCTL.IVALL after fences, local loads and stores per kernel
quick      75  test_cuda_step --quick: four kinds vs the host reference, one block vs the full grid (200 steps), fixtures
bench      45  bench_cuda_step: ResNet-50 and GPT-2 small, four kinds, stream and graph, no sweep
torch      60  PyTorch anchors: Adam and AdamW fused, SGD foreach, official-style eager AdamP
half       65  bfloat16: torch AdamW fused on bf16 params vs ours (timing, GB/s per byte moved, bits), CUDA vs js bit for bit
full       40  test_cuda_step --seeds 1: every shape, option and kind (the host reference is the slow part)
memcheck   35  compute-sanitizer memcheck (--sanitize --no-oom-probe)
synccheck  25  compute-sanitizer synccheck
racecheck  30  compute-sanitizer racecheck (shared memory)
node       25  the addon in Node on the GPU: every kind (scripts/gpu-smoke.js)
"
GPU_FILES="native/tests/cuda/test_cuda_step.cpp native/tests/cuda/bench_cuda_step.cu bench/shapes.json scripts/bench_torch_gpu.py scripts/official_torch.py scripts/gpu-smoke.js scripts/gpu-summary.py test/fixtures/adamp_conv_bias_wd.json scripts/half_torch_gpu.py scripts/torch_gpu.py scripts/bench-gpu-half.js scripts/gpu-bench-common.js"
GPU_PYTHON="scripts/gpu-summary.py scripts/bench_torch_gpu.py scripts/official_torch.py scripts/half_torch_gpu.py scripts/torch_gpu.py"
GPU_NODE="scripts/gpu-smoke.js scripts/bench-gpu-half.js scripts/gpu-bench-common.js"

TEST_BIN="build-gpu/native/tests/cuda/test_cuda_step"
BENCH_BIN="build-gpu/native/tests/cuda/bench_cuda_step"
export TEST_BIN BENCH_BIN
export ITERS="${ITERS:-30}"

need_bin() { [ -x "$ROOT/$1" ] || { echo "SKIP: $1 did not build (see build.log)"; exit 77; }; }
need_tool() { [ "$(fact "has_$1")" = yes ] || { echo "SKIP: $1 is not installed here"; exit 77; }; }
export -f need_bin need_tool

step_sass() {
  cd "$ROOT" && need_bin "$TEST_BIN" && need_tool cuobjdump
  cuobjdump -sass "$TEST_BIN" > "$OUT/sass.txt" && grep -c 'Function :' "$OUT/sass.txt"
}
step_quick() { cd "$ROOT" && need_bin "$TEST_BIN" && "$TEST_BIN" --quick --fixtures test/fixtures; }
step_bench() {
  cd "$ROOT" && need_bin "$BENCH_BIN"
  "$BENCH_BIN" --shapes bench/shapes.json --out "$OUT/bench_cuda.json" --iters "$ITERS"
}
step_torch() {
  cd "$ROOT" || exit 1
  [ "$(fact torch)" != missing ] || { echo "SKIP: python3 cannot import torch"; exit 77; }
  python3 scripts/bench_torch_gpu.py --shapes bench/shapes.json --out "$OUT/bench_torch.json" --iters "$ITERS" --eager-iters 5
}
# bfloat16 (issue 18): PyTorch's fused AdamW on bf16 params (timing, bytes moved, a dump of its
# results), then ours through Node on the same bits (timing, GB/s, vs torch, CUDA vs js bit for bit).
step_half() {
  cd "$ROOT" || exit 1
  local node addon="$ROOT/build-gpu/Release/adamp.node" dump="$OUT/half_dump" torch_args=()
  node="$(fact node_bin)"
  if [ "$(fact torch)" != missing ]; then
    python3 scripts/half_torch_gpu.py --shapes bench/shapes.json --out "$OUT/half_torch.json" --dump "$dump" --steps 2 --iters "$ITERS" &&
      torch_args=(--torch "$dump")
  else
    echo "python3 cannot import torch: no PyTorch bf16 anchor"
  fi
  [ -n "$node" ] || { echo "SKIP: no node binary (carry .device/node.gz, see docs/gpu-runner.md)"; exit 77; }
  [ -f "$addon" ] || { echo "SKIP: the addon did not build"; exit 77; }
  ADAMP_ADDON_PATH="$addon" "$node" scripts/bench-gpu-half.js --out "$OUT/half_node.json" --iters "$ITERS" "${torch_args[@]}"
  local rc=$?
  rm -rf "$dump"  # about 1 GB of bits: not a result
  return $rc
}
step_full() { cd "$ROOT" && need_bin "$TEST_BIN" && "$TEST_BIN" --seeds 1 --fixtures test/fixtures; }
sanitize() {
  cd "$ROOT" && need_bin "$TEST_BIN" && need_tool compute-sanitizer
  compute-sanitizer --tool "$1" --error-exitcode 99 "${@:2}" "$TEST_BIN" --sanitize --no-oom-probe --fixtures test/fixtures
}
step_memcheck() { sanitize memcheck --leak-check full; }
step_synccheck() { sanitize synccheck; }
step_racecheck() { sanitize racecheck --racecheck-report all; }
step_node() {
  cd "$ROOT" || exit 1
  local node addon="$ROOT/build-gpu/Release/adamp.node"
  node="$(fact node_bin)"
  [ -n "$node" ] || { echo "SKIP: no node binary (carry .device/node.gz, see docs/gpu-runner.md)"; exit 77; }
  [ -f "$addon" ] || { echo "SKIP: the addon did not build (node_modules/node-addon-api and node-api-headers must be carried)"; exit 77; }
  ADAMP_ADDON_PATH="$addon" "$node" scripts/gpu-smoke.js --out "$OUT/node.json"
}
export -f step_sass step_quick step_bench step_torch step_half step_full sanitize step_memcheck step_synccheck step_racecheck step_node

gpu_main "$@"
