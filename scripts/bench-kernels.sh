#!/usr/bin/env bash
# A/B of the CPU core's kernels: builds native/tests/bench_cpu_kernels.cpp against the core of
# this working tree (A) and, with --base REV, against the core of another revision (B), then runs
# them alternately for --rounds rounds and prints each round's JSON and the medians of the
# per-step ratios (AdamP / the registered one-pass AdamW, SGDP / the registered one-pass SGD; with
# the info norms on, and off: *NoNorms*), and the ratios of each run's fastest step (*OfMins*: on
# a VM whose neighbours take memory bandwidth in bursts, the same step time swings 1.5x between
# runs; the fastest step is the least disturbed one). --base needs a revision whose core has the generic
# cpu::step (the benchmark is this tree's).
#
#   bash scripts/bench-kernels.sh [--base REV [--same-process]] [--rounds N] [--out FILE] [--flags-a "-DX ..."] [-- bench args...]
#   e.g. bash scripts/bench-kernels.sh --base HEAD~1 --rounds 5 -- --set resnet50 --threads 1 --grads fire
#   bash scripts/bench-kernels.sh --base REV --diff N
#
# --diff N runs the random differential instead (bench_cpu_kernels --digest N: N random cases of
# every optimizer and layout, each under several thread counts, kernel sets, speculation modes and
# the norms switch) on both builds and fails unless they print the same digests of p, state and
# the info record.
#
# --same-process links both cores into one binary (REV's under another namespace,
# native/tests/bench_ab_base.cpp) and runs it with --ab: each step runs every algorithm on both
# cores, alternating which goes first, so A and B share the process's memory placement and the
# neighbours' noise (on this VM a process gets fast or slow memory for its whole life, which moves
# two-process comparisons by up to 0.4). Its JSON adds the base's ratios (...Base) and
# A's time over B's (...OverBaseMs); the summary then reads both from every round.
#
# --flags-a adds compiler flags to A's core (experiments behind #ifdef, e.g. the bounds patch of
# bench/results/README.md). Ratios from one machine and one run only: compare A with B, not with other days.
# Builds with the flags of CMakeLists.txt (-O3 is CMake's Release default there).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
base="" rounds=5 out="" flags_a="" diff="" same=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base) base=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --flags-a) flags_a=$2; shift 2 ;;
    --diff) diff=$2; shift 2 ;;
    --same-process) same=1; shift ;;
    --) shift; break ;;
    *) echo "bench-kernels.sh: unknown option $1 (bench options go after --)" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/adamp-bench-kernels.XXXXXX)
trap 'git -C "$root" worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# core SRC_ROOT PREFIX [EXTRA_FLAGS]: compiles the core of SRC_ROOT; its objects are in $objs
core() {
  local src=$1 pre=$2 extra=()
  read -r -a extra <<<"${3:-}"
  flags=(-O3 -DNDEBUG -std=c++17 -ffp-contract=off -fno-math-errno -I "$src/native/include" -I "$src/native/cpu" "${extra[@]}")
  local avx2=()
  case "$(uname -m)" in x86_64|amd64|i?86) avx2=(-DADAMP_HAVE_AVX2_TU=1) ;; esac
  flags+=("${avx2[@]}")
  objs=()
  for f in step thread_pool kernels_portable; do
    g++ "${flags[@]}" -c "$src/native/cpu/$f.cpp" -o "$pre.$f.o"
    objs+=("$pre.$f.o")
  done
  if [[ ${#avx2[@]} -gt 0 ]]; then
    g++ "${flags[@]}" -mavx2 -mfma -mf16c -c "$src/native/cpu/kernels_avx2.cpp" -o "$pre.kernels_avx2.o"
    objs+=("$pre.kernels_avx2.o")
  fi
}
# build SRC_ROOT OUT [EXTRA_FLAGS]: the core of SRC_ROOT plus this tree's benchmark
build() {
  core "$1" "$2" "${3:-}"
  g++ "${flags[@]}" -I "$root/native/tests" -DADAMP_BENCH_SHAPES_FILE="\"$root/bench/shapes.json\"" \
    "$root/native/tests/bench_cpu_kernels.cpp" "${objs[@]}" -lpthread -o "$2"
}
# build_ab SRC_ROOT BASE_ROOT OUT: SRC_ROOT's core, BASE_ROOT's renamed (adamp -> adamp_base) with
# its entry point, and this tree's benchmark with --ab
build_ab() {
  core "$2" "$3.base" "-Dadamp=adamp_base"
  local bobjs=("${objs[@]}")
  g++ "${flags[@]}" -c "$root/native/tests/bench_ab_base.cpp" -o "$3.base.entry.o"
  bobjs+=("$3.base.entry.o")
  core "$1" "$3.this" "$flags_a"
  g++ "${flags[@]}" -DADAMP_BENCH_AB -I "$root/native/tests" -DADAMP_BENCH_SHAPES_FILE="\"$root/bench/shapes.json\"" \
    "$root/native/tests/bench_cpu_kernels.cpp" "${objs[@]}" "${bobjs[@]}" -lpthread -o "$3"
}

[[ -z "$same" || -n "$base" ]] || { echo "bench-kernels.sh: --same-process needs --base" >&2; exit 2; }
[[ -z "$same" || -z "$diff" ]] || { echo "bench-kernels.sh: --same-process is for timing, not --diff" >&2; exit 2; }
if [[ -n "$base" ]]; then git worktree add --detach "$work/base" "$base" >/dev/null; fi
if [[ -n "$same" ]]; then
  build_ab "$root" "$work/base" "$work/AB"
  bins=(AB)
else
  build "$root" "$work/A" "$flags_a"
  bins=(A)
  if [[ -n "$base" ]]; then
    build "$work/base" "$work/B"
    bins+=(B)
  fi
fi

if [[ -n "$diff" ]]; then
  [[ -n "$base" ]] || { echo "bench-kernels.sh: --diff needs --base" >&2; exit 2; }
  "$work/A" --digest "$diff" >"$work/A.digest"
  "$work/B" --digest "$diff" >"$work/B.digest"
  if cmp -s "$work/A.digest" "$work/B.digest"; then
    echo "differential: $diff cases, $(wc -l <"$work/A.digest") runs, this tree and $base print the same digests"
    exit 0
  fi
  echo "differential: this tree and $base differ:" >&2
  diff "$work/A.digest" "$work/B.digest" | head -20 >&2
  exit 1
fi

log="$work/rounds.jsonl"
load_start=$(cut -d" " -f1-3 /proc/loadavg 2>/dev/null || echo "")
for ((r = 1; r <= rounds; r++)); do
  for b in "${bins[@]}"; do
    line=$("$work/$b" ${same:+--ab} "$@")
    echo "{\"build\":\"$b\",\"round\":$r,\"result\":$line}" | tee -a "$log"
  done
done

summary=$(node -e '
let rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
// A same-process round (build AB) holds both builds: the base ratios are the ...Base fields.
rows = rows.flatMap((r) => r.build !== "AB" ? [r] : [{ build: "A", round: r.round, result: r.result },
  { build: "B", round: r.round, result: Object.fromEntries(Object.keys(r.result).filter((k) => /Base(Cpu)?$/.test(k))
    .map((k) => [k.replace(/Base(Cpu)?$/, "$1"), r.result[k]])) }]);
const med = (a) => { const s = a.filter((x) => x !== null && x !== undefined).sort((x, y) => x - y); return s.length ? s[Math.floor(s.length / 2)] : null; };
const keys = ["adampOverAdam", "adampNoNormsOverAdam", "sgdpOverSgd", "sgdpNoNormsOverSgd"];
const out = {};
for (const b of [...new Set(rows.map((r) => r.build))]) {
  const rs = rows.filter((r) => r.build === b).map((r) => r.result);
  out[b] = { rounds: rs.length };
  for (const k of keys) {
    out[b][k] = med(rs.map((r) => r[k]));
    out[b][k + "Cpu"] = med(rs.map((r) => r[k + "Cpu"]));
    out[b][k + "OfMins"] = med(rs.map((r) => r[k + "OfMins"]));
  }
  out[b].perRound = rs.map((r) => keys.map((k) => r[k]));
  if (b === "A" && rs[0].adamOverBaseMs !== undefined) {
    out.AoverB = {};
    for (const a of ["adamp", "adampNoNorms", "adam", "sgdp", "sgdpNoNorms", "sgd"]) out.AoverB[a] = med(rs.map((r) => r[a + "OverBaseMs"]));
  }
}
console.log(JSON.stringify(out));
' "$log")
load_end=$(cut -d" " -f1-3 /proc/loadavg 2>/dev/null || echo "")
echo "load average: $load_start at the start, $load_end at the end"
echo "medians of the per-round ratios (A = this tree${base:+, B = $base}): $summary"
if [[ -n "$out" ]]; then
  node -e '
const fs = require("fs");
const [log, summary, out, base, args, load0, load1] = process.argv.slice(1);
fs.writeFileSync(out, JSON.stringify({ command: "bash scripts/bench-kernels.sh " + args, A: "working tree", B: base || null,
  date: new Date().toISOString(), loadavgStart: load0, loadavgEnd: load1, summary: JSON.parse(summary),
  rounds: fs.readFileSync(log, "utf8").trim().split("\n").map((l) => JSON.parse(l)) }, null, 1) + "\n");
' "$log" "$summary" "$out" "$base" "${base:+--base $base }${same:+--same-process }--rounds $rounds${flags_a:+ --flags-a \"$flags_a\"} -- $*" "$load_start" "$load_end"
  echo "written: $out"
fi
