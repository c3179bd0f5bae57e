# The machinery shared by scripts/gpu-validate.sh and scripts/gpu-validate-more.sh (sourced, not run).
#
# A script sets PLAN (one step per line: "name timeout_seconds what"), defines step_<name> for
# each step and calls gpu_main "$@". Every step runs under `timeout` with its output in
# $OUT/<name>.log; a step that cannot run prints "SKIP: <why>" and exits 77. After every step
# $OUT/summary.json is rewritten (scripts/gpu-summary.py), so a call cut short still leaves the
# truth up to that point. The sum of the timeouts (plus a kill grace per step and a fixed
# overhead) must fit one device call: `--dry-run` checks that without a GPU.
#
# Env: OUT (default bench/results/gpu-<date>, dry run: build-gpu/dry-run-<script>), STEPS (a comma
# list of step names; default every step), CUDAARCHS (default: the GPU's), ITERS, ADAMP_COMMIT.
# Exit: 0 every step that ran passed; 1 a step failed or timed out; 2 no GPU.

LIMIT_S=600      # one device call
GRACE_S=2        # timeout -k: a step that ignores SIGTERM is killed this much later
OVERHEAD_S=20    # the script's own work between steps (summaries, decompressing node)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT

gpu_say() { echo "[$(basename "$0" .sh)] $*"; }

# fact KEY: a fact an earlier step recorded ($OUT/.facts).
fact() { awk -F'\t' -v k="$1" '$1 == k { v = $2 } END { print v }' "$OUT/.facts" 2>/dev/null; }
set_fact() { printf '%s\t%s\n' "$1" "$2" >> "$OUT/.facts"; }
export -f fact set_fact

gpu_summary() { python3 "$ROOT/scripts/gpu-summary.py" "$OUT" "$1" || gpu_say "summary.json could not be written"; }

gpu_plan_names() { echo "$PLAN" | awk 'NF { print $1 }'; }

gpu_budget() {
  local n sum
  n=$(echo "$PLAN" | awk 'NF' | wc -l)
  sum=$(echo "$PLAN" | awk 'NF { s += $2 } END { print s + 0 }')
  echo $((sum + n * GRACE_S + OVERHEAD_S))
}

# gpu_run_step NAME TIMEOUT: runs step_NAME under timeout, records the result, rewrites the summary.
gpu_run_step() {
  local name="$1" t="$2" rc result note t0 secs
  if [ -n "${STEPS:-}" ] && ! [[ ",$STEPS," == *",$name,"* ]]; then
    printf '%s\tskipped\t-\t0\tnot in STEPS=%s\n' "$name" "$STEPS" >> "$OUT/.steps"
    gpu_summary running
    return 0
  fi
  gpu_say "== $name (timeout ${t}s)"
  t0=$(date +%s)
  timeout -k "$GRACE_S" "$t" bash -c "step_$name" > "$OUT/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  note=""
  case $rc in
    0) result=passed ;;
    77) result=skipped; note="$(grep -E '^SKIP: ' "$OUT/$name.log" | tail -1 | cut -c7- | tr '\t' ' ')" ;;
    124|137) result=timed_out; note="killed after ${t}s" ;;
    *) result=failed; note="$(tail -3 "$OUT/$name.log" | tr '\t\n' '  ' | cut -c1-300)" ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$result" "$rc" "$secs" "$note" >> "$OUT/.steps"
  gpu_say "   $name: $result (rc=$rc, ${secs}s)${note:+: $note}"
  gpu_summary running
}

gpu_dry_run() {
  local ok=0 budget name t
  gpu_say "dry run: the plan, in order (name, timeout, what)"
  echo "$PLAN" | awk 'NF { t = $2; n = $1; $1 = ""; $2 = ""; sub(/^  /, ""); printf "  %-11s %4ss  %s\n", n, t, $0 }'
  budget=$(gpu_budget)
  gpu_say "sum of timeouts + ${GRACE_S}s kill grace per step + ${OVERHEAD_S}s overhead = ${budget}s (limit ${LIMIT_S}s for one device call)"
  if [ "$budget" -gt "$LIMIT_S" ]; then gpu_say "FAIL: the plan does not fit one device call"; ok=1; fi
  for name in $(gpu_plan_names); do
    if ! declare -F "step_$name" > /dev/null; then gpu_say "FAIL: no function step_$name"; ok=1; fi
    t=$(echo "$PLAN" | awk -v n="$name" '$1 == n { print $2 }')
    if ! [[ "$t" =~ ^[1-9][0-9]*$ ]]; then gpu_say "FAIL: step $name has no timeout"; ok=1; fi
  done
  if [ -n "${STEPS:-}" ]; then
    for name in ${STEPS//,/ }; do
      gpu_plan_names | grep -qx "$name" || { gpu_say "FAIL: STEPS names an unknown step '$name'"; ok=1; }
    done
  fi
  for f in $GPU_FILES; do
    [ -e "$ROOT/$f" ] || { gpu_say "FAIL: $f is missing"; ok=1; }
  done
  bash -n "$0" || ok=1
  for f in $GPU_PYTHON; do PYTHONPYCACHEPREFIX="$OUT/pycache" python3 -m py_compile "$ROOT/$f" || { gpu_say "FAIL: $f does not compile"; ok=1; }; done
  if command -v node > /dev/null 2>&1; then
    for f in $GPU_NODE; do node --check "$ROOT/$f" || { gpu_say "FAIL: $f does not parse"; ok=1; }; done
  fi
  # The summary writer on this plan, every step as if it had run.
  for name in $(gpu_plan_names); do printf '%s\tskipped\t77\t0\tdry run\n' "$name" >> "$OUT/.steps"; done
  gpu_summary dry-run
  python3 -c "import json, sys; s = json.load(open(sys.argv[1])); assert s['status'] == 'dry-run' and len(s['steps']) == $(gpu_plan_names | wc -l)" \
    "$OUT/summary.json" || { gpu_say "FAIL: summary.json"; ok=1; }
  [ $ok = 0 ] && gpu_say "dry run: OK (summary: $OUT/summary.json)"
  return $ok
}

gpu_main() {
  local dry=0 script
  script="$(basename "$0" .sh)"
  case "${1:-}" in
    --dry-run) dry=1 ;;
    "") ;;
    *) echo "usage: $0 [--dry-run]   (env: OUT, STEPS, CUDAARCHS, ITERS, ADAMP_COMMIT)" >&2; exit 2 ;;
  esac
  if [ $dry = 1 ]; then OUT="${OUT:-build-gpu/dry-run-$script}"; else OUT="${OUT:-bench/results/gpu-$(date -u +%Y-%m-%d)}"; fi
  cd "$ROOT" || exit 1
  mkdir -p "$OUT"
  OUT="$(cd "$OUT" && pwd)"
  export OUT
  rm -f "$OUT/.steps" "$OUT/.facts" "$OUT/summary.json"
  : > "$OUT/.steps"
  echo "$PLAN" | awk 'NF { t = $2; n = $1; $1 = ""; $2 = ""; sub(/^  /, ""); printf "%s\t%s\t%s\n", n, t, $0 }' > "$OUT/.plan"
  set_fact script "$script"
  set_fact commit "${ADAMP_COMMIT:-$(git rev-parse HEAD 2>/dev/null || cat .device/commit 2>/dev/null || echo unknown)}"
  set_fact started "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  set_fact steps_requested "${STEPS:-all}"
  if [ $dry = 1 ]; then gpu_dry_run; exit $?; fi
  gpu_summary running
  local name t
  while read -r name t _; do
    [ -n "$name" ] || continue
    gpu_run_step "$name" "$t"
    if [ "$name" = env ] && [ -z "$(fact gpu)" ]; then
      gpu_say "no GPU here: $(fact why_no_gpu)"
      gpu_summary no-gpu
      exit 2
    fi
  done <<< "$PLAN"
  gpu_summary done
  python3 -c "import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))['status'] == 'passed' else 1)" "$OUT/summary.json"
}

# ---- steps both scripts use -------------------------------------------------------------------

# env: the GPU, its arch and the tools; unpacks the carried node (.device/node.gz, docs/gpu-runner.md).
step_env() {
  cd "$ROOT" || exit 1
  if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi > /dev/null 2>&1; then
    IFS=',' read -r name cc driver mem < <(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader | head -1)
    set_fact gpu "$(echo "$name" | xargs)"
    set_fact compute_capability "$(echo "$cc" | xargs)"
    set_fact driver "$(echo "$driver" | xargs)"
    set_fact gpu_memory "$(echo "$mem" | xargs)"
    nvidia-smi
  else
    set_fact why_no_gpu "nvidia-smi $(command -v nvidia-smi > /dev/null 2>&1 && echo 'found no device or no driver' || echo 'is not installed')"
  fi
  local cc arch
  cc="$(fact compute_capability)"
  arch="${CUDAARCHS:-${cc/./}}"
  set_fact cuda_arch "${arch:-90}"
  set_fact nvcc "$(nvcc --version 2>/dev/null | tail -1)"
  set_fact cmake "$(cmake --version 2>/dev/null | head -1)"
  if [ -f .device/node.gz ] && [ ! -x .device/node ]; then gzip -dc .device/node.gz > .device/node && chmod +x .device/node; fi
  local node=""
  if [ -x .device/node ]; then node="$ROOT/.device/node"; elif command -v node > /dev/null 2>&1; then node="$(command -v node)"; fi
  set_fact node_bin "$node"
  set_fact node "$([ -n "$node" ] && "$node" --version || echo missing)"
  set_fact torch "$(timeout 10 python3 -c 'import torch; print(torch.__version__)' 2>/dev/null || echo missing)"
  for tool in cuobjdump compute-sanitizer ncu ninja; do set_fact "has_$tool" "$(command -v "$tool" > /dev/null 2>&1 && echo yes || echo no)"; done
  set_fact host "$(hostname)"
  set_fact cores "$(nproc)"
}

# build: the CUDA tests and benchmark for this GPU (and the addon when node-addon-api is here),
# with ptxas -v in the log (registers, spills), in build-gpu/.
step_build() {
  cd "$ROOT" || exit 1
  local arch gen=() addon=() targets="test_cuda_step bench_cuda_step"
  arch="$(fact cuda_arch)"
  [ "$(fact has_ninja)" = yes ] && gen=(-G Ninja)
  local nm=""  # the Node-API headers: node_modules, or copies carried in .device/node_modules
  for d in node_modules .device/node_modules; do
    [ -d "$d/node-addon-api" ] && [ -d "$d/node-api-headers" ] && { nm="$ROOT/$d"; break; }
  done
  if [ -n "$nm" ]; then
    addon=("-DCMAKE_JS_INC=$nm/node-addon-api;$nm/node-api-headers/include" "-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=$ROOT/build-gpu/Release")
    targets="$targets adamp"
  else
    echo "note: node-addon-api / node-api-headers not in node_modules or .device/node_modules: the addon is not built"
  fi
  cmake -S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DADAMP_BUILD_TESTS=ON -DADAMP_WITH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DADAMP_CUDA_PTXAS_VERBOSE=ON "${addon[@]}" || exit 1
  # shellcheck disable=SC2086
  cmake --build build-gpu -j "$(nproc)" --target $targets  # this log (build.log) keeps ptxas -v for the summary
}
export -f step_env step_build
