#!/usr/bin/env bash
# Where a kernel benchmark run spends its CPU time, by kernel, relative to the one-pass floor's
# kernel: `perf record` of bench_cpu_kernels, its samples summed per kernel family (AdamP pass 1,
# the speculative pass, pass 2; SGDP pass 1 and 2; the one-pass Adam and SGD; the pool's spinning)
# and divided by the floor's samples. On a VM whose memory speed changes from minute to minute,
# these shares moved less between runs than the wall-time ratios (docs/performance.md).
#
#   bash scripts/perf-shares.sh [--rounds N] [--out FILE] LABEL=BINARY [LABEL=BINARY ...] -- bench args...
#   e.g. bash scripts/perf-shares.sh base=/tmp/base/bench_cpu_kernels new=build-tests/bench_cpu_kernels \
#          -- --set resnet50 --threads 2 --grads fire --steps 20 --same-memory --algos sgdpNoNorms,sgd
#
# Prints (and appends to FILE) one JSON line per run: the label, the bench's own JSON line, the
# percent of all samples per family (`samples`) and each family over its floor (`overFloor`:
# adamp* over adam, sgdp* over sgd). The binaries run alternately, one process each, --rounds times.
set -euo pipefail
rounds=1
out=""
bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --) shift; break ;;
    *=*) bins+=("$1"); shift ;;
    *) echo "perf-shares.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ ${#bins[@]} -gt 0 ] || { echo "perf-shares.sh: give at least one LABEL=BINARY" >&2; exit 2; }
command -v perf >/dev/null || { echo "perf-shares.sh: needs perf (Debian: linux-perf)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
  for lb in "${bins[@]}"; do
    label="${lb%%=*}" bin="${lb#*=}"
    perf record -q -o "$tmp/perf.data" -F 4000 -- "$bin" "$@" >"$tmp/run.json" 2>"$tmp/run.err" || {
      cat "$tmp/run.err" >&2; exit 1; }
    perf report -i "$tmp/perf.data" --no-children --stdio --sort symbol 2>/dev/null >"$tmp/report.txt"
    line=$(LABEL="$label" ROUND="$r" ARGS="$*" python3 - "$tmp/run.json" "$tmp/report.txt" <<'EOF'
import json, os, re, sys
result = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
families = [  # (family, regex on the symbol), first match wins; pass 2 takes the rest of each policy's
    ("adam", r"one_pass_t<adamp::AdamW,"), ("sgd", r"one_pass_t<adamp::SGD,"),
    ("adampPass1", r"pass1_\w+<adamp::AdamP\b"), ("adampSpec", r"spec_pair\w*<adamp::AdamP\b"),
    ("adampDecide", r"(item_coefs|decide_\w+)<adamp::AdamP>"), ("adampPass2", r"<adamp::AdamP\b"),
    ("sgdpPass1", r"pass1_\w+<adamp::SGDP\b"), ("sgdpDecide", r"(item_coefs|decide_\w+)<adamp::SGDP>"),
    ("sgdpPass2", r"<adamp::SGDP\b"), ("pool", r"ThreadPool::"),
]
samples = {}
for line in open(sys.argv[2]):
    m = re.match(r"\s+([0-9.]+)%\s+\[\.\]\s+(.*)", line)
    if not m:
        continue
    for fam, pat in families:
        if re.search(pat, m.group(2)):
            samples[fam] = round(samples.get(fam, 0.0) + float(m.group(1)), 2)
            break
over = {}
for fam, v in samples.items():
    floor = "adam" if fam.startswith("adamp") else "sgd" if fam.startswith("sgdp") else None
    if floor and samples.get(floor):
        over[fam] = round(v / samples[floor], 3)
for alg, floor in (("adamp", "adam"), ("sgdp", "sgd")):
    parts = [v for f, v in samples.items() if f.startswith(alg)]
    if parts and samples.get(floor):
        over[alg] = round(sum(parts) / samples[floor], 3)
print(json.dumps({"label": os.environ["LABEL"], "round": int(os.environ["ROUND"]), "args": os.environ["ARGS"],
                  "result": result, "samples": samples, "overFloor": over}))
EOF
)
    echo "$line"
    [ -z "$out" ] || echo "$line" >>"$out"
  done
done
