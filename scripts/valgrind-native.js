#!/usr/bin/env node
/**
 * A plain Node script that exercises the native addon for valgrind (scripts/valgrind-native.sh):
 * a few thousand AdamP / SGDP steps over tensors of every layout the CPU core schedules
 * differently, sync and async, several thread counts, both kernel sets, plus calls that throw
 * (bad arguments), so leaks on error paths show too. Prints one summary line.
 *
 *   node scripts/valgrind-native.js [steps]      (ADAMP_ADDON_PATH picks the .node file)
 */
'use strict';
const path = require('node:path');

const file = process.env.ADAMP_ADDON_PATH || path.join(__dirname, '..', 'build', 'Release', 'adamp.node');
const addon = require(path.resolve(file));
const steps = Number(process.argv[2] || 3000);

// [outer, channels, inner, eligible]: rows, pieces (inner > 32768), lanes (inner == 1; also two
// row chunks, and two channel chunks), outer > 1, 1-D.
const geos = [[1, 16, 27, true], [1, 2, 33000, true], [40, 24, 1, true], [3000, 12, 1, true], [2, 4100, 1, true],
  [3, 5, 7, true], [1, 1, 100, false], [1, 1, 1, false], [1, 3, 1, true]];
let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296) - 0.5;
const mk = (n) => Float32Array.from({ length: n }, rnd);
function slots(withV) {
  return geos.map(([outer, channels, inner, eligible]) => {
    const n = outer * channels * inner;
    return { p: mk(n), g: mk(n), m: new Float32Array(n), v: withV ? new Float32Array(n) : new Float32Array(0), outer, channels, inner, eligible, step: 1 };
  });
}
const adamp = slots(true);
const sgdp = slots(false);
const info = new Float64Array(geos.length * 8);
const hpA = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, delta: 0.1, wdRatio: 0.1, nesterov: false };
const hpS = { lr: 1e-2, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov: false, eps: 1e-8, delta: 0.1, wdRatio: 0.1 };

function expectThrow(fn) {
  try { fn(); } catch { return 1; }
  throw new Error('expected a throw');
}

async function main() {
  let errors = 0, asyncSteps = 0;
  for (let t = 1; t <= steps; t++) {
    for (const s of adamp) { s.step = t; s.g[0] = rnd(); }
    for (const s of sgdp) s.g[0] = rnd();
    const threads = 1 + (t % 3);
    hpA.nesterov = t % 2 === 0;
    hpS.nesterov = t % 4 === 0;
    if (t % 500 === 0) addon.setSimd(t % 1000 === 0 ? 'portable' : 'auto');
    if (t % 10 === 0) {
      await addon.stepAsync([{ kind: 'adamp', slots: adamp, hp: hpA, info }, { kind: 'sgdp', slots: sgdp, hp: hpS, info }], threads);
      asyncSteps++;
    } else {
      addon.adampStep(adamp, hpA, info, threads);
      addon.sgdpStep(sgdp, hpS, info, threads);
    }
    if (t % 100 === 0) {
      errors += expectThrow(() => addon.adampStep([{ ...adamp[0], g: new Float32Array(3) }], hpA, info));
      errors += expectThrow(() => addon.sgdpStep(sgdp, { ...hpS, lr: 'x' }, info));
      errors += expectThrow(() => addon.adampStepAsync([{ ...adamp[0], v: new Float32Array(1) }], hpA, info));
      addon.adamStep(adamp, hpA, 2);
      addon.sgdStep(sgdp, hpS, 2);
    }
  }
  let finite = true;
  for (const s of [...adamp, ...sgdp]) for (const x of s.p) if (!Number.isFinite(x)) finite = false;
  console.log(`valgrind-native: ${steps} steps (${asyncSteps} async), ${errors} expected errors, params finite: ${finite}, simd ${addon.info().simd}`);
  if (!finite) process.exitCode = 1;
}
main().catch((e) => { console.error(e); process.exitCode = 1; });
