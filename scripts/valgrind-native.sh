#!/usr/bin/env bash
# Runs a few thousand native steps under valgrind's memcheck (scripts/valgrind-native.js):
# fails on any invalid read/write, use of uninitialised memory in the addon, or definite leak.
#
#   scripts/valgrind-native.sh [steps]          (default 2000; build first: npm run build:native)
#   ADAMP_ADDON_PATH=... scripts/valgrind-native.sh
#
# V8 scans its stack conservatively, which memcheck reports as uninitialised reads inside node
# itself; scripts/valgrind-native.supp silences those (frames in the node binary only), never
# anything with the addon on the stack.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
steps="${1:-2000}"
log="${VALGRIND_LOG:-$(mktemp -t adamp-valgrind.XXXXXX)}"
command -v valgrind >/dev/null || { echo "valgrind-native: valgrind is not installed" >&2; exit 2; }
node_bin="$(command -v node)"

start=$(date +%s)
set +e
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
  --error-exitcode=99 --num-callers=30 --suppressions="$here/valgrind-native.supp" \
  --log-file="$log" "$node_bin" "$here/valgrind-native.js" "$steps"
rc=$?
set -e
end=$(date +%s)
summary="$(grep -E 'ERROR SUMMARY|definitely lost|Invalid (read|write)' "$log" | sed 's/^==[0-9]*== //' | sort | uniq -c | sed 's/^ *//')"
echo "valgrind-native: exit $rc after $((end - start)) s; log: $log"
echo "$summary"
exit $rc
