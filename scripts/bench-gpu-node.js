#!/usr/bin/env node
/*
 * The CUDA backend through the public Node API, on params that already live on the device (as
 * PyTorch's fused Adam steps CUDA tensors): DeviceTensor params and gradients of the ResNet-50
 * and GPT-2-small sets (bench/shapes.json), AdamP and SGDP, against the same optimizer on host
 * Float32Array params (gradients uploaded at each step, params written back by synchronize()).
 * Timing: `iters` steps queued back to back, then synchronize(); median of `reps` such runs,
 * reported as ms/step. Part of scripts/gpu-validate.sh (step bench); needs dist/ (npm run build:ts).
 *   node scripts/bench-gpu-node.js [--out FILE] [--iters 20] [--reps 5] [--sets resnet50,gpt2-small] [--shapes FILE]
 * Exit 77 when no usable CUDA device (or only the CPU emulation, unless --emulation) is present.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const adamp = require(path.join(root, 'dist', 'lib', 'index.js'));

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const out = opt('out', null);
const iters = Number(opt('iters', 20));
const reps = Number(opt('reps', 5));
const sets = opt('sets', 'resnet50,gpt2-small').split(',');

const report = adamp.backends().find((b) => b.name === 'cuda');
if (!report || !report.available || (/emulation/i.test(report.reason) && !args.includes('--emulation'))) {
  console.log(JSON.stringify({ skipped: true, reason: report ? report.reason : 'no cuda provider' }));
  process.exit(77);
}
const shapes = JSON.parse(fs.readFileSync(opt('shapes', path.join(root, 'bench', 'shapes.json')), 'utf8'));

function filled(n, seed) {
  const a = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    a[i] = (x / 4294967296 - 0.5) * 0.2;
  }
  return a;
}

function median(xs) {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function timeSteps(o) {
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

const result = { device: report.reason, iters, reps, sets: {} };
for (const set of sets) {
  const list = shapes[set].shapes;
  const numel = list.reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
  const entry = { tensors: list.length, numel };
  for (const kind of ['adamp', 'sgdp']) {
    const host = list.map((shape, i) => {
      const n = shape.reduce((a, b) => a * b, 1);
      return { data: filled(n, i + 1), grad: filled(n, 1000 + i), shape };
    });
    const dev = host.map((p) => ({ data: adamp.DeviceTensor.fromHost(p.data, p.shape), grad: adamp.DeviceTensor.fromHost(p.grad, p.shape) }));
    const make = (ps, backend) => (kind === 'adamp'
      ? new adamp.AdamP(ps, { lr: 1e-3, weightDecay: 1e-2 }, { backend })
      : new adamp.SGDP(ps, { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 }, { backend }));
    const od = make(dev, 'auto'), oh = make(host, 'cuda');
    const d = timeSteps(od), h = timeSteps(oh);
    entry[kind] = {
      device_params_ms: d.median_ms, host_params_ms: h.median_ms, host_over_device: h.median_ms / d.median_ms,
      device_elements_per_s: numel / (d.median_ms / 1e3), runs: { device: d.runs_ms, host: h.runs_ms },
    };
    od.dispose();
    oh.dispose();
    dev.forEach((p) => { p.data.dispose(); p.grad.dispose(); });
  }
  result.sets[set] = entry;
  console.error(`[bench-gpu-node] ${set}: AdamP device params ${entry.adamp.device_params_ms.toFixed(3)} ms/step ` +
    `(host params ${entry.adamp.host_params_ms.toFixed(3)}); SGDP ${entry.sgdp.device_params_ms.toFixed(3)} ms/step`);
}
result.deviceAllocationsAfter = adamp.deviceMemory();
const text = JSON.stringify(result, null, 1);
if (out) fs.writeFileSync(out, text + '\n');
console.log(text);
