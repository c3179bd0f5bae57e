#!/usr/bin/env node
/**
 * Checks an installed adamp the way a user meets it (the release's smoke jobs; runnable locally):
 *
 *   node scripts/smoke-installed.js PROJECT_DIR [--expect-cuda]
 *
 * In PROJECT_DIR (a project with adamp in node_modules): `backends()` reports `native` available
 * from the package's prebuilds/<platform>-<arch>/adamp.node (not a build/ made at install), an
 * AdamP step runs on it with backend 'auto' and agrees with the js backend, and no
 * ADAMP_NATIVE_UNAVAILABLE warning is emitted. --expect-cuda: the addon has the CUDA engine
 * compiled in and the cuda backend either runs or says why not (no driver, no device).
 * Prints what it found; exits 1 on the first failed check.
 */
'use strict';

const path = require('node:path');
const { createRequire } = require('node:module');

const args = process.argv.slice(2);
const dir = path.resolve(args.find((a) => !a.startsWith('--')) || '.');
const expectCuda = args.includes('--expect-cuda');

const fail = (line) => {
  process.stderr.write(`smoke: FAILED: ${line}\n`);
  process.exit(1);
};

let warned = 0;
process.on('warning', (w) => {
  if (w.code === 'ADAMP_NATIVE_UNAVAILABLE') warned++;
});

const req = createRequire(path.join(dir, 'package.json'));
const adamp = req('adamp');
const pkgDir = path.dirname(req.resolve('adamp/package.json'));
const version = req('adamp/package.json').version;
const expected = path.join(pkgDir, 'prebuilds', `${process.platform}-${process.arch}`, 'adamp.node');

const reports = adamp.backends();
for (const b of reports) process.stdout.write(`${b.name.padEnd(7)} ${b.available ? 'available  ' : 'unavailable'} ${(b.reason || '').split('\n')[0]}\n`);
const native = reports.find((b) => b.name === 'native');
if (!native.available) fail(`native is unavailable: ${native.reason}`);
if (native.details.path !== expected) fail(`native loads ${native.details.path}, not the prebuilt ${expected}`);
if (native.details.version !== version) fail(`the addon says version ${native.details.version}, the package is ${version}`);

const mk = () => ({ data: Float32Array.from({ length: 96 }, (_, i) => Math.sin(i)), grad: Float32Array.from({ length: 96 }, (_, i) => Math.cos(i)), shape: [8, 12] });
const p = mk();
const q = mk();
const auto = new adamp.AdamP([p], { lr: 0.1, weightDecay: 0.01 });
const js = new adamp.AdamP([q], { lr: 0.1, weightDecay: 0.01 }, { backend: 'js' });
for (let i = 0; i < 3; i++) {
  auto.step();
  js.step();
}
if (auto.backend !== 'native') fail(`backend 'auto' chose ${auto.backend}`);
let diff = 0;
for (let i = 0; i < p.data.length; i++) diff = Math.max(diff, Math.abs(p.data[i] - q.data[i]));
if (!(diff < 1e-6)) fail(`native and js disagree by ${diff}`);

const cuda = reports.find((b) => b.name === 'cuda');
if (expectCuda) {
  if (native.details.cudaCompiledIn !== true) fail('the prebuilt has no CUDA engine');
  if (!cuda.available && !/driver|device|GPU/i.test(cuda.reason)) fail(`cuda is unavailable for an unexpected reason: ${cuda.reason}`);
}
if (warned !== 0) fail('an ADAMP_NATIVE_UNAVAILABLE warning was emitted');
process.stdout.write(`smoke: ok: adamp ${version} on ${process.platform}-${process.arch} (node ${process.version}): native from ${path.relative(dir, expected)}, ` +
  `${native.details.simd}, CUDA ${native.details.cudaCompiledIn ? `compiled in (${cuda.available ? 'available' : 'unavailable here'})` : 'not compiled in'}; ` +
  `AdamP agrees with js (max diff ${diff})\n`);
