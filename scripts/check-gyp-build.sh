#!/usr/bin/env bash
# Proves the node-gyp path (binding.gyp, CPU only) builds and loads, without touching ./build
# (node-gyp always writes and wipes ./build): builds a copy in a temporary folder, then loads it
# through the package's loader (ADAMP_ADDON_PATH) and checks one step against the CMake build.
#
#   scripts/check-gyp-build.sh        (offline: set npm_config_nodedir, e.g. /usr)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d -t adamp-gyp.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/native" "$root/binding.gyp" "$root/package.json" "$tmp/"
ln -s "$root/node_modules" "$tmp/node_modules"
start=$(date +%s)
(cd "$tmp" && node "$root/node_modules/node-gyp/bin/node-gyp.js" rebuild -j 2 >"$tmp/gyp.log" 2>&1) \
  || { tail -30 "$tmp/gyp.log"; echo "check-gyp-build: node-gyp build FAILED" >&2; exit 1; }
echo "check-gyp-build: node-gyp build took $(( $(date +%s) - start )) s"
ADAMP_ADDON_PATH="$tmp/build/Release/adamp.node" node -e "
require('ts-node').register({ transpileOnly: true, project: '$root/tsconfig.json' });
const { loadAddon } = require('$root/lib/binding/load');
const { NativeEngine } = require('$root/lib/backends/native/engine');
const r = loadAddon();
if (!('addon' in r)) { console.error(r.errors.join('\\n')); process.exit(1); }
// One AdamP step, compared bit for bit with the CMake build in build/Release when there is one
// (the arithmetic is fixed operation by operation, so both builds give the same bits); else with
// a float32 AdamW-style check that the step moved p and stayed finite.
const mk = () => [{ p: Float32Array.from({ length: 640 }, (_, i) => Math.sin(i)), g: Float32Array.from({ length: 640 }, (_, i) => Math.cos(1.7 * i)),
  state: [new Float32Array(640), new Float32Array(640)], outer: 1, channels: 10, inner: 64, eligible: true, step: 1 }];
const hyper = Float64Array.of(1e-2, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1, 0);
const job = (slots, info) => ({ spec: { kind: 'adamp' }, options: {}, hyper, slots, info });
const a = mk(), ia = new Float64Array(8);
new NativeEngine(r.addon, { threads: 2 }).step(job(a, ia), { norms: true });
const info = r.addon.info();
let cmp = 'no CMake build to compare with';
const other = require('path').join('$root', 'build', 'Release', 'adamp.node');
if (require('fs').existsSync(other)) {
  const b = mk(), ib = new Float64Array(8);
  new NativeEngine(require(other), { threads: 1 }).step(job(b, ib), { norms: true });
  const same = Buffer.from(a[0].p.buffer).equals(Buffer.from(b[0].p.buffer)) && Buffer.from(ia.buffer).equals(Buffer.from(ib.buffer));
  cmp = 'bit-identical to build/Release: ' + same;
  if (!same) { console.error('check-gyp-build: ' + cmp); process.exit(1); }
}
const moved = a[0].p.some((x, i) => x !== Math.fround(Math.sin(i))) && a[0].p.every(Number.isFinite);
console.log('check-gyp-build: loaded ' + r.path + ' (' + info.simd + ', cuda ' + info.cuda + '), decision ' + ia[0] + ', ' + cmp);
if (!moved || !(ia[0] >= 0 && ia[0] <= 2)) process.exit(1);
"
