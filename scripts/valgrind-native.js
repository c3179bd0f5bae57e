#!/usr/bin/env node
/**
 * A plain Node script that exercises the native addon for valgrind (scripts/valgrind-native.sh):
 * a few thousand steps of every registered optimizer over tensors of every layout the CPU core
 * schedules differently, sync and async, several thread counts, both kernel sets, the info norms
 * on and off, the step protocol on shards, plus calls that throw (bad arguments), so leaks on error
 * paths show too. Prints one summary line.
 *
 *   node scripts/valgrind-native.js [steps]      (ADAMP_ADDON_PATH picks the .node file)
 */
'use strict';
const path = require('node:path');

const file = process.env.ADAMP_ADDON_PATH || path.join(__dirname, '..', 'build', 'Release', 'adamp.node');
const addon = require(path.resolve(file));
const steps = Number(process.argv[2] || 3000);

// [outer, channels, inner, eligible]: rows, pieces (inner > 32768), lanes (inner == 1; also two
// row chunks, and two channel tiles), outer > 1, 1-D.
const geos = [[1, 16, 27, true], [1, 2, 33000, true], [40, 24, 1, true], [3000, 12, 1, true], [2, 4100, 1, true],
  [3, 5, 7, true], [1, 1, 100, false], [1, 1, 1, false], [1, 3, 1, true]];
let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296) - 0.5;
const mk = (n) => Float32Array.from({ length: n }, rnd);
const SLOTS = Object.fromEntries(addon.kinds().map((k) => [k.name, k.slots]));
function slots(kind) {
  return geos.map(([outer, channels, inner, eligible]) => {
    const n = outer * channels * inner;
    return { p: mk(n), g: mk(n), state: Array.from({ length: SLOTS[kind] }, () => new Float32Array(n)), outer, channels, inner, eligible, step: 1 };
  });
}
const kinds = ['adamp', 'sgdp', 'adamw', 'sgd'];
const model = Object.fromEntries(kinds.map((k) => [k, slots(k)]));
const info = new Float64Array(geos.length * 8);
const hyper = {
  adamp: (t) => Float64Array.of(1e-3, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.1, t % 2),
  sgdp: (t) => Float64Array.of(1e-2, 0.9, 0, 1e-4, t % 4 === 0 ? 1 : 0, 1e-8, 0.1, 0.1),
  adamw: () => Float64Array.of(1e-3, 0.9, 0.999, 1e-8, 0.01),
  sgd: (t) => Float64Array.of(1e-2, 0.9, 0, 1e-4, t % 3 === 0 ? 1 : 0),
};

function expectThrow(fn) {
  try { fn(); } catch { return 1; }
  throw new Error('expected a throw');
}

/** One step of slot s through the protocol on two shards (split at the middle unit). */
function protocolStep(kind, s, h) {
  const geo = { outer: s.outer, channels: s.channels, inner: s.inner, eligible: s.eligible, numel: s.p.length };
  const starts = addon.protocolUnits(kind, geo);
  const units = starts.length - 1, mid = units >> 1;
  const cuts = [0, mid, units];
  const shards = [0, 1].map((i) => {
    const a = starts[cuts[i]], b = starts[cuts[i + 1]];
    return { ...s, p: s.p.slice(a, b), g: s.g.slice(a, b), state: s.state.map((x) => x.slice(a, b)), offset: a, numel: s.p.length };
  });
  const parts = shards.map((sh, i) => addon.protocolStats(kind, sh, h, cuts[i], cuts[i + 1]));
  const partials = new Float64Array(parts[0].length + parts[1].length);
  partials.set(parts[0]);
  partials.set(parts[1], parts[0].length);
  const decision = addon.protocolDecide(kind, geo, h, partials);
  const norms = shards.map((sh, i) => addon.protocolApply(kind, sh, h, decision, cuts[i], cuts[i + 1], true));
  const all = new Float64Array(norms[0].length + norms[1].length);
  all.set(norms[0]);
  all.set(norms[1], norms[0].length);
  const out = new Float64Array(8);
  addon.protocolFinish(kind, geo, decision, all, out, 0);
  shards.forEach((sh) => { s.p.set(sh.p, sh.offset); s.state.forEach((x, k) => x.set(sh.state[k], sh.offset)); });
  return out;
}

async function main() {
  let errors = 0, asyncSteps = 0, protocolSteps = 0;
  for (let t = 1; t <= steps; t++) {
    for (const k of kinds) for (const s of model[k]) { s.step = t; s.g[0] = rnd(); }
    const threads = 1 + (t % 3);
    const norms = t % 5 !== 0;
    if (t % 50 === 0) addon.setSimd(t % 100 === 0 ? 'auto' : 'portable');
    if (t % 70 === 0) addon.setSpeculation(t % 140 === 0 ? 'on' : 'off');
    if (t % 10 === 0) {
      await addon.stepAsync(kinds.map((k) => ({ kind: k, slots: model[k], hyper: hyper[k](t), info })), { threads, norms });
      asyncSteps++;
    } else if (t % 10 === 5) {
      for (const k of kinds) for (const s of model[k]) protocolStep(k, s, hyper[k](t));
      protocolSteps++;
    } else {
      for (const k of kinds) addon.step(k, model[k], hyper[k](t), info, { threads, norms });
    }
    if (t % 100 === 0) {
      errors += expectThrow(() => addon.step('adamp', [{ ...model.adamp[0], g: new Float32Array(3) }], hyper.adamp(t), info));
      errors += expectThrow(() => addon.step('sgdp', model.sgdp, Float64Array.of(-1, 0, 0, 0, 0, 0, 0, 0), info));
      errors += expectThrow(() => addon.stepAsync([{ kind: 'adamw', slots: [{ ...model.adamw[0], state: [new Float32Array(1)] }], hyper: hyper.adamw(t), info }]));
      errors += expectThrow(() => addon.protocolApply('sgd', { ...model.sgd[0], offset: 1, numel: model.sgd[0].p.length }, hyper.sgd(t), new Float64Array(11), 0, 1, true));
      errors += expectThrow(() => addon.protocolDecide('adamp', { outer: 1, channels: 16, inner: 27, eligible: true, numel: 432 }, hyper.adamp(t), new Float64Array(3)));
    }
  }
  addon.setSimd('auto');
  addon.setSpeculation('on');
  let finite = true;
  for (const k of kinds) for (const s of model[k]) for (const x of s.p) if (!Number.isFinite(x)) finite = false;
  console.log(`valgrind-native: ${steps} steps x ${kinds.length} optimizers (${asyncSteps} async, ${protocolSteps} through the protocol), ${errors} expected errors, params finite: ${finite}, simd ${addon.info().simd}`);
  if (!finite) process.exitCode = 1;
}
main().catch((e) => { console.error(e); process.exitCode = 1; });
