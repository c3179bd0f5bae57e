#!/usr/bin/env bash
# Proves the node-gyp path (binding.gyp, CPU only) builds and loads, without touching ./build
# (node-gyp always writes and wipes ./build): builds a copy in a temporary folder, then loads it
# through the package's loader (ADAMP_ADDON_PATH) and checks one step against the TS engine.
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
const { JsEngine } = require('$root/lib/backends/js/engine');
const { NativeEngine } = require('$root/lib/backends/native/engine');
const r = loadAddon();
if (!('addon' in r)) { console.error(r.errors.join('\n')); process.exit(1); }
const mk = () => [{ p: Float32Array.from({ length: 640 }, (_, i) => Math.sin(i)), g: Float32Array.from({ length: 640 }, (_, i) => Math.cos(1.7 * i)),
  m: new Float32Array(640), v: new Float32Array(640), outer: 1, channels: 10, inner: 64, eligible: true, step: 1 }];
const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, delta: 0.1, wdRatio: 0.1, nesterov: false };
const a = mk(), b = mk(), ia = new Float64Array(8), ib = new Float64Array(8);
new NativeEngine(r.addon, { threads: 2 }).stepAdamP(a, hp, ia); new JsEngine().stepAdamP(b, hp, ib);
let d = 0; for (let i = 0; i < 640; i++) d = Math.max(d, Math.abs(a[0].p[i] - b[0].p[i]));
const info = r.addon.info();
console.log('check-gyp-build: loaded ' + r.path + ' (' + info.simd + ', cuda ' + info.cuda + '), max |native - js| = ' + d + ', decisions ' + ia[0] + '/' + ib[0]);
if (!(d <= 1e-6) || ia[0] !== ib[0]) process.exit(1);
"
