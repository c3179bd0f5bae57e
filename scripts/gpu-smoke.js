#!/usr/bin/env node
/*
 * Node smoke test of the CUDA backend for machines without the dev dependencies (no jest): loads
 * the built package (dist/, npm run build:ts) and its addon (ADAMP_ADDON_PATH or build/Release),
 * steps AdamP and SGDP with backend 'cuda' and 'js' on the same params, and compares values and
 * projection decisions; then the same with device params (DeviceTensors in a store arena wrapped
 * with fromPointer, one strided) and counts device allocations after dispose. Prints one JSON line; exit 0 pass, 1 fail, 77 CUDA unavailable (with why).
 */
'use strict';
const path = require('path');
const root = path.join(__dirname, '..');
const adamp = require(path.join(root, 'dist', 'lib', 'index.js'));
require(path.join(root, 'dist', 'lib', 'backends', 'cuda', 'index.js')); // registers the provider

const report = adamp.backends().find((b) => b.name === 'cuda');
if (!report || !report.available) {
  console.log(JSON.stringify({ ok: false, skipped: true, reason: report ? report.reason : 'no cuda provider' }));
  process.exit(77);
}

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function randn(r, n, s = 1) {
  const o = new Float32Array(n);
  for (let i = 0; i < n; i++) o[i] = s * Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
  return o;
}
const SHAPES = [[[64, 3, 7, 7], 0], [[64], 0], [[256, 64, 1, 1], 0], [[1, 16], 0], [[10, 1], 0], [[3, 3, 64, 128], -1], [[1000, 2048], 0], [[], 0]];
function params(seed) {
  const r = rng(seed);
  return SHAPES.map(([shape, axis], i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return { data: randn(r, n), grad: new Float32Array(n), shape, channelAxis: axis, name: `p${i}` };
  });
}
function grads(ps, step) {
  const r = rng(1000 + step);
  ps.forEach((p, i) => {
    const g = randn(r, p.data.length, 0.1);
    if ((i + step) % 3 === 0 && g.length > 1) {
      let gp = 0, pp = 0;
      for (let k = 0; k < g.length; k++) { gp += g[k] * p.data[k]; pp += p.data[k] * p.data[k]; }
      for (let k = 0; k < g.length; k++) g[k] -= (gp / pp) * p.data[k];
    }
    p.grad = g;
  });
}

const result = { ok: true, device: report.reason, checks: 0, failures: [] };
for (const kind of ['adamp', 'sgdp']) {
  const a = params(5), b = params(5);
  const make = (ps, backend) => (kind === 'adamp'
    ? new adamp.AdamP(ps, { lr: 1e-2, weightDecay: 0.05 }, { backend })
    : new adamp.SGDP(ps, { lr: 0.1, momentum: 0.9, weightDecay: 1e-3 }, { backend }));
  const js = make(a, 'js'), cu = make(b, 'cuda');
  for (let step = 1; step <= 5; step++) {
    grads(a, step);
    grads(b, step);
    js.step();
    cu.step();
    cu.synchronize();
    const ij = js.lastStepInfo, ic = cu.lastStepInfo;
    for (let i = 0; i < a.length; i++) {
      result.checks++;
      let worst = 0, scale = 0;
      for (let k = 0; k < a[i].data.length; k++) {
        worst = Math.max(worst, Math.abs(a[i].data[k] - b[i].data[k]));
        scale = Math.max(scale, Math.abs(a[i].data[k]));
      }
      if (ij[i].projection !== ic[i].projection || !(worst <= 1e-6 * scale)) {
        result.ok = false;
        result.failures.push({ kind, step, param: i, js: ij[i].projection, cuda: ic[i].projection, maxDiff: worst, scale });
      }
    }
  }
  cu.dispose();
}
// Device params: DeviceTensors, a store arena wrapped with fromPointer (an offset and a strided
// view), gradients on the device; against the same params stepped by the TypeScript engine. Then
// every device allocation must be gone after dispose.
{
  const { DeviceTensor, deviceMemory } = adamp;
  const before = deviceMemory().liveAllocations;
  for (const kind of ['adamp', 'sgdp']) {
    const a = params(9);
    const arena = DeviceTensor.zeros([a.reduce((n, p) => n + p.data.length, 0) + 64]);
    let offset = 16; // elements: the store's arena layout
    const dev = a.map((p, i) => {
      const strided = i === 2; // [256,64,1,1] stored transposed: column-major over its first two axes
      const t = DeviceTensor.fromPointer({
        pointer: arena.pointer, byteOffset: offset * 4, shape: p.shape, keepAlive: arena,
        ...(strided ? { strides: [1, 256, 1, 1] } : {}),
      });
      offset += p.data.length;
      t.copyFromHost(p.data);
      return { data: t, grad: null, name: p.name, channelAxis: p.channelAxis };
    });
    const make = (ps, backend) => (kind === 'adamp'
      ? new adamp.AdamP(ps, { lr: 1e-2, weightDecay: 0.05 }, { backend })
      : new adamp.SGDP(ps, { lr: 0.1, momentum: 0.9, weightDecay: 1e-3 }, { backend }));
    const js = make(a, 'js'), cu = make(dev, 'auto');
    if (cu.backend !== 'cuda') { result.ok = false; result.failures.push({ kind, device: true, backend: cu.backend }); }
    for (let step = 1; step <= 4; step++) {
      grads(a, step);
      dev.forEach((p, i) => {
        if (p.grad) p.grad.copyFromHost(a[i].grad);
        else p.grad = DeviceTensor.fromHost(a[i].grad, a[i].shape);
      });
      js.step();
      cu.step();
      const ij = js.lastStepInfo, ic = cu.lastStepInfo;
      for (let i = 0; i < a.length; i++) {
        result.checks++;
        const got = dev[i].data.toHost();
        let worst = 0, scale = 0;
        for (let k = 0; k < got.length; k++) {
          worst = Math.max(worst, Math.abs(a[i].data[k] - got[k]));
          scale = Math.max(scale, Math.abs(a[i].data[k]));
        }
        if (ij[i].projection !== ic[i].projection || !(worst <= 1e-6 * scale)) {
          result.ok = false;
          result.failures.push({ kind, device: true, step, param: i, js: ij[i].projection, cuda: ic[i].projection, maxDiff: worst, scale });
        }
      }
    }
    cu.dispose();
    dev.forEach((p) => { p.grad.dispose(); p.data.dispose(); });
    arena.dispose();
  }
  const after = deviceMemory().liveAllocations;
  result.deviceAllocations = { before, after };
  if (after !== before) { result.ok = false; result.failures.push({ leak: after - before }); }
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
