#!/usr/bin/env node
/*
 * 16-bit steps on the native CPU backend (docs/performance.md, "16-bit steps"): the time of one
 * AdamP (and AdamW) step of bfloat16 params stepped by the core itself (master weights on and off)
 * against the same tensors in float32, and against the staging path of the previous release
 * (re-enacted here with the package's own conversions: the 16-bit grad widened into a float32
 * array, the param widened too without master weights, a float32 step, the result rounded back,
 * all in TypeScript loops). Modes run round robin, so every ratio is of one run.
 * Runs from the compiled package: `npx tsc -p tsconfig.build.json` first.
 *
 *   node scripts/bench-half16.js [--steps 12] [--threads 2] [--out bench/results/half16-<date>.json]
 */
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const steps = Number(arg('steps', '12'));
const threads = Number(arg('threads', '2'));
const out = arg('out', null);

let lib;
try {
  lib = require(path.join(__dirname, '..', 'dist', 'lib', 'index.js'));
} catch (e) {
  process.stderr.write(`bench-half16: cannot load dist/lib/index.js (${e.message}); run \`npx tsc -p tsconfig.build.json\` first\n`);
  process.exit(1);
}
const { AdamP, AdamW, float32ToHalf, halfToFloat32 } = lib;

// GPT-2-small-like linear weights and biases: 7.1M elements, well past the last-level cache.
const SHAPES = [[3072, 768], [768, 3072], [2304, 768], [768, 768], [3072], [768], [2304]];
const numel = (s) => s.reduce((a, b) => a * b, 1);
const TOTAL = SHAPES.reduce((a, s) => a + numel(s), 0);

let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296 - 0.5);
const randArr = (n, scale) => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rnd() * scale;
  return a;
};

function makeMode(name, Cls, opts) {
  const w = SHAPES.map((s) => randArr(numel(s), 0.2));
  const g = SHAPES.map((s) => randArr(numel(s), 0.01));
  const cfg = { backend: 'native', threads, diagnostics: 'decisions' };
  if (name === 'float32') {
    const ps = SHAPES.map((shape, k) => ({ shape, data: w[k], grad: g[k] }));
    const o = new Cls(ps, opts, cfg);
    return () => o.step();
  }
  const p16 = w.map((x) => float32ToHalf(x, 'bfloat16'));
  const g16 = g.map((x) => float32ToHalf(x, 'bfloat16'));
  if (name === 'bf16-master' || name === 'bf16-nomaster') {
    const ps = SHAPES.map((shape, k) => ({ shape, dtype: 'bfloat16', data: p16[k], grad: g16[k] }));
    const o = new Cls(ps, opts, { ...cfg, masterWeights: name === 'bf16-master' });
    return () => o.step();
  }
  // The previous release's staging, re-enacted: float32 arrays the engine steps, 16-bit bits around them.
  const master = name === 'staged-master';
  const f = p16.map((b) => halfToFloat32(b, 'bfloat16'));
  const gf = g16.map((b) => new Float32Array(b.length));
  const ps = SHAPES.map((shape, k) => ({ shape, data: f[k], grad: gf[k] }));
  const o = new Cls(ps, opts, cfg);
  return () => {
    for (let k = 0; k < ps.length; k++) {
      if (!master) halfToFloat32(p16[k], 'bfloat16', f[k]);
      halfToFloat32(g16[k], 'bfloat16', gf[k]);
    }
    o.step();
    for (let k = 0; k < ps.length; k++) float32ToHalf(f[k], 'bfloat16', p16[k]);
  };
}

const MODES = ['float32', 'bf16-master', 'bf16-nomaster', 'staged-master', 'staged-nomaster'];
const median = (xs) => {
  const s = xs.slice().sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const results = {};
for (const [optName, Cls, opts] of [['adamp', AdamP, { lr: 1e-3, weightDecay: 0.01 }], ['adamw', AdamW, { lr: 1e-3, weightDecay: 0.01 }]]) {
  const run = {};
  const times = {};
  for (const m of MODES) {
    run[m] = makeMode(m, Cls, opts);
    times[m] = [];
    run[m](); // warm-up: state allocation, first touch
    run[m]();
  }
  for (let s = 0; s < steps; s++) {
    for (const m of MODES) {
      const t0 = process.hrtime.bigint();
      run[m]();
      times[m].push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  const med = Object.fromEntries(MODES.map((m) => [m, median(times[m])]));
  results[optName] = {
    medianMs: med,
    nsPerElement: Object.fromEntries(MODES.map((m) => [m, (med[m] * 1e6) / TOTAL])),
    ratios: {
      'bf16-master / float32': med['bf16-master'] / med.float32,
      'bf16-nomaster / float32': med['bf16-nomaster'] / med.float32,
      'staged-master / bf16-master': med['staged-master'] / med['bf16-master'],
      'staged-nomaster / bf16-nomaster': med['staged-nomaster'] / med['bf16-nomaster'],
    },
    stepsMs: times,
  };
  process.stdout.write(`${optName}: ${MODES.map((m) => `${m} ${med[m].toFixed(1)} ms`).join(', ')}\n`);
  for (const [k, v] of Object.entries(results[optName].ratios)) process.stdout.write(`  ${k}: ${v.toFixed(2)}\n`);
}

const report = {
  what: 'one optimizer step of bfloat16 params on the native CPU backend vs float32 and vs the previous release\'s staging (scripts/bench-half16.js)',
  date: new Date().toISOString(), cpu: os.cpus()[0].model, cores: os.cpus().length, node: process.version, threads, steps,
  shapes: SHAPES, elements: TOTAL, results,
};
if (out) {
  fs.writeFileSync(out, JSON.stringify(report, null, 1) + '\n');
  process.stdout.write(`wrote ${out}\n`);
}
