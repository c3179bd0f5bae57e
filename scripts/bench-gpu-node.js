#!/usr/bin/env node
/*
 * The CUDA backend through the public Node API, on params that already live on the device (as
 * PyTorch's fused Adam steps CUDA tensors): DeviceTensor params and gradients of the ResNet-50
 * and GPT-2-small sets (bench/shapes.json), AdamP and SGDP, against the same optimizer on host
 * Float32Array params (gradients uploaded at each step, params written back by synchronize()).
 * Timing: `iters` steps queued back to back, then synchronize(); median of `reps` such runs,
 * reported as ms/step. Part of scripts/gpu-validate-more.sh (step node_bench); needs dist/ (npm run build:ts).
 *   node scripts/bench-gpu-node.js [--out FILE] [--iters 20] [--reps 5] [--sets resnet50,gpt2-small] [--shapes FILE] [--emulation]
 * Exit 77 when no usable CUDA device (or only the CPU emulation, unless --emulation) is present.
 */
'use strict';
const fs = require('fs');
const { adamp, cli, requireCuda, loadShapes, filled, numelOf, timeSteps } = require('./gpu-bench-common.js');

const c = cli();
const { out, iters, reps } = c;
const sets = c.opt('sets', 'resnet50,gpt2-small').split(',');
const report = requireCuda(c);
const shapes = loadShapes(c);

const result = { device: report.reason, iters, reps, sets: {} };
for (const set of sets) {
  const list = shapes[set].shapes;
  const numel = list.reduce((n, s) => n + numelOf(s), 0);
  const entry = { tensors: list.length, numel };
  for (const kind of ['adamp', 'sgdp']) {
    const host = list.map((shape, i) => {
      const n = numelOf(shape);
      return { data: filled(n, i + 1), grad: filled(n, 1000 + i), shape };
    });
    const dev = host.map((p) => ({ data: adamp.DeviceTensor.fromHost(p.data, p.shape), grad: adamp.DeviceTensor.fromHost(p.grad, p.shape) }));
    const make = (ps, backend) => (kind === 'adamp'
      ? new adamp.AdamP(ps, { lr: 1e-3, weightDecay: 1e-2 }, { backend })
      : new adamp.SGDP(ps, { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 }, { backend }));
    const od = make(dev, 'auto'), oh = make(host, 'cuda');
    const d = timeSteps(od, c), h = timeSteps(oh, c);
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
