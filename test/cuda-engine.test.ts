/**
 * The CUDA engine (lib/backends/cuda/engine.ts) through the Engine interface and the addon's
 * CUDA exports, for every registered optimizer: AdamP, SGDP, AdamW and SGD against a float32
 * reference written here from the policies' formulas (native/include/adamp/optim/*.h), host and
 * device params, strided views, stepAsync, info norms on request, state write-back and reload,
 * the exports' argument checks.
 *
 * Runs wherever an addon with a usable CUDA device loads: a GPU (scripts/gpu-validate.sh), or the
 * CPU emulation of the kernels (scripts/test-cuda-emulated.sh builds build-cuda-emulated/adamp.node).
 * The addon is ADAMP_ADDON_PATH, else build-cuda-emulated/adamp.node, else build/Release/adamp.node,
 * loaded directly (this file does not go through the facade or lib/binding/load.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AnySpec } from '../lib/optim/spec';
import type { DeviceView, Slot, StepJob } from '../lib/backends/engine';
import { INFO_STRIDE } from '../lib/core/info';
import { CudaEngine } from '../lib/backends/cuda/engine';
import { CUDA_FUNCTIONS, type CudaAddon } from '../lib/backends/cuda/binding';
import { randn, rng } from './helpers/random';

function loadCuda(): { addon?: CudaAddon; why: string } {
  const root = path.resolve(__dirname, '..');
  const candidates = [process.env.ADAMP_ADDON_PATH, path.join(root, 'build-cuda-emulated', 'adamp.node'), path.join(root, 'build', 'Release', 'adamp.node')]
    .filter((p): p is string => typeof p === 'string' && p.length > 0);
  const tried: string[] = [];
  for (const p of candidates) {
    if (!fs.existsSync(p)) { tried.push(`${p}: not found`); continue; }
    let a: Record<string, unknown>;
    try {
      a = require(p) as Record<string, unknown>; // eslint-disable-line @typescript-eslint/no-require-imports
    } catch (e) {
      tried.push(`${p}: ${(e as Error).message.split('\n')[0]}`);
      continue;
    }
    const missing = CUDA_FUNCTIONS.filter((k) => typeof a[k] !== 'function');
    if (missing.length > 0) { tried.push(`${p}: no CUDA exports (${missing.slice(0, 3).join(', ')}...)`); continue; }
    const cuda = a as unknown as CudaAddon;
    const st = cuda.cudaStatus();
    if (!st.available) return { why: `${p}: ${st.reason}` };
    return { addon: cuda, why: '' };
  }
  return { why: tried.join('; ') };
}

const { addon, why } = loadCuda();
if (!addon) {
  // eslint-disable-next-line no-console
  console.warn(`cuda engine tests skipped: no addon with a usable CUDA device (${why})`);
}
const gpuDescribe = addon ? describe : describe.skip;

test('the CUDA binding contract names cudaStep/cudaKinds, not per-optimizer exports', () => {
  expect(CUDA_FUNCTIONS).toContain('cudaStep');
  expect(CUDA_FUNCTIONS).toContain('cudaKinds');
  expect(CUDA_FUNCTIONS.some((k) => /adamp|sgdp/i.test(k))).toBe(false);
});

// ------------------------------------------------------------------------------------------------
// A float32 reference of the four policies (same operation order as native/include/adamp/optim).

type Kind = 'adamp' | 'sgdp' | 'adamw' | 'sgd';
const f = Math.fround;
/** fma of float32 operands: the product is exact in double (a rare double rounding is within the tolerance). */
const fma = (a: number, b: number, c: number): number => f(a * b + c);

interface Tensor { shape: number[]; axis: number; p: Float32Array; state: Float32Array[]; step: number }

function view(t: Tensor): { outer: number; channels: number; inner: number; eligible: boolean; numel: number } {
  const numel = t.p.length;
  const eligible = t.shape.length > 1;
  if (!eligible) return { outer: 1, channels: 1, inner: numel, eligible, numel };
  const ax = t.axis < 0 ? t.shape.length - 1 : t.axis;
  const channels = t.shape[ax];
  const outer = t.shape.slice(0, ax).reduce((a, b) => a * b, 1);
  return { outer, channels, inner: numel / (outer * channels), eligible, numel };
}

/** Wire order of each kind's hyperparameters (adamp/optim/<kind>.h `Hyper`). */
const WIRE: Record<Kind, string[]> = {
  adamp: ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'delta', 'wdRatio', 'nesterov'],
  sgdp: ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov', 'eps', 'delta', 'wdRatio'],
  adamw: ['lr', 'beta1', 'beta2', 'eps', 'weightDecay'],
  sgd: ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov'],
};
const SLOTS: Record<Kind, number> = { adamp: 2, sgdp: 1, adamw: 2, sgd: 1 };
const PRESETS: Record<Kind, Array<Record<string, number>>> = {
  adamp: [{ lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, delta: 0.1, wdRatio: 0.1, nesterov: 1 },
    { lr: 1e-3, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: 0 }],
  sgdp: [{ lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-3, nesterov: 0, eps: 1e-8, delta: 0.1, wdRatio: 0.1 },
    { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov: 1, eps: 1e-8, delta: 0.1, wdRatio: 0.1 }],
  adamw: [{ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }, { lr: 0.05, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0 }],
  sgd: [{ lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov: 1 }, { lr: 0.05, momentum: 0.5, dampening: 0.1, weightDecay: 0, nesterov: 0 },
    { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 1e-3, nesterov: 0 }],
};
const wire = (kind: Kind, h: Record<string, number>): Float64Array => Float64Array.from(WIRE[kind].map((k) => h[k]));

/** One reference step; returns the decision code. */
function refStep(kind: Kind, t: Tensor, g: Float32Array, h: Record<string, number>): number {
  t.step += 1;
  const n = t.p.length;
  const v = view(t);
  const p = t.p, [m, s2] = t.state;
  if (kind === 'adamp' || kind === 'adamw') {
    const bc1 = 1 - h.beta1 ** t.step, bc2 = 1 - h.beta2 ** t.step;
    const b1 = f(h.beta1), omb1 = f(1 - h.beta1), b2 = f(h.beta2), omb2 = f(1 - h.beta2);
    const sq = f(Math.sqrt(bc2)), eps = f(h.eps), neg = f(-(h.lr / bc1));
    const u = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      m[i] = fma(g[i], omb1, f(m[i] * b1));
      s2[i] = fma(f(omb2 * g[i]), g[i], f(s2[i] * b2));
      const den = f(f(f(Math.sqrt(s2[i])) / sq) + eps);
      if (kind === 'adamw') u[i] = f(f(neg * m[i]) / den);
      else u[i] = h.nesterov ? f(f(f(b1 * m[i]) + f(omb1 * g[i])) / den) : f(m[i] / den);
    }
    if (kind === 'adamw') {
      const wdf = f(1 - h.lr * h.weightDecay);
      for (let i = 0; i < n; i++) p[i] = f(f(p[i] * wdf) + u[i]);
      return 4;
    }
    const { code, ratio } = project(v, p, g, u, h);
    const wdf = h.weightDecay > 0 ? f(1 - h.lr * h.weightDecay * ratio) : 1;
    for (let i = 0; i < n; i++) p[i] = fma(u[i], neg, f(p[i] * wdf));
    return code;
  }
  if (kind === 'sgdp') {
    const mom = f(h.momentum), omd = f(1 - h.dampening), negLr = f(-h.lr);
    const u = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      m[i] = fma(g[i], omd, f(m[i] * mom));
      u[i] = h.nesterov ? f(g[i] + f(mom * m[i])) : m[i];
    }
    const { code, ratio } = project(v, p, g, u, h);
    if ((code === 1 || code === 2) && !h.nesterov) m.set(u); // the official d IS the buffer
    const wdf = h.weightDecay > 0 ? f(1 - (h.lr * h.weightDecay * ratio) / (1 - h.momentum)) : 1;
    for (let i = 0; i < n; i++) p[i] = fma(u[i], negLr, f(p[i] * wdf));
    return code;
  }
  // sgd
  const mom = f(h.momentum), omd = f(1 - h.dampening), wd = f(h.weightDecay), negLr = f(-h.lr);
  for (let i = 0; i < n; i++) {
    let d = h.weightDecay !== 0 ? fma(p[i], wd, g[i]) : g[i];
    if (h.momentum !== 0) {
      m[i] = t.step <= 1 ? d : fma(d, omd, f(m[i] * mom));
      d = h.nesterov ? fma(m[i], mom, d) : m[i];
    }
    p[i] = fma(d, negLr, p[i]);
  }
  return 4;
}

/** The projection test and, when it fires, u projected in place. */
function project(v: ReturnType<typeof view>, p: Float32Array, g: Float32Array, u: Float32Array, h: Record<string, number>): { code: number; ratio: number } {
  if (!v.eligible) return { code: 3, ratio: 1 };
  const C = v.channels;
  const gp = new Float64Array(C), gg = new Float64Array(C), pp = new Float64Array(C), pu = new Float64Array(C);
  for (let i = 0; i < p.length; i++) {
    const c = Math.floor(i / v.inner) % C;
    gp[c] += g[i] * p[i]; gg[c] += g[i] * g[i]; pp[c] += p[i] * p[i]; pu[c] += p[i] * u[i];
  }
  const e = Math.sqrt(f(h.eps * h.eps));
  const cos = (a: number, b: number, c: number) => Math.abs(a) / (Math.max(Math.sqrt(b), e) * Math.max(Math.sqrt(c), e));
  let mx = 0;
  for (let c = 0; c < C; c++) mx = Math.max(mx, cos(gp[c], gg[c], pp[c]));
  const sum = (a: Float64Array) => a.reduce((x, y) => x + y, 0);
  const coef = (ppc: number, puc: number) => { const div = f(f(Math.sqrt(ppc)) + f(h.eps)); return { div, scale: f(puc / div) }; };
  let code = 0;
  let k: Array<{ div: number; scale: number }> = [];
  if (f(mx) < f(h.delta / Math.sqrt(v.numel / C))) {
    code = 1;
    k = Array.from({ length: C }, (_, c) => coef(pp[c], pu[c]));
  } else if (f(cos(sum(gp), sum(gg), sum(pp))) < f(h.delta / Math.sqrt(v.numel))) {
    code = 2;
    const one = coef(sum(pp), sum(pu));
    k = new Array(C).fill(one);
  }
  if (code === 0) return { code, ratio: 1 };
  for (let i = 0; i < p.length; i++) {
    const c = k[Math.floor(i / v.inner) % C];
    u[i] = f(u[i] - f(f(p[i] / c.div) * c.scale));
  }
  return { code, ratio: h.wdRatio };
}

// ------------------------------------------------------------------------------------------------

const SHAPES: Array<[number[], number]> = [
  [[16, 3, 3, 3], 0], [[16], 0], [[10, 20], 0], [[1, 16], 0], [[10, 1], 0], [[3, 3, 8, 16], -1], [[40, 70], 0], [[7], 0], [[], 0], [[2, 900], 0],
];

function tensors(kind: Kind, seed: number): Tensor[] {
  const r = rng(seed);
  return SHAPES.map(([shape, axis]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return { shape, axis, p: randn(r, n), state: Array.from({ length: SLOTS[kind] }, () => new Float32Array(n)), step: 0 };
  });
}

function clone(ts: Tensor[]): Tensor[] {
  return ts.map((t) => ({ ...t, p: t.p.slice(), state: t.state.map((a) => a.slice()) }));
}

/** Gradients of a step: random, or with the radial part removed (the projection fires); some params get none (null). */
function grads(ts: Tensor[], step: number, seed: number): Array<Float32Array | null> {
  const r = rng(seed * 1000 + step);
  return ts.map((t, i) => {
    const g = randn(r, t.p.length, 0.1);
    if ((i + step) % 3 === 0 && g.length > 1) {
      let gp = 0, pp = 0;
      for (let k = 0; k < g.length; k++) { gp += g[k] * t.p[k]; pp += t.p[k] * t.p[k]; }
      for (let k = 0; k < g.length; k++) g[k] = f(g[k] - (gp / pp) * t.p[k]);
    }
    return (i + step) % 5 === 4 ? null : g;
  });
}

const spec = (kind: Kind) => ({ kind }) as unknown as AnySpec;

/** The job of one step over the tensors that have a gradient (host params: the Slot arrays are the tensors' own). */
function job(kind: Kind, ts: Tensor[], gs: Array<Float32Array | null>, h: Record<string, number>): { job: StepJob; which: number[] } {
  const which = gs.flatMap((g, i) => (g ? [i] : []));
  const slots: Slot[] = which.map((i) => ({ p: ts[i].p, g: gs[i]!, state: ts[i].state, ...view(ts[i]), step: ts[i].step + 1 }));
  for (const i of which) ts[i].step += 1; // the facade counts; the engine reads Slot.step
  return { job: { spec: spec(kind), options: h, hyper: wire(kind, h), slots, info: new Float64Array(which.length * INFO_STRIDE) }, which };
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}

function expectClose(got: Float32Array, want: Float32Array, scale: number, what: string): void {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  if (!(worst <= 1e-6 * Math.max(scale, 1e-30))) throw new Error(`${what}: max |got - want| = ${worst} > 1e-6 * ${scale}`);
}

function expectSame(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length).toBe(want.length);
  if (Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(want.buffer, want.byteOffset, want.byteLength)) !== 0) {
    let i = 0;
    while (Object.is(got[i], want[i])) i++;
    throw new Error(`${what}: element ${i} differs: ${got[i]} vs ${want[i]}`);
  }
}

function errorOf(fn: () => unknown): { code?: string; message: string; name?: string } {
  try {
    fn();
  } catch (e) {
    return e as { code?: string; message: string; name?: string };
  }
  return { message: '' };
}

gpuDescribe('the CUDA engine on every registered optimizer', () => {
  const cuda = addon!;

  test('cudaKinds() lists the C++ registry: names, state slots, hyperparameter wire order', () => {
    const kinds = cuda.cudaKinds();
    expect(kinds.map((k) => k.name)).toEqual(['adamp', 'sgdp', 'adamw', 'sgd']);
    for (const k of kinds) {
      expect(k.slots).toBe(SLOTS[k.name as Kind]);
      expect(k.hyper).toEqual(WIRE[k.name as Kind]);
      expect(k.projects).toBe(k.name === 'adamp' || k.name === 'sgdp');
    }
  });

  test.each(['adamp', 'sgdp', 'adamw', 'sgd'] as const)('%s: host params match the float32 reference over 6 steps (first steps, skipped params, presets)', (kind) => {
    const ref = tensors(kind, 3), dev = clone(ref);
    const engine = new CudaEngine(cuda, { kind });
    let projected = 0;
    for (let step = 1; step <= 6; step++) {
      const h = PRESETS[kind][Math.floor((step - 1) / 2) % PRESETS[kind].length];
      const gs = grads(ref, step, 7);
      const { job: j, which } = job(kind, dev, gs, h);
      engine.step(j, { norms: true });
      engine.flush();
      which.forEach((i, k) => {
        const before = ref[i].p.slice();
        const code = refStep(kind, ref[i], gs[i]!, h);
        const got = j.info[k * INFO_STRIDE];
        expect(`${kind} step ${step} param ${i}: decision ${got}`).toBe(`${kind} step ${step} param ${i}: decision ${code}`);
        if (code === 1 || code === 2) projected++;
        expectClose(dev[i].p, ref[i].p, Math.max(maxAbs(ref[i].p), maxAbs(before)), `${kind} step ${step} param ${i} p`);
        ref[i].state.forEach((s, k2) => expectClose(dev[i].state[k2], s, Math.max(maxAbs(s), k2 === 0 ? maxAbs(gs[i]!) : 0), `${kind} step ${step} param ${i} state ${k2}`));
        // The norms: ||p||^2 before and after, ||dp||^2.
        let b = 0, a = 0, d = 0;
        for (let e = 0; e < before.length; e++) { b += before[e] ** 2; a += dev[i].p[e] ** 2; d += (dev[i].p[e] - before[e]) ** 2; }
        expect(Math.abs(j.info[k * INFO_STRIDE + 5] - b)).toBeLessThanOrEqual(1e-9 * Math.max(b, 1e-30) + 1e-12);
        expect(Math.abs(j.info[k * INFO_STRIDE + 6] - a)).toBeLessThanOrEqual(1e-9 * Math.max(a, 1e-30) + 1e-12);
        expect(Math.abs(j.info[k * INFO_STRIDE + 7] - d)).toBeLessThanOrEqual(1e-6 * Math.max(d, 1e-30) + 1e-12);
      });
      // The reference continues from the device's values, so rounding differences do not compound.
      ref.forEach((t, i) => { t.p.set(dev[i].p); t.state.forEach((s, k) => s.set(dev[i].state[k])); });
    }
    if (kind === 'adamp' || kind === 'sgdp') expect(projected).toBeGreaterThan(0);
    engine.dispose();
  });

  test.each(['adamp', 'sgd'] as const)('%s: norms: false leaves the norms NaN and changes no bit of the step', (kind) => {
    const a = tensors(kind, 5), b = clone(a);
    const ea = new CudaEngine(cuda), eb = new CudaEngine(cuda);
    for (let step = 1; step <= 3; step++) {
      const gs = grads(a, step, 5).map((g, i) => g ?? randn(rng(i), a[i].p.length, 0.1));
      const ja = job(kind, a, gs, PRESETS[kind][0]).job, jb = job(kind, b, gs, PRESETS[kind][0]).job;
      ea.step(ja, { norms: true });
      eb.step(jb, { norms: false });
      ea.flush();
      eb.flush();
      for (let k = 0; k < a.length; k++) {
        const ia = ja.info.subarray(k * 8, k * 8 + 8), ib = jb.info.subarray(k * 8, k * 8 + 8);
        expect(Array.from(ib.subarray(0, 5))).toEqual(Array.from(ia.subarray(0, 5)));
        expect(Number.isNaN(ib[6]) && Number.isNaN(ib[7])).toBe(true);
        const decided = ia[0] <= 2;
        if (decided) expect(ib[5]).toBe(ia[5]); // the decision's ||p||^2 comes free
        else expect(Number.isNaN(ib[5])).toBe(true);
      }
    }
    a.forEach((t, i) => expectSame(b[i].p, t.p, `${kind} p ${i}`));
    ea.dispose();
    eb.dispose();
  });

  test('stepAsync resolves after the device finished and matches step() bit for bit; several groups of several kinds', async () => {
    const kinds: Kind[] = ['adamp', 'sgd'];
    const a = kinds.map((k) => tensors(k, 11)), b = a.map(clone);
    const sync = new CudaEngine(cuda), asyn = new CudaEngine(cuda);
    for (let step = 1; step <= 3; step++) {
      const js = kinds.map((k, g) => job(k, a[g], grads(a[g], step, 11), PRESETS[k][0]).job);
      const ja = kinds.map((k, g) => job(k, b[g], grads(b[g], step, 11), PRESETS[k][0]).job);
      for (const j of js) sync.step(j, { norms: true });
      await asyn.stepAsync(ja, { norms: true });
      sync.flush();
      asyn.flush();
      js.forEach((j, g) => expect(Array.from(ja[g].info)).toEqual(Array.from(j.info)));
    }
    a.forEach((ts, g) => ts.forEach((t, i) => {
      expectSame(b[g][i].p, t.p, `group ${g} p ${i}`);
      t.state.forEach((s, k) => expectSame(b[g][i].state[k], s, `group ${g} state ${k} of ${i}`));
    }));
    sync.dispose();
    asyn.dispose();
  });

  test('invalidate() after the host state was replaced continues exactly (loadStateDict)', () => {
    const kind: Kind = 'sgdp';
    const a = tensors(kind, 13), b = clone(a);
    const ea = new CudaEngine(cuda), eb = new CudaEngine(cuda);
    for (let step = 1; step <= 5; step++) {
      const gs = grads(a, step, 13);
      ea.step(job(kind, a, gs, PRESETS[kind][0]).job, { norms: false });
      eb.step(job(kind, b, gs, PRESETS[kind][0]).job, { norms: false });
      if (step === 2) {
        eb.flush(); // stateDict()
        b.forEach((t) => { t.state = t.state.map((s) => s.slice()); }); // new arrays, as loadStateDict makes
        eb.invalidate();
      }
    }
    ea.flush();
    eb.flush();
    a.forEach((t, i) => { expectSame(b[i].p, t.p, `p ${i}`); expectSame(b[i].state[0], t.state[0], `buffer ${i}`); });
    ea.dispose();
    eb.dispose();
  });

  test.each(['adamp', 'sgd'] as const)('%s: device params (contiguous and strided, device and host gradients) step like host params, bit for bit', (kind) => {
    const host = tensors(kind, 17), mirror = clone(host);
    const before = cuda.cudaMemoryStats().liveAllocations;
    // Device copies of the params; params 2 ([10,20]) and 6 ([40,70]) stored transposed (column-major).
    const bufs = mirror.map((t, i) => {
      const transposed = (i === 2 || i === 6);
      const buf = cuda.cudaAlloc(0, Math.max(1, t.p.length) * 4);
      const pointer = cuda.cudaBufferAddress(buf);
      const strides = transposed ? [1, t.shape[0]] : null;
      if (t.p.length > 0) cuda.cudaCopyToDevice(0, pointer, t.shape, strides, t.p);
      return { buf, pointer, strides, key: {} };
    });
    const gbufs = mirror.map((t) => cuda.cudaAlloc(0, Math.max(1, t.p.length) * 4));
    const eh = new CudaEngine(cuda), ed = new CudaEngine(cuda);
    for (let step = 1; step <= 4; step++) {
      const gs = grads(host, step, 17);
      const h = PRESETS[kind][0];
      eh.step(job(kind, host, gs, h).job, { norms: true });
      const which = gs.flatMap((g, i) => (g ? [i] : []));
      const slots: Slot[] = which.map((i) => {
        const t = mirror[i];
        t.step += 1;
        // Odd steps: the gradient on the device (contiguous); even steps: a host gradient the engine uploads.
        let g: DeviceView | null = null;
        if (step % 2 === 1 && t.p.length > 0) {
          const gp = cuda.cudaBufferAddress(gbufs[i]);
          cuda.cudaCopyToDevice(0, gp, t.shape, null, gs[i]!);
          g = { pointer: gp, device: 0, shape: t.shape, strides: null };
        }
        return {
          p: new Float32Array(0), g: g === null ? gs[i]! : new Float32Array(0), state: Array.from({ length: SLOTS[kind] }, () => new Float32Array(0)),
          ...view(t), step: t.step,
          device: { key: bufs[i].key, numel: t.p.length, p: { pointer: bufs[i].pointer, device: 0, shape: t.shape, strides: bufs[i].strides }, g },
        };
      });
      ed.step({ spec: spec(kind), options: h, hyper: wire(kind, h), slots, info: new Float64Array(slots.length * INFO_STRIDE) }, { norms: true });
    }
    eh.flush();
    ed.flush();
    mirror.forEach((t, i) => {
      const got = new Float32Array(t.p.length);
      if (got.length > 0) cuda.cudaCopyToHost(0, bufs[i].pointer, t.shape, bufs[i].strides, got);
      expectSame(got, host[i].p, `${kind} device param ${i}`);
      const st = ed.readDeviceState(bufs[i].key)!;
      expect(st.length).toBe(SLOTS[kind]);
      st.forEach((s, k) => expectSame(s, host[i].state[k], `${kind} device state ${k} of ${i}`));
    });
    expect(ed.readDeviceState({})).toBeUndefined();
    eh.dispose();
    ed.dispose();
    for (const b of bufs) cuda.cudaBufferFree(b.buf);
    for (const b of gbufs) cuda.cudaBufferFree(b);
    expect(cuda.cudaMemoryStats().liveAllocations).toBe(before);
  });

  test('the exports check kinds and hyperparameters (ERR_ADAMP_INVALID_ARGUMENT, the field named)', () => {
    let e = errorOf(() => cuda.cudaCreate('adam'));
    expect(e.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(e.message).toMatch(/kind must be one of 'adamp', 'sgdp', 'adamw', 'sgd', got 'adam'/);
    const h = cuda.cudaCreate('adamw');
    const id = cuda.cudaAddTensor(h, 4, 1, 2, 2, true);
    cuda.cudaUpload(h, id, 1, new Float32Array(4).fill(0.1));
    const ids = Int32Array.of(id);
    e = errorOf(() => cuda.cudaStep(h, ids, new Float64Array(3)));
    expect(e.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(e.message).toMatch(/adamw takes 5 hyperparameters \(lr, beta1, beta2, eps, weightDecay\), got 3/);
    e = errorOf(() => cuda.cudaStep(h, ids, Float64Array.of(1e-3, 1, 0.999, 1e-8, 0)));
    expect(e.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(e.name).toBe('RangeError');
    expect(e.message).toMatch(/adamw hyperparameter 'beta1' \(hyper\[1\] = 1\) must be in \[0, 1\)/);
    e = errorOf(() => cuda.cudaStep(h, ids, Float64Array.of(NaN, 0.9, 0.999, 1e-8, 0)));
    expect(e.message).toMatch(/'lr' \(hyper\[0\] = nan\)/);
    e = errorOf(() => cuda.cudaStep(h, ids, [1e-3, 0.9, 0.999, 1e-8, 0] as unknown as Float64Array));
    expect(e.message).toMatch(/hyper must be a Float64Array/);
    e = errorOf(() => cuda.cudaStep(h, ids, Float64Array.of(1e-3, 0.9, 0.999, 1e-8, 0), { norms: 1 as unknown as boolean }));
    expect(e.message).toMatch(/options\.norms must be a boolean/);
    e = errorOf(() => cuda.cudaUpload(h, id, 4, new Float32Array(4))); // adamw has state slots 2 and 3 only
    expect(e.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    const sgd = cuda.cudaCreate('sgd');
    const sid = cuda.cudaAddTensor(sgd, 4, 1, 1, 4, false);
    e = errorOf(() => cuda.cudaStep(sgd, Int32Array.of(sid), Float64Array.of(0.1, 0, 0, 0, 1)));
    expect(e.message).toMatch(/'nesterov' .* needs momentum > 0 and dampening 0/);
    cuda.cudaStep(h, ids, Float64Array.of(1e-3, 0.9, 0.999, 1e-8, 0));
    const info = new Float64Array(8);
    cuda.cudaInfo(h, ids, info);
    expect(info[0]).toBe(4); // AdamW: no projection
    cuda.cudaDestroy(h);
    cuda.cudaDestroy(sgd);
    expect(errorOf(() => new CudaEngine(cuda).step({ spec: spec('lamb' as Kind), options: {}, hyper: new Float64Array(0), slots: [], info: new Float64Array(0) }, { norms: true })).message)
      .toMatch(/know no optimizer 'lamb'/);
  });
});
