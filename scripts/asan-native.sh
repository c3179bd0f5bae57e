#!/usr/bin/env bash
# AddressSanitizer (+ UndefinedBehaviorSanitizer) build of the CPU core and the addon, kept out of
# ./build (bindings would pick build/Debug first), then:
#   1. the C++ tests (CTest) built with the sanitizers;
#   2. the native jest tests against the sanitized addon (node is not sanitized: libasan is
#      LD_PRELOADed; leak checking is off because V8's own allocations would flood it).
#
#   scripts/asan-native.sh            (build folders: build-asan/, build-asan-tests/)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
san="${ADAMP_SANITIZE:-address,undefined}"

echo "== asan: building the addon into build-asan/ ($san)"
npx cmake-js rebuild -p 2 --out build-asan --debug --CDADAMP_WITH_CUDA=OFF "--CDADAMP_SANITIZE=$san" >build-asan.log 2>&1 \
  || { tail -30 build-asan.log; exit 1; }
addon="$root/build-asan/Debug/adamp.node"

echo "== asan: C++ tests"
cmake -S . -B build-asan-tests -DADAMP_BUILD_TESTS=ON -DADAMP_WITH_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug \
  "-DADAMP_SANITIZE=$san" >/dev/null
cmake --build build-asan-tests -j2 --target test_math test_step test_protocol >/dev/null
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
  ctest --test-dir build-asan-tests -R "^test_(math|step|protocol)$" --output-on-failure

echo "== asan: native jest tests against $addon"
libasan="$(g++ -print-file-name=libasan.so)"
libubsan="$(g++ -print-file-name=libubsan.so)"
LD_PRELOAD="$libasan:$libubsan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ADAMP_ADDON_PATH="$addon" npx jest --runInBand test/native-*.test.ts
echo "== asan: passed"
