#!/usr/bin/env node
/*
 * Node smoke test of the CUDA addon on a GPU, for machines without the dev dependencies (no jest):
 * scripts/gpu-validate.sh, step `node`. Loads the addon (ADAMP_ADDON_PATH, else build/Release) and,
 * for every kind the kernels were built for (cudaKinds()):
 *   - two contexts step the same tensors 5 times from the same host data and must agree bit for
 *     bit (determinism on real concurrency); values must move and stay finite;
 *   - info records carry the right decision codes (projecting kinds: a projection fires on
 *     gradients orthogonal to the weights; AdamW/SGD: 4), and norms: false leaves the norms NaN;
 *   - when the addon has the CPU core's `step(kind, ...)` export, the GPU agrees with it
 *     (same decisions, 1e-6 of scale);
 *   - when dist/lib/backends/cuda/engine.js exists (npm run build:ts), the CudaEngine steps host params
 *     and device params (cudaAlloc'd, one transposed) and both agree bit for bit.
 * Prints one JSON object (and writes it to --out FILE); exit 0 pass, 1 fail, 77 no usable CUDA device.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const outIdx = process.argv.indexOf('--out');
const outFile = outIdx > 0 ? process.argv[outIdx + 1] : null;

function finish(result, code) {
  const text = JSON.stringify(result, null, 1);
  console.log(text);
  if (outFile) fs.writeFileSync(outFile, text + '\n');
  process.exit(code);
}

const addonPath = process.env.ADAMP_ADDON_PATH || path.join(root, 'build', 'Release', 'adamp.node');
let addon;
try {
  addon = require(addonPath);
} catch (e) {
  finish({ ok: false, skipped: true, reason: `cannot load ${addonPath}: ${e.message.split('\n')[0]}` }, 77);
}
if (typeof addon.cudaStatus !== 'function') finish({ ok: false, skipped: true, reason: `${addonPath} has no CUDA exports` }, 77);
const status = addon.cudaStatus();
if (!status.available) finish({ ok: false, skipped: true, reason: status.reason }, 77);

const result = { ok: true, device: status.devices[0], runtime: status.runtimeVersion, driver: status.driverVersion, checks: 0, failures: [], notes: [] };
function check(cond, what) {
  result.checks++;
  if (!cond) { result.ok = false; result.failures.push(what); }
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
// [shape, channel axis]: conv, bias, 1x1 conv, a row vector, a column, a TF.js kernel, a big linear, a scalar
const SHAPES = [[[64, 3, 7, 7], 0], [[64], 0], [[256, 64, 1, 1], 0], [[1, 16], 0], [[10, 1], 0], [[3, 3, 64, 128], -1], [[1000, 2048], 0], [[], 0]];
function view(shape, axis) {
  const numel = shape.reduce((a, b) => a * b, 1);
  if (shape.length < 2) return { numel, outer: 1, channels: 1, inner: numel, eligible: false };
  const ax = axis < 0 ? shape.length - 1 : axis;
  const outer = shape.slice(0, ax).reduce((a, b) => a * b, 1);
  return { numel, outer, channels: shape[ax], inner: numel / (outer * shape[ax]), eligible: true };
}
const HYPER = {
  adamp: [1e-2, 0.9, 0.999, 1e-8, 0.05, 0.1, 0.1, 1], sgdp: [0.1, 0.9, 0, 1e-3, 0, 1e-8, 0.1, 0.1],
  adamw: [1e-3, 0.9, 0.999, 1e-8, 0.01], sgd: [0.1, 0.9, 0, 1e-4, 1],
};
/** Gradients of step s: orthogonal to the weights on odd params (projections fire), random on even ones. */
function grads(ps, s) {
  const r = rng(100 + s);
  return ps.map((p, i) => {
    const g = randn(r, p.length, 0.1);
    if (i % 2 === 1 && g.length > 1) {
      let gp = 0, pp = 0;
      for (let k = 0; k < g.length; k++) { gp += g[k] * p[k]; pp += p[k] * p[k]; }
      for (let k = 0; k < g.length; k++) g[k] = Math.fround(g[k] - (gp / pp) * p[k]);
    }
    return g;
  });
}
const same = (a, b) => a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

const kinds = addon.cudaKinds();
result.kinds = kinds.map((k) => k.name);
for (const kind of kinds) {
  const hyper = HYPER[kind.name];
  if (!hyper) { result.notes.push(`${kind.name}: no smoke hyperparameters, skipped`); continue; }
  const r = rng(5);
  const p0 = SHAPES.map(([s]) => randn(r, view(s, 0).numel));
  const run = (norms) => {
    const h = addon.cudaCreate(kind.name);
    const ids = Int32Array.from(SHAPES.map(([s, ax]) => {
      const v = view(s, ax);
      return addon.cudaAddTensor(h, v.numel, v.outer, v.channels, v.inner, v.eligible);
    }));
    ids.forEach((id, i) => addon.cudaUpload(h, id, 0, p0[i]));
    const p = p0.map((x) => x.slice());
    const info = new Float64Array(ids.length * 8);
    const codes = [];
    for (let s = 1; s <= 5; s++) {
      const gs = grads(p, s);
      ids.forEach((id, i) => addon.cudaUpload(h, id, 1, gs[i]));
      addon.cudaStep(h, ids, Float64Array.from(hyper), { norms });
      addon.cudaInfo(h, ids, info);
      for (let i = 0; i < ids.length; i++) codes.push(info[i * 8]);
      ids.forEach((id, i) => addon.cudaDownload(h, id, 0, p[i]));
    }
    const state = Array.from(ids, (id, i) => Array.from({ length: kind.slots }, (_, k) => { const a = new Float32Array(p[i].length); addon.cudaDownload(h, id, 2 + k, a); return a; }));
    addon.cudaDestroy(h);
    return { p, state, info, codes };
  };
  const a = run(true), b = run(true), c = run(false);
  const t = kind.name;
  check(a.p.every((x, i) => same(x, b.p[i])) && a.state.every((s, i) => s.every((x, k) => same(x, b.state[i][k]))), `${t}: two contexts differ bitwise`);
  check(a.p.every((x, i) => same(x, c.p[i])), `${t}: norms: false changed the step`);
  check(a.p.every((x) => x.every(Number.isFinite)), `${t}: non-finite params`);
  check(a.p.every((x, i) => !same(x, p0[i])), `${t}: a param did not move`);
  if (kind.projects) check(a.codes.some((x) => x === 1 || x === 2), `${t}: no projection fired on orthogonal gradients`);
  else check(a.codes.every((x) => x === 4), `${t}: decision codes ${[...new Set(a.codes)]}, expected 4`);
  check([6, 7].every((f) => Number.isNaN(c.info[f])) && [6, 7].every((f) => Number.isFinite(a.info[f])), `${t}: norms on/off`);

  // The CPU core, when this addon has its generic step export.
  if (typeof addon.step !== 'function') {
    if (kind === kinds[0]) result.notes.push('the addon has no CPU step(kind, ...) export: the GPU vs CPU comparison did not run');
  } else {
    try {
      const p = p0.map((x) => x.slice());
      const st = p.map((x) => Array.from({ length: kind.slots }, () => new Float32Array(x.length)));
      const codes = [];
      for (let s = 1; s <= 5; s++) {
        const gs = grads(p, s);
        const slots = SHAPES.map(([sh, ax], i) => ({ p: p[i], g: gs[i], state: st[i], ...view(sh, ax), step: s }));
        const info = new Float64Array(slots.length * 8);
        addon.step(kind.name, slots, Float64Array.from(hyper), info, {});
        for (let i = 0; i < slots.length; i++) codes.push(info[i * 8]);
      }
      check(codes.every((x, i) => x === a.codes[i]), `${t}: decisions differ from the CPU core`);
      p.forEach((x, i) => {
        let worst = 0, scale = 0;
        for (let k = 0; k < x.length; k++) { worst = Math.max(worst, Math.abs(x[k] - a.p[i][k])); scale = Math.max(scale, Math.abs(x[k])); }
        check(worst <= 1e-6 * scale + 1e-30, `${t}: param ${i} differs from the CPU core by ${worst} (scale ${scale})`);
      });
    } catch (e) {
      result.notes.push(`${t}: the CPU comparison did not run: ${e.message.split('\n')[0]}`);
    }
  }
}

// The engine (compiled TypeScript), host params against device params.
const enginePath = path.join(root, 'dist', 'lib', 'backends', 'cuda', 'engine.js');
if (!fs.existsSync(enginePath)) {
  result.notes.push('dist/lib/backends/cuda/engine.js missing (npm run build:ts): engine checks skipped');
} else {
  const { CudaEngine } = require(enginePath);
  for (const kind of kinds) {
    const hyper = HYPER[kind.name];
    if (!hyper) continue;
    const r = rng(9);
    const host = SHAPES.map(([s]) => randn(r, view(s, 0).numel));
    const eh = new CudaEngine(addon), ed = new CudaEngine(addon);
    const bufs = host.map((x, i) => {
      const shape = SHAPES[i][0];
      const strides = shape.length === 2 && shape[0] > 1 && shape[1] > 1 ? [1, shape[0]] : null; // transposed storage
      const buf = addon.cudaAlloc(0, Math.max(1, x.length) * 4);
      const pointer = addon.cudaBufferAddress(buf);
      addon.cudaCopyToDevice(0, pointer, shape, strides, x);
      return { buf, pointer, strides, key: {} };
    });
    const hostState = host.map((x) => Array.from({ length: kind.slots }, () => new Float32Array(x.length)));
    for (let s = 1; s <= 4; s++) {
      const gs = grads(host, s);
      const job = (slots) => ({ spec: { kind: kind.name }, options: {}, hyper: Float64Array.from(hyper), slots, info: new Float64Array(slots.length * 8) });
      eh.step(job(SHAPES.map(([sh, ax], i) => ({ p: host[i], g: gs[i], state: hostState[i], ...view(sh, ax), step: s }))), { norms: true });
      ed.step(job(SHAPES.map(([sh, ax], i) => ({
        p: new Float32Array(0), g: gs[i], state: Array.from({ length: kind.slots }, () => new Float32Array(0)), ...view(sh, ax), step: s,
        device: { key: bufs[i].key, numel: host[i].length, p: { pointer: bufs[i].pointer, device: 0, shape: sh, strides: bufs[i].strides }, g: null },
      }))), { norms: true });
    }
    eh.flush();
    ed.flush();
    bufs.forEach((b, i) => {
      const got = new Float32Array(host[i].length);
      addon.cudaCopyToHost(0, b.pointer, SHAPES[i][0], b.strides, got);
      check(same(got, host[i]), `${kind.name}: engine device param ${i} differs from the host param`);
      const st = ed.readDeviceState(b.key);
      check(st && st.every((x, k) => same(x, hostState[i][k])), `${kind.name}: engine device state ${i} differs`);
    });
    eh.dispose();
    ed.dispose();
    for (const b of bufs) addon.cudaBufferFree(b.buf);
  }
}
finish(result, result.ok ? 0 : 1);
