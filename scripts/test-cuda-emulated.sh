#!/usr/bin/env bash
# The Node-side CUDA tests on machines without a GPU: builds the addon with the CUDA step compiled
# for the CPU emulation of native/tests/cuda/emu/cuda_emu.h (blocks on threads, fibers inside) and
# runs the jest files against it, so CudaEngine's upload / step / flush / info / invalidate logic
# and the exports' checks are exercised everywhere. Real hardware: scripts/gpu-validate.sh.
#   scripts/test-cuda-emulated.sh [jest args...]
#   ADAMP_CUDA_EMU_TESTS="test/cuda-engine.test.ts"   which files (default: the four CUDA test files and the GPU benchmark scripts' test)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUTDIR="build-cuda-emulated"
mkdir -p "$OUTDIR"
VERSION="$(node -p "require('./package.json').version")"
# The CPU core, as the addon links it.
cmake -S . -B "$OUTDIR/cpu" -DCMAKE_BUILD_TYPE=Release > "$OUTDIR/cmake.log"
cmake --build "$OUTDIR/cpu" --target adamp_cpu >> "$OUTDIR/cmake.log"
g++ -std=c++17 -O1 -fPIC -shared -ffp-contract=off -fno-math-errno -Wno-unknown-pragmas \
  -Inode_modules/node-addon-api -Inode_modules/node-api-headers/include \
  -DNAPI_VERSION=8 -DNODE_ADDON_API_CPP_EXCEPTIONS -DNODE_ADDON_API_CPP_EXCEPTIONS_ALL -DNODE_ADDON_API_DISABLE_DEPRECATED \
  "-DADAMP_VERSION=\"$VERSION\"" -DADAMP_HAVE_CUDA=1 -DADAMP_CUDA_EMULATION \
  -Inative/tests/cuda/emu -Inative/include -Inative/cpu -Inative/cuda \
  native/binding/*.cc native/cuda/napi_exports.cc native/tests/cuda/emu/adamp_cuda_emu.cpp \
  "$OUTDIR/cpu/libadamp_cpu.a" -pthread -o "$OUTDIR/adamp.node"
# shellcheck disable=SC2086
ADAMP_ADDON_PATH="$ROOT/$OUTDIR/adamp.node" npx jest ${ADAMP_CUDA_EMU_TESTS:-test/cuda-engine.test.ts test/cuda-device.test.ts test/cuda-mixed.test.ts test/cuda-crash.test.ts test/gpu-scripts.test.ts} "$@"
