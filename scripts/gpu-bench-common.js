/*
 * What the Node GPU benchmarks (scripts/bench-gpu-node.js, scripts/bench-gpu-half.js) share: the
 * built package, their options (--out, --iters, --reps, --shapes, --emulation), the exit 77 when
 * no usable CUDA device is here (or only the CPU emulation, unless --emulation), the shape sets,
 * the seeded fill and the timing of queued steps. Plain JavaScript on dist/ (npm run build:ts).
 */
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const adamp = require(path.join(root, 'dist', 'lib', 'index.js'));

/** The command line: opt(name, default) reads `--name VALUE`; `flag(name)` is whether `--name` is given. */
function cli(argv = process.argv.slice(2)) {
  const opt = (name, dflt) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : dflt;
  };
  return { opt, flag: (name) => argv.includes(`--${name}`), out: opt('out', null), iters: Number(opt('iters', 20)), reps: Number(opt('reps', 5)) };
}

/** The CUDA backend's report; prints `{ skipped, reason }` and exits 77 when it cannot run here (the emulation counts only with --emulation). */
function requireCuda(c) {
  const report = adamp.backends().find((b) => b.name === 'cuda');
  if (!report || !report.available || (/emulation/i.test(report.reason) && !c.flag('emulation'))) {
    console.log(JSON.stringify({ skipped: true, reason: report ? report.reason : 'no cuda provider' }));
    process.exit(77);
  }
  return report;
}

/** The shape sets: --shapes FILE, else bench/shapes.json. */
function loadShapes(c) {
  return JSON.parse(fs.readFileSync(c.opt('shapes', path.join(root, 'bench', 'shapes.json')), 'utf8'));
}

/** n floats uniform in [-scale/2, scale/2), from a 32-bit LCG seeded with `seed`. */
function filled(n, seed, scale = 0.2) {
  const a = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    a[i] = (x / 4294967296 - 0.5) * scale;
  }
  return a;
}

const numelOf = (shape) => shape.reduce((a, b) => a * b, 1);
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** ms per step of `o`: 3 warm-up steps, then `reps` runs of `iters` steps queued back to back and synchronize(). */
function timeSteps(o, { iters, reps }) {
  for (let k = 0; k < 3; k++) o.step();
  o.synchronize();
  const runs = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < iters; k++) o.step();
    o.synchronize();
    runs.push(Number(process.hrtime.bigint() - t0) / 1e6 / iters);
  }
  return { median_ms: median(runs), runs_ms: runs };
}

module.exports = { adamp, cli, requireCuda, loadShapes, filled, numelOf, timeSteps };
