#!/usr/bin/env bash
# The one-command GPU validation of the CUDA backend (see shared/GPU.md).
#
#   scripts/gpu-validate.sh             on a GPU machine: everything below, results under $OUT
#   scripts/gpu-validate.sh --dry-run   anywhere: builds and runs what it can, says what it skipped
#                                       (results under build-gpu/dry-run unless OUT is set)
#
# Steps: detect the GPU and its architecture; build the CUDA tests and benchmark for it
# (CUDAARCHS=<detected>, default 90); run the C++ GPU tests (CUDA step vs host reference over
# shapes/seeds/options, the reference fixtures, determinism); again under compute-sanitizer
# memcheck and racecheck; ptxas register counts; build the addon with CUDA and run the Node GPU
# tests (jest when node_modules has it, else scripts/gpu-smoke.js on dist/) with the node binary
# carried as .device/node.gz; the benchmark (ours vs torch fused Adam / foreach SGD / eager
# AdamP, as ratios and as a fraction of the bandwidth bound). Everything goes to $OUT
# (default bench/results/gpu-<date>/): summary.json, validate.log, bench_cuda.json,
# bench_torch.json, node.json (jest: test/cuda-engine + test/cuda-device, i.e. device tensors and
# external pointers too), bench_node.json (the public API on params already on the device). Env: OUT, CUDAARCHS, ITERS (default 50), ADAMP_COMMIT.
# STEPS (default "tests,sanitizers,node,bench") picks parts, to split the work over several
# device calls of at most 10 minutes each (each call builds what its parts need).
# Exit: 0 all passed; 1 something failed; 2 no GPU (nothing to validate; the log says why).
#
# On a lent GPU machine (shared/GPU.md), from this machine's checkout:
#   mkdir -p .device && gzip -c "$(command -v node)" > .device/node.gz && npm run build:ts
#   run(command: 'ADAMP_COMMIT=<sha> scripts/gpu-validate.sh',
#       carry: [".device", "dist", "node_modules/bindings", "node_modules/file-uri-to-path",
#               "node_modules/node-addon-api", "node_modules/node-api-headers"])
# then copy $OUT's files into bench/results/gpu-<date>/ and commit them.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
if [ "$DRY" = 1 ]; then
  OUT="${OUT:-build-gpu/dry-run}"  # a dry run's files are not GPU data: keep them out of bench/
else
  OUT="${OUT:-bench/results/gpu-$(date -u +%Y-%m-%d)}"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/validate.log"
ITERS="${ITERS:-50}"
export STEPS="${STEPS:-tests,sanitizers,node,bench}"
want() { case ",$STEPS," in *",$1,"*) return 0;; esac; return 1; }
: > "$LOG"
STATUS_FILE="$OUT/.steps"
: > "$STATUS_FILE"
JOBS="$(nproc 2>/dev/null || echo 2)"

say() { echo "[gpu-validate] $*" | tee -a "$LOG"; }
# step NAME CMD...: runs CMD with output in the log, records rc and seconds.
step() {
  local name="$1"; shift
  say "== $name: $*"
  local t0; t0=$(date +%s)
  "$@" >> "$LOG" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  echo "$name $rc $dt" >> "$STATUS_FILE"
  say "   $name: rc=$rc (${dt}s)"
  return $rc
}
skip() { echo "$1 skipped 0" >> "$STATUS_FILE"; say "   $1: skipped: $2"; echo "$1: $2" >> "$OUT/.skips"; }
: > "$OUT/.skips"

# ---- environment ------------------------------------------------------------------------------
COMMIT="${ADAMP_COMMIT:-$(git rev-parse HEAD 2>/dev/null || cat .device/commit 2>/dev/null || echo unknown)}"
say "adamp GPU validation, commit $COMMIT, $(date -u +%Y-%m-%dT%H:%M:%SZ), host $(hostname)"
GPU_NAME=""; GPU_CC=""; DRIVER=""
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi > /dev/null 2>&1; then
  IFS=',' read -r GPU_NAME GPU_CC DRIVER < <(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader | head -1)
  GPU_NAME="$(echo "$GPU_NAME" | xargs)"; GPU_CC="$(echo "$GPU_CC" | xargs)"; DRIVER="$(echo "$DRIVER" | xargs)"
  nvidia-smi >> "$LOG" 2>&1
fi
if [ -z "$GPU_NAME" ]; then
  WHY="no NVIDIA GPU here: nvidia-smi $(command -v nvidia-smi > /dev/null 2>&1 && echo 'found no device or no driver' || echo 'is not installed')"
  if [ "$DRY" = 0 ]; then
    say "$WHY; nothing to validate (use --dry-run to build and run what works without one)"
    python3 - "$OUT" "$COMMIT" "$WHY" << 'EOF'
import json, sys
out, commit, why = sys.argv[1:4]
json.dump({'status': 'no-gpu', 'reason': why, 'commit': commit}, open(f'{out}/summary.json', 'w'), indent=2)
EOF
    rm -f "$STATUS_FILE" "$OUT/.skips"
    exit 2
  fi
  say "$WHY; --dry-run: building and running what works without one"
fi
ARCH="${CUDAARCHS:-}"
if [ -z "$ARCH" ]; then
  if [ -n "$GPU_CC" ]; then ARCH="${GPU_CC/./}"; else ARCH=90; fi
fi
say "GPU: ${GPU_NAME:-none} (compute capability ${GPU_CC:-?}), driver ${DRIVER:-none}; building for sm_$ARCH"
NVCC_VERSION="$(nvcc --version 2>/dev/null | tail -1)"
CMAKE_VERSION="$(cmake --version 2>/dev/null | head -1)"
say "nvcc: ${NVCC_VERSION:-missing}; $CMAKE_VERSION"

# Node: the carried binary (shared/GPU.md), else whatever is on PATH.
if [ -f .device/node.gz ]; then
  gzip -dc .device/node.gz > .device/node && chmod +x .device/node && export PATH="$ROOT/.device:$PATH"
fi
NODE_VERSION="$(node --version 2>/dev/null || echo missing)"
TORCH_VERSION="$(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null || echo missing)"
say "node $NODE_VERSION, torch $TORCH_VERSION"
GEN=""
command -v ninja > /dev/null 2>&1 && GEN="-G Ninja"

# ---- C++: build, tests, sanitizers --------------------------------------------------------------
BUILD=build-gpu
TEST_BIN="$BUILD/native/tests/cuda/test_cuda_step"
BENCH_BIN="$BUILD/native/tests/cuda/bench_cuda_step"
if want tests || want sanitizers || want bench; then
step build_tests cmake -S . -B "$BUILD" $GEN -DCMAKE_BUILD_TYPE=Release -DADAMP_BUILD_TESTS=ON -DADAMP_WITH_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
  && step build_tests_compile cmake --build "$BUILD" -j "$JOBS" --target test_cuda_step bench_cuda_step
fi

want tests && step ptxas_registers bash -c "nvcc -std=c++17 -O3 -arch=sm_$ARCH -Xptxas -v -Inative/include -Inative/cuda -c native/cuda/adamp_cuda.cu -o /dev/null 2>&1 | grep -A3 -E 'Compiling entry function.*(step_kernel|info_kernel)' | tee '$OUT/.ptxas'"

if ! want tests && ! want sanitizers; then
  :
elif [ -x "$TEST_BIN" ]; then
  want tests && step cuda_tests "$TEST_BIN" --fixtures test/fixtures
  if ! want sanitizers; then
    :
  elif command -v compute-sanitizer > /dev/null 2>&1; then
    # --sanitize: a small set that still reaches every item layout (sanitizers slow kernels 10-100x).
    step memcheck compute-sanitizer --tool memcheck --error-exitcode 99 "$TEST_BIN" --sanitize --fixtures test/fixtures
    step racecheck compute-sanitizer --tool racecheck --racecheck-report all --error-exitcode 99 "$TEST_BIN" --sanitize --fixtures test/fixtures
    step synccheck compute-sanitizer --tool synccheck --error-exitcode 99 "$TEST_BIN" --sanitize --fixtures test/fixtures
  else
    for s in memcheck racecheck synccheck; do skip $s "compute-sanitizer is not installed"; done
  fi
else
  skip cuda_tests "the test binary did not build"
fi

# ---- Node: addon with CUDA, GPU tests -----------------------------------------------------------
ADDON="$ROOT/build-gpu-addon/Release/adamp.node"
if ! want node; then
  :
elif [ -d node_modules/node-addon-api ] && [ -d node_modules/node-api-headers ]; then
  step build_addon cmake -S . -B build-gpu-addon $GEN -DCMAKE_BUILD_TYPE=Release -DADAMP_WITH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
    "-DCMAKE_JS_INC=$ROOT/node_modules/node-addon-api;$ROOT/node_modules/node-api-headers/include" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$ROOT/build-gpu-addon/Release" \
    && step build_addon_compile cmake --build build-gpu-addon -j "$JOBS" --target adamp
else
  skip build_addon "node_modules/node-addon-api and node_modules/node-api-headers are needed (npm ci, or carry them)"
fi
if ! want node; then
  :
elif [ "$NODE_VERSION" = missing ]; then
  skip node_tests "no node binary (carry .device/node.gz, see shared/GPU.md)"
elif [ ! -f "$ADDON" ]; then
  skip node_tests "the addon did not build"
elif [ -x node_modules/.bin/jest ]; then
  export ADAMP_ADDON_PATH="$ADDON"
  step node_tests node node_modules/.bin/jest test/cuda-engine.test.ts test/cuda-device.test.ts --json --outputFile="$OUT/node.json"
elif [ -f dist/lib/index.js ]; then
  export ADAMP_ADDON_PATH="$ADDON"
  step node_tests bash -c "node scripts/gpu-smoke.js | tee '$OUT/node.json'"
else
  skip node_tests "neither jest (node_modules) nor dist/ (npm run build:ts) is here"
fi

# ---- benchmarks -------------------------------------------------------------------------------
if ! want bench; then
  :
elif [ -x "$BENCH_BIN" ]; then
  step bench_cuda "$BENCH_BIN" --shapes bench/shapes.json --out "$OUT/bench_cuda.json" --iters "$ITERS" --sweep
else
  skip bench_cuda "the benchmark binary did not build"
fi
if ! want bench; then
  :
elif [ "$NODE_VERSION" != missing ] && [ -f "$ADDON" ] && [ -f dist/lib/index.js ]; then
  ADAMP_ADDON_PATH="$ADDON" step bench_node node scripts/bench-gpu-node.js --out "$OUT/bench_node.json" --iters 20 --reps 5
else
  skip bench_node "the Node benchmark of device params needs node, the CUDA addon and dist/"
fi
if ! want bench; then
  :
elif [ "$TORCH_VERSION" != missing ]; then
  step bench_torch python3 scripts/bench_torch_gpu.py --shapes bench/shapes.json --out "$OUT/bench_torch.json" --iters "$ITERS"
else
  skip bench_torch "PyTorch is not installed"
fi

# ---- summary ------------------------------------------------------------------------------------
python3 - "$OUT" "$COMMIT" "${GPU_NAME:-}" "${GPU_CC:-}" "${DRIVER:-}" "$ARCH" "$NVCC_VERSION" "$NODE_VERSION" "$TORCH_VERSION" "$DRY" << 'EOF' | tee -a "$LOG"
import json, os, sys
out, commit, gpu, cc, driver, arch, nvcc, node, torch, dry = sys.argv[1:11]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception:
        return None
steps = {}
for line in open(os.path.join(out, '.steps')):
    name, rc, secs = line.split()
    steps[name] = {'rc': None if rc == 'skipped' else int(rc), 'seconds': int(secs), 'skipped': rc == 'skipped'}
skips = [l.strip() for l in open(os.path.join(out, '.skips')) if l.strip()]
ptxas = open(os.path.join(out, '.ptxas')).read() if os.path.exists(os.path.join(out, '.ptxas')) else ''
ours, theirs = load('bench_cuda.json'), load('bench_torch.json')
node_bench = load('bench_node.json')
figures, targets = {}, {}
if ours and theirs:
    for name, o in ours['sets'].items():
        t = theirs['sets'].get(name)
        if not t:
            continue
        a, s = o['adamp']['stream']['median_ms'], o['sgdp']['stream']['median_ms']
        f = {
            'adamp_ms': a, 'sgdp_ms': s,
            'adamp_graph_ms': (o['adamp'].get('graph') or {}).get('median_ms'),
            'torch_adam_fused_ms': t['adam_fused']['median_ms'], 'torch_adamw_fused_ms': t['adamw_fused']['median_ms'],
            'torch_sgd_foreach_ms': t['sgd_foreach']['median_ms'], 'torch_adamp_eager_ms': t['adamp_eager']['median_ms'],
            'torch_sgdp_eager_ms': t['sgdp_eager']['median_ms'],
            'adamp_vs_adam_fused': a / t['adam_fused']['median_ms'],
            'adamp_vs_adamw_fused': a / t['adamw_fused']['median_ms'],
            'sgdp_vs_sgd_foreach': s / t['sgd_foreach']['median_ms'],
            'eager_adamp_over_ours': t['adamp_eager']['median_ms'] / a,
            'eager_sgdp_over_ours': t['sgdp_eager']['median_ms'] / s,
            'adamp_fraction_of_28B_bound': o['adamp']['fraction_of_bound'],
            'sgdp_fraction_of_20B_bound': o['sgdp']['fraction_of_bound'],
            'torch_adam_fused_fraction_of_28B_bound': t['bound_ms_28B'] / t['adam_fused']['median_ms'],
        }
        figures[name] = f
        targets[name] = {
            'adamp <= 1.10x torch Adam(fused)': f['adamp_vs_adam_fused'] <= 1.10,
            'sgdp <= 1.10x torch SGD(foreach)': f['sgdp_vs_sgd_foreach'] <= 1.10,
            'adamp >= 20x eager AdamP': f['eager_adamp_over_ours'] >= 20,
        }
# 77 = the binary found no usable GPU: a failure on a GPU machine, expected in a dry run without one.
failed = [n for n, s in steps.items() if not s['skipped'] and s['rc'] != 0 and not (s['rc'] == 77 and not gpu)]
summary = {
    'status': 'dry-run' if dry == '1' else ('passed' if not failed else 'failed'),
    'commit': commit, 'gpu': gpu, 'compute_capability': cc, 'driver': driver, 'cuda_arch': arch,
    'nvcc': nvcc, 'node': node, 'torch': torch,
    'copy_bandwidth_GBps': {'ours': ours and ours.get('copy_bandwidth_GBps'), 'torch': theirs and theirs.get('copy_bandwidth_GBps')},
    'steps_run': os.environ.get('STEPS', ''), 'steps': steps, 'failed_steps': failed, 'skipped': skips, 'ptxas': ptxas.strip().splitlines(),
    'figures': figures, 'targets': targets,
    'node_device_params': node_bench and {k: {kind: {m: v[kind][m] for m in ('device_params_ms', 'host_params_ms', 'host_over_device')} for kind in ('adamp', 'sgdp')} for k, v in node_bench.get('sets', {}).items()},
}
with open(os.path.join(out, 'summary.json'), 'w') as fh:
    json.dump(summary, fh, indent=2)
print(f"[gpu-validate] status: {summary['status']}; failed steps: {failed or 'none'}; skipped: {len(skips)}")
for name, f in figures.items():
    print(f"[gpu-validate] {name}: AdamP {f['adamp_ms']:.4f} ms = {f['adamp_vs_adam_fused']:.2f}x Adam(fused), "
          f"{f['eager_adamp_over_ours']:.1f}x faster than eager AdamP, {100*f['adamp_fraction_of_28B_bound']:.0f}% of the 28 B/elem bound; "
          f"SGDP {f['sgdp_ms']:.4f} ms = {f['sgdp_vs_sgd_foreach']:.2f}x SGD(foreach)")
EOF
rm -f "$STATUS_FILE" "$OUT/.skips" "$OUT/.ptxas"
if [ -z "$GPU_NAME" ]; then exit 2; fi
python3 -c "import json,sys; sys.exit(0 if json.load(open('$OUT/summary.json'))['status'] == 'passed' else 1)"
