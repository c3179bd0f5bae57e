#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer build of the CPU core, the addon and the C++ tests
# (one build tree, build-asan/, kept out of ./build: bindings would pick build/Debug first), then:
#   1. the C++ tests (test_math, test_protocol, test_step, test_all_or_nothing: no leak from an
#      allocation failed mid-preparation) built with the sanitizers, leak checking on;
#   2. the jest suites that drive the native code hardest, against the sanitized addon (node is not
#      sanitized: libasan and libubsan are LD_PRELOADed; leak checking is off because V8's own
#      allocations would flood it):
#        test/native-engine.test.ts   every layout, threads, shards, async
#        test/all-or-nothing.test.ts  refused steps (bad params in later groups, detached, shared,
#                                     resizable buffers) change nothing
#        test/fuzz-api.test.ts        garbage into every entry of the addon, the facade on native
#        test/crash.test.ts           workers ended mid-step, transfers under GC pressure (its child
#                                     processes inherit LD_PRELOAD and the sanitized addon)
#
#   scripts/asan-native.sh          the CI leg (~10 min on 2 cores): test_step --quick (every code
#                                   path, fewer repetitions, no tensor over ~150,000 elements), the
#                                   jest suites on the native backend only (js runs no native code)
#   scripts/asan-native.sh --full   the C++ tests in full, the jest suites on js and native
#                                   (~20 min on 2 cores)
#
# Code is built at -O1 (ASan's advice: a fraction of -O0's run time, nothing hidden from the
# sanitizers). Any sanitizer report fails the run: UBSan halts on the first error and ASan aborts
# (the process, and so the test or the run, fails), and the output is searched for reports as well
# (test/crash.test.ts searches its child processes' stderr the same way). log_path is not used:
# UBSan ignores it when both runtimes are preloaded into node.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
san="${ADAMP_SANITIZE:-address,undefined}"
full=0
case "${1:-}" in
  "") ;;
  --full) full=1 ;;
  *) echo "usage: scripts/asan-native.sh [--full]" >&2; exit 2 ;;
esac
t0=$SECONDS
step() { echo "== asan ($((SECONDS - t0)) s): $*"; }

step "building the addon and the C++ tests into build-asan/ ($san, -O1)"
# configure (always: cmake-js build would keep an older cache's options), then one build of all five targets
npx cmake-js configure --out build-asan --debug --CDADAMP_WITH_CUDA=OFF "--CDADAMP_SANITIZE=$san" --CDADAMP_BUILD_TESTS=ON \
  "--CDCMAKE_CXX_FLAGS_DEBUG=-O1 -g" >build-asan.log 2>&1 || { tail -30 build-asan.log; exit 1; }
cmake --build build-asan -j2 --target adamp test_math test_protocol test_step test_all_or_nothing >>build-asan.log 2>&1 \
  || { tail -30 build-asan.log; exit 1; }
addon="$root/build-asan/Debug/adamp.node"
[ -f "$addon" ] || { echo "asan: $addon was not built"; exit 1; }

# the marks of a sanitizer report (ASan, LeakSanitizer, UBSan)
marks='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer'
logs="$root/build-asan/logs"
rm -rf "$logs"
mkdir -p "$logs"
check_reports() { # check_reports LOG: fails when the log holds a sanitizer report
  if grep -Eq "$marks" "$1"; then
    echo "== asan ($((SECONDS - t0)) s): FAILED: sanitizer report in $1:"
    grep -En -m 5 "$marks" "$1"
    exit 1
  fi
}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

step "C++ tests"
quick=(--quick)
[ "$full" = 1 ] && quick=()
for t in test_math test_protocol test_step test_all_or_nothing; do
  args=()
  [ "$t" = test_step ] || [ "$t" = test_all_or_nothing ] && args=("${quick[@]}")
  ASAN_OPTIONS=detect_leaks=1 "./build-asan/$t" "${args[@]}" 2>&1 | tee "$logs/$t.log"
  check_reports "$logs/$t.log"
done

step "jest against $addon"
libasan="$(g++ -print-file-name=libasan.so)"
libubsan="$(g++ -print-file-name=libubsan.so)"
for lib in "$libasan" "$libubsan"; do # g++ prints the bare name when it has no such runtime
  [ -f "$lib" ] || { echo "asan: g++ has no $lib runtime to preload into node (install libasan/libubsan)"; exit 1; }
done
backends=native
[ "$full" = 1 ] && backends=js,native
LD_PRELOAD="$libasan:$libubsan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  ADAMP_ADDON_PATH="$addon" ADAMP_TEST_BACKENDS="$backends" \
  npx jest --runInBand test/native-engine.test.ts test/all-or-nothing.test.ts test/fuzz-api.test.ts test/crash.test.ts 2>&1 \
  | tee "$logs/jest.log"
check_reports "$logs/jest.log"
step "passed"
