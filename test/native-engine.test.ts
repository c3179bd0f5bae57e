/**
 * The native engine and the addon at the engine level (slots, wire hyperparameters, info record)
 * for every optimizer of the registry: against float32 references written here from the
 * definitions (docs/numerics.md) on every channel layout the C++ core schedules differently (rows,
 * rows with outer > 1, channels innermost, rows split into pieces, one pass); bit-identical
 * results for every thread count and both kernel sets; the info norms switch; the step protocol on
 * shards (byte-identical to the unsharded step); async stepping; the addon's argument checks.
 *
 * Only the addon and lib/backends/native/engine.ts are imported (the facade and the js engine
 * are tested elsewhere); a spec is reduced to its `kind` here.
 */
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import type { Geometry, Shard, Slot, StepJob } from '../lib/backends/engine';
import { NativeEngine } from '../lib/backends/native/engine';
import { AdampError } from '../lib/errors';
import { loadAddon } from '../lib/binding/load';
import type { Addon, AddonSlot } from '../lib/binding/types';
import type { AnySpec } from '../lib/optim/spec';
import { randn, rng } from './helpers/random';

const loaded = loadAddon();
const addon: Addon | undefined = 'addon' in loaded ? loaded.addon : undefined;
if (!addon) {
  // eslint-disable-next-line no-console
  console.warn(`native-engine tests skipped: the addon did not load:\n  ${'errors' in loaded ? loaded.errors.join('\n  ') : ''}`);
  test.skip('the native addon is not built (npm run build:native)', () => {});
}
const d = addon ? describe : describe.skip;

// The info record (lib/core/info.ts): 8 doubles per slot.
const STRIDE = 8;
const F = { decision: 0, channelMaxCos: 1, channelThreshold: 2, layerCos: 3, layerThreshold: 4, normSqBefore: 5, normSqAfter: 6, deltaSq: 7 } as const;
const DEC = { none: 0, channel: 1, layer: 2, notEligible: 3, noProjection: 4 } as const;

type Kind = 'adamp' | 'sgdp' | 'adamw' | 'sgd';
const KINDS: Kind[] = ['adamp', 'sgdp', 'adamw', 'sgd'];
const SLOTS: Record<Kind, number> = { adamp: 2, sgdp: 1, adamw: 2, sgd: 1 };
const spec = (kind: Kind): AnySpec => ({ kind }) as unknown as AnySpec;

// ------------------------------------------------------------------------------------------------
// Hyperparameters, in each C++ policy's wire order (native/include/adamp/optim/*.h).

interface AdamPH { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; delta: number; wdRatio: number; nesterov: boolean }
interface SGDPH { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean; eps: number; delta: number; wdRatio: number }
interface AdamWH { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number }
interface SGDH { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean }
type Hyper = AdamPH | SGDPH | AdamWH | SGDH;

function wire(kind: Kind, h: Hyper): Float64Array {
  const b = (x: boolean) => (x ? 1 : 0);
  switch (kind) {
    case 'adamp': { const x = h as AdamPH; return Float64Array.of(x.lr, x.beta1, x.beta2, x.eps, x.weightDecay, x.delta, x.wdRatio, b(x.nesterov)); }
    case 'sgdp': { const x = h as SGDPH; return Float64Array.of(x.lr, x.momentum, x.dampening, x.weightDecay, b(x.nesterov), x.eps, x.delta, x.wdRatio); }
    case 'adamw': { const x = h as AdamWH; return Float64Array.of(x.lr, x.beta1, x.beta2, x.eps, x.weightDecay); }
    case 'sgd': { const x = h as SGDH; return Float64Array.of(x.lr, x.momentum, x.dampening, x.weightDecay, b(x.nesterov)); }
  }
}

function randomHyper(kind: Kind, r: () => number): Hyper {
  const nesterov = r() < 0.5;
  switch (kind) {
    case 'adamp':
      return { lr: r() < 0.5 ? 1e-3 : 0.05 * r(), beta1: r() < 0.7 ? 0.9 : 0.8, beta2: r() < 0.7 ? 0.999 : 0.99, eps: r() < 0.8 ? 1e-8 : 1e-6,
        weightDecay: [0, 0.01, 0.1][Math.floor(r() * 3)], delta: r() < 0.7 ? 0.1 : 0.5, wdRatio: r() < 0.7 ? 0.1 : 0.3, nesterov };
    case 'sgdp':
      return { lr: 0.1 * r() + 1e-3, momentum: r() < 0.2 ? 0 : 0.9, dampening: r() < 0.3 ? 0.1 : 0, weightDecay: [0, 1e-3, 1e-2][Math.floor(r() * 3)],
        nesterov, eps: r() < 0.8 ? 1e-8 : 1e-6, delta: r() < 0.7 ? 0.1 : 0.5, wdRatio: r() < 0.7 ? 0.1 : 0.3 };
    case 'adamw':
      return { lr: r() < 0.5 ? 1e-3 : 0.05 * r(), beta1: 0.9, beta2: r() < 0.5 ? 0.999 : 0.99, eps: 1e-8, weightDecay: [0, 0.01, 0.1][Math.floor(r() * 3)] };
    case 'sgd': {
      const momentum = r() < 0.3 ? 0 : 0.9;
      const nest = nesterov && momentum > 0;
      return { lr: 0.1 * r() + 1e-3, momentum, dampening: nest || r() < 0.5 ? 0 : 0.1, weightDecay: [0, 1e-3, 1e-2][Math.floor(r() * 3)], nesterov: nest };
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Data

interface Shape { shape: number[]; axis: number }

function geometryOf({ shape, axis }: Shape): { outer: number; channels: number; inner: number; eligible: boolean } {
  const n = shape.reduce((a, b) => a * b, 1);
  if (shape.length <= 1) return { outer: 1, channels: 1, inner: n, eligible: false };
  const ax = axis < 0 ? shape.length + axis : axis;
  const outer = shape.slice(0, ax).reduce((a, b) => a * b, 1);
  const inner = shape.slice(ax + 1).reduce((a, b) => a * b, 1);
  return { outer, channels: shape[ax], inner, eligible: true };
}

const channelOf = (i: number, channels: number, inner: number): number => Math.floor(i / inner) % channels;

type GradKind = 'random' | 'channel' | 'layer' | 'parallel' | 'zero';
const GRAD_KINDS: GradKind[] = ['random', 'channel', 'layer', 'parallel', 'zero'];

function makeGrad(r: () => number, p: Float32Array, channels: number, inner: number, kind: GradKind): Float32Array {
  const n = p.length;
  const g = randn(r, n);
  switch (kind) {
    case 'zero': return new Float32Array(n);
    case 'parallel': return p.map((x) => x * 0.5);
    case 'random': return g;
    case 'channel': case 'layer': {
      const rows = kind === 'channel' ? channels : 1;
      const gp = new Float64Array(rows), pp = new Float64Array(rows);
      const row = (i: number) => (kind === 'channel' ? channelOf(i, channels, inner) : 0);
      for (let i = 0; i < n; i++) { gp[row(i)] += g[i] * p[i]; pp[row(i)] += p[i] * p[i]; }
      for (let i = 0; i < n; i++) { const k = pp[row(i)] > 0 ? gp[row(i)] / pp[row(i)] : 0; g[i] = g[i] - k * p[i]; }
      return g;
    }
  }
}

function makeSlots(r: () => number, shapes: Shape[], kind: Kind): { slots: Slot[]; grads: GradKind[] } {
  const slots: Slot[] = [];
  const grads: GradKind[] = [];
  for (const s of shapes) {
    const gm = geometryOf(s);
    const n = gm.outer * gm.channels * gm.inner;
    const p = randn(r, n);
    const gk = GRAD_KINDS[Math.floor(r() * GRAD_KINDS.length)];
    const state = Array.from({ length: SLOTS[kind] }, () => new Float32Array(n));
    if (kind === 'sgd' || kind === 'sgdp') state[0].set(randn(r, n, 0.1));
    slots.push({ p, g: makeGrad(r, p, gm.channels, gm.inner, gk), state, ...gm, step: 1 });
    grads.push(gk);
  }
  return { slots, grads };
}

function cloneSlots(slots: readonly Slot[]): Slot[] {
  return slots.map((s) => ({ ...s, p: s.p.slice(), g: s.g.slice(), state: s.state.map((a) => a.slice()) }));
}

// Shapes covering every layout of the C++ scheduler (see native/cpu/step.cpp).
const SHAPES: Shape[] = [
  { shape: [128], axis: 0 }, { shape: [], axis: 0 }, { shape: [7], axis: 0 },
  { shape: [10, 20], axis: 0 }, { shape: [64, 3, 3, 3], axis: 0 }, { shape: [256, 128, 1, 1], axis: 0 },
  { shape: [1, 16], axis: 0 }, { shape: [10, 1], axis: 0 }, { shape: [3, 3, 8, 16], axis: -1 },
  { shape: [5, 13], axis: -1 }, { shape: [4, 6, 5], axis: 1 }, { shape: [3, 9, 2], axis: 1 },
  { shape: [2, 3, 3, 33], axis: -1 }, { shape: [17, 9], axis: 0 }, { shape: [1, 1], axis: 0 },
];
const BIG_SHAPES: Shape[] = [
  { shape: [2, 70001], axis: 0 }, // rows longer than a unit: pieces
  { shape: [20000, 3], axis: -1 }, // channels innermost, several row chunks
  { shape: [3, 9000], axis: -1 }, // channels innermost, several channel tiles
  { shape: [8, 300, 30], axis: 1 }, // middle axis, outer > 1
  { shape: [100000], axis: 0 }, // one pass, several blocks
];

// ------------------------------------------------------------------------------------------------
// float32 references (docs/numerics.md): one element at a time, sums in double.

const f = Math.fround;

function absCos(gp: number, gg: number, pp: number, e: number): number {
  const max = 3.4028234663852886e38;
  if (gg > max || pp > max) return gg === Infinity || pp === Infinity || Number.isNaN(gp) ? NaN : 0;
  return Math.abs(gp) / (Math.max(Math.sqrt(gg), e) * Math.max(Math.sqrt(pp), e));
}

/** The projection decision and each element's projected update (AdamP / SGDP). */
function project(s: Slot, u: Float32Array, delta: number, wdRatio: number, eps: number): { code: number; ratio: number; u: Float32Array } {
  const C = s.channels, n = s.p.length;
  const sums = Array.from({ length: C }, () => [0, 0, 0, 0]);
  for (let i = 0; i < n; i++) {
    const c = sums[channelOf(i, C, s.inner)];
    c[0] += s.g[i] * s.p[i]; c[1] += s.g[i] * s.g[i]; c[2] += s.p[i] * s.p[i]; c[3] += s.p[i] * u[i];
  }
  const e = Math.sqrt(f(eps * eps));
  let maxCos = 0;
  const tot = [0, 0, 0, 0];
  for (const c of sums) {
    const cs = absCos(c[0], c[1], c[2], e);
    if (!(cs <= maxCos)) maxCos = Number.isNaN(maxCos) ? maxCos : cs;
    for (let k = 0; k < 4; k++) tot[k] += c[k];
  }
  const coef = (pp: number, pu: number) => { const div = f(f(Math.sqrt(pp)) + f(eps)); return { div, scale: f(pu / div) }; };
  let code: number = DEC.none;
  if (f(maxCos) < f(delta / Math.sqrt(n / C))) code = DEC.channel;
  else if (f(absCos(tot[0], tot[1], tot[2], e)) < f(delta / Math.sqrt(n))) code = DEC.layer;
  if (code === DEC.none) return { code, ratio: 1, u };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const c = code === DEC.channel ? sums[channelOf(i, C, s.inner)] : tot;
    const k = coef(c[2], c[3]);
    out[i] = f(u[i] - f(f(s.p[i] / k.div) * k.scale));
  }
  return { code, ratio: wdRatio, u: out };
}

/** One step of one slot; returns the decision code. */
function reference(kind: Kind, s: Slot, h: Hyper): number {
  const n = s.p.length;
  if (kind === 'adamp' || kind === 'adamw') {
    const x = h as AdamPH;
    const bc1 = 1 - x.beta1 ** s.step, bc2 = 1 - x.beta2 ** s.step;
    const [m, v] = s.state;
    const u = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const g = s.g[i];
      m[i] = f(g * f(1 - x.beta1) + f(m[i] * f(x.beta1)));
      v[i] = f(f(f(1 - x.beta2) * g) * g + f(v[i] * f(x.beta2)));
      const den = f(f(f(Math.sqrt(v[i])) / f(Math.sqrt(bc2))) + f(x.eps));
      if (kind === 'adamw') u[i] = f(f(f(-(x.lr / bc1)) * m[i]) / den);
      else u[i] = x.nesterov ? f(f(f(f(x.beta1) * m[i]) + f(f(1 - x.beta1) * g)) / den) : f(m[i] / den);
    }
    if (kind === 'adamw') {
      const wdf = f(1 - x.lr * x.weightDecay);
      for (let i = 0; i < n; i++) s.p[i] = f(f(s.p[i] * wdf) + u[i]);
      return DEC.noProjection;
    }
    const r = s.eligible ? project(s, u, x.delta, x.wdRatio, x.eps) : { code: DEC.notEligible, ratio: 1, u };
    const wdf = x.weightDecay > 0 ? f(1 - x.lr * x.weightDecay * r.ratio) : 1;
    for (let i = 0; i < n; i++) s.p[i] = f(r.u[i] * f(-(x.lr / bc1)) + f(s.p[i] * wdf));
    return r.code;
  }
  const x = h as SGDPH;
  const buf = s.state[0];
  if (kind === 'sgd') {
    for (let i = 0; i < n; i++) {
      let dp = x.weightDecay !== 0 ? f(s.p[i] * f(x.weightDecay) + s.g[i]) : s.g[i];
      if (x.momentum !== 0) {
        buf[i] = s.step <= 1 ? dp : f(dp * f(1 - x.dampening) + f(buf[i] * f(x.momentum)));
        dp = x.nesterov ? f(buf[i] * f(x.momentum) + dp) : buf[i];
      }
      s.p[i] = f(dp * f(-x.lr) + s.p[i]);
    }
    return DEC.noProjection;
  }
  const u = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    buf[i] = f(s.g[i] * f(1 - x.dampening) + f(buf[i] * f(x.momentum)));
    u[i] = x.nesterov ? f(s.g[i] + f(f(x.momentum) * buf[i])) : buf[i];
  }
  const r = s.eligible ? project(s, u, x.delta, x.wdRatio, x.eps) : { code: DEC.notEligible, ratio: 1, u };
  if (r.code === DEC.channel || r.code === DEC.layer) if (!x.nesterov) buf.set(r.u);
  const wdf = x.weightDecay > 0 ? f(1 - (x.lr * x.weightDecay * r.ratio) / (1 - x.momentum)) : 1;
  for (let i = 0; i < n; i++) s.p[i] = f(r.u[i] * f(-x.lr) + f(s.p[i] * wdf));
  return r.code;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) if (Number.isFinite(a[i]) && Math.abs(a[i]) > m) m = Math.abs(a[i]);
  return m;
}

/** |a-b| <= tol * max(max|b|, floorScale) per tensor (the reference sums in another order, and fuses nothing). */
function expectClose(a: Float32Array, b: Float32Array, where: string, floorScale = 0, tol = 2e-6): void {
  expect(a.length).toBe(b.length);
  const t = tol * Math.max(maxAbs(b), floorScale);
  for (let i = 0; i < a.length; i++) {
    if (!(Math.abs(a[i] - b[i]) <= t)) throw new Error(`${where}: element ${i}: native ${a[i]} vs reference ${b[i]} (tolerance ${t})`);
  }
}

function job(kind: Kind, slots: Slot[], h: Hyper | Float64Array, info: Float64Array): StepJob {
  return { spec: spec(kind), options: {}, hyper: h instanceof Float64Array ? h : wire(kind, h), slots, info };
}

// ------------------------------------------------------------------------------------------------

d('NativeEngine against the float32 references', () => {
  test.each(KINDS)('%s: 30 random cases x 3 steps over every layout', (kind) => {
    const counts = new Map<number, number>();
    for (let seed = 1; seed <= 30; seed++) {
      const r = rng(seed * 1009 + KINDS.indexOf(kind));
      const shapes = Array.from({ length: 1 + Math.floor(r() * 4) }, () => SHAPES[Math.floor(r() * SHAPES.length)]);
      if (seed % 6 === 0) shapes.push(BIG_SHAPES[(seed / 6) % BIG_SHAPES.length]);
      const { slots: a, grads } = makeSlots(r, shapes, kind);
      const b = cloneSlots(a);
      const h = randomHyper(kind, r);
      const eng = new NativeEngine(addon!, { threads: 2 });
      for (let t = 1; t <= 3; t++) {
        for (const s of [...a, ...b]) s.step = t;
        if (t > 1) {
          const gr = rng(seed * 31 + t);
          a.forEach((s, k) => { const g = makeGrad(gr, s.p, s.channels, s.inner, grads[k]); s.g = g; b[k].g = g.slice(); });
        }
        const info = new Float64Array(a.length * STRIDE);
        // SGDP's buffer before its projection: momentum * old buffer + (1 - dampening) * g (docs/numerics.md).
        const pre = b.map((s) => (kind === 'sgdp' ? (h as SGDPH).momentum * maxAbs(s.state[0]) + maxAbs(s.g) : 0));
        const normsBefore = b.map((s) => s.p.reduce((acc, x) => acc + x * x, 0));
        eng.step(job(kind, a, h, info), { norms: true });
        for (let k = 0; k < a.length; k++) {
          const code = reference(kind, b[k], h);
          const where = `${kind} seed ${seed} step ${t} slot ${k} shape [${shapes[k].shape}] axis ${shapes[k].axis} grad ${grads[k]} hyper ${JSON.stringify(h)}`;
          const o = k * STRIDE;
          if (info[o + F.decision] !== code) throw new Error(`${where}: decision ${info[o]} vs reference ${code} (cos ${info[o + 1]}, thr ${info[o + 2]}; layer ${info[o + 3]}, thr ${info[o + 4]})`);
          counts.set(code, (counts.get(code) ?? 0) + 1);
          expectClose(a[k].p, b[k].p, `${where}: p`);
          a[k].state.forEach((st, i) => expectClose(st, b[k].state[i], `${where}: state[${i}]`, i === 0 ? pre[k] : 0));
          // ||p||^2 before and after from blocked float sums: relative error below ~1e-6
          expect(Math.abs(info[o + F.normSqBefore] - normsBefore[k])).toBeLessThanOrEqual(1e-5 * normsBefore[k] + 1e-30);
          const after = b[k].p.reduce((acc, x) => acc + x * x, 0);
          expect(Math.abs(info[o + F.normSqAfter] - after)).toBeLessThanOrEqual(1e-5 * after + 1e-30);
          if (code === DEC.noProjection || code === DEC.notEligible) {
            for (const fl of [F.channelMaxCos, F.channelThreshold, F.layerCos, F.layerThreshold]) expect(info[o + fl]).toBeNaN();
          }
        }
      }
    }
    if (kind === 'adamp' || kind === 'sgdp') {
      for (const code of [DEC.channel, DEC.layer, DEC.none, DEC.notEligible]) expect(counts.get(code) ?? 0).toBeGreaterThan(5);
    } else {
      expect([...counts.keys()]).toEqual([DEC.noProjection]);
    }
  });

  test('SGDP without Nesterov writes the projected update into the buffer; with Nesterov it does not', () => {
    for (const nesterov of [false, true]) {
      const r = rng(5);
      const { slots: a } = makeSlots(r, [{ shape: [16, 32], axis: 0 }], 'sgdp');
      a[0].g = makeGrad(r, a[0].p, 16, 32, 'channel');
      a[0].state[0].fill(0);
      const h: SGDPH = { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov, eps: 1e-8, delta: 0.1, wdRatio: 0.1 };
      const info = new Float64Array(8);
      new NativeEngine(addon!, { threads: 1 }).step(job('sgdp', a, h, info), { norms: true });
      expect(info[F.decision]).toBe(DEC.channel);
      // the buffer equals the gradient only when it was not projected
      expect(a[0].state[0].every((x, i) => x === a[0].g[i])).toBe(nesterov);
    }
  });
});

// ------------------------------------------------------------------------------------------------

function bitwise(x: { slots: Slot[]; info: Float64Array }, y: { slots: Slot[]; info: Float64Array }, what: string): void {
  for (let k = 0; k < x.slots.length; k++) {
    const arrays: Array<[string, Float32Array, Float32Array]> = [['p', x.slots[k].p, y.slots[k].p], ...x.slots[k].state.map((s, i): [string, Float32Array, Float32Array] => [`state[${i}]`, s, y.slots[k].state[i]])];
    for (const [name, a, b] of arrays) {
      if (!Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))) throw new Error(`${what}: slot ${k} ${name} differs`);
    }
  }
  if (!Buffer.from(x.info.buffer).equals(Buffer.from(y.info.buffer))) throw new Error(`${what}: info differs: ${Array.from(x.info)} vs ${Array.from(y.info)}`);
}

d('determinism and the norms switch', () => {
  const made = new Map<Kind, Slot[]>();
  function bigCase(kind: Kind): Slot[] {
    if (!made.has(kind)) {
      const r = rng(42);
      const shapes = [...BIG_SHAPES, { shape: [64, 64, 3, 3], axis: 0 }, { shape: [512], axis: 0 }, { shape: [3, 3, 64, 64], axis: -1 }];
      made.set(kind, makeSlots(r, shapes, kind).slots.map((s) => ({ ...s, g: randn(r, s.p.length) })));
    }
    return cloneSlots(made.get(kind)!);
  }
  const HYPER: Record<Kind, (t: number) => Hyper> = {
    adamp: (t) => ({ lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, delta: 0.1, wdRatio: 0.1, nesterov: t === 2 }),
    sgdp: () => ({ lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov: false, eps: 1e-8, delta: 0.1, wdRatio: 0.1 }),
    adamw: () => ({ lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }),
    sgd: (t) => ({ lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov: t === 2 }),
  };
  function run(kind: Kind, threads: number, simd: 'avx2' | 'portable' | 'auto' = 'auto', norms = true): { slots: Slot[]; info: Float64Array } {
    addon!.setSimd(simd);
    try {
      const slots = bigCase(kind);
      const info = new Float64Array(slots.length * STRIDE);
      const eng = new NativeEngine(addon!, { threads });
      for (let t = 1; t <= 2; t++) {
        for (const s of slots) s.step = t;
        eng.step(job(kind, slots, HYPER[kind](t), info), { norms });
      }
      return { slots, info };
    } finally {
      addon!.setSimd('auto');
    }
  }

  test.each(KINDS)('%s: bit-identical for 1, 2, 3 and 8 threads', (kind) => {
    const one = run(kind, 1);
    for (const t of [2, 3, 8]) bitwise(one, run(kind, t), `${t} threads vs 1`);
  });

  test.each(KINDS)('%s: AVX2 and portable kernels are bit-identical', (kind) => {
    if (!addon!.info().avx2) {
      // eslint-disable-next-line no-console
      console.warn('AVX2 not available on this CPU/build: only the portable kernels can run');
      return;
    }
    expect(addon!.setSimd('portable')).toBe('portable');
    addon!.setSimd('auto');
    bitwise(run(kind, 2, 'avx2'), run(kind, 2, 'portable'), 'avx2 vs portable');
  });

  test.each(KINDS)('%s: norms off changes nothing but the norms (NaN; normSqBefore stays for projected tensors)', (kind) => {
    const on = run(kind, 2, 'auto', true), off = run(kind, 2, 'auto', false);
    bitwise(on, { ...off, info: on.info }, 'norms off vs on');
    for (let k = 0; k < on.slots.length; k++) {
      const o = k * STRIDE;
      for (let fl = 0; fl < 5; fl++) expect(Object.is(off.info[o + fl], on.info[o + fl])).toBe(true);
      const decided = on.info[o] <= DEC.layer;
      if (decided) expect(off.info[o + F.normSqBefore]).toBe(on.info[o + F.normSqBefore]);
      else expect(off.info[o + F.normSqBefore]).toBeNaN();
      expect(off.info[o + F.normSqAfter]).toBeNaN();
      expect(off.info[o + F.deltaSq]).toBeNaN();
    }
  });

  test('speculation on gives the same bits (AdamP)', () => {
    const off = run('adamp', 2);
    addon!.setSpeculation('on');
    try {
      bitwise(off, run('adamp', 2), 'speculation on vs off');
    } finally {
      addon!.setSpeculation('off');
    }
  });
});

// ------------------------------------------------------------------------------------------------

d('the step protocol on shards', () => {
  const eng = () => new NativeEngine(addon!, { threads: 2 });

  /** One step of one tensor through the protocol on shards cut at `cuts` (unit indices), each in arrays of its own. */
  function sharded(kind: Kind, s: Slot, hyper: Float64Array, cuts: number[], norms: boolean, info: Float64Array): void {
    const e = eng();
    const protocol = e.protocol;
    const geo: Geometry = { outer: s.outer, channels: s.channels, inner: s.inner, eligible: s.eligible, numel: s.p.length };
    const starts = protocol.units(spec(kind), geo);
    const shards: Shard[] = [];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const a = starts[cuts[i]], b = starts[cuts[i + 1]];
      shards.push({ ...s, p: s.p.slice(a, b), g: s.g.slice(a, b), state: s.state.map((x) => x.slice(a, b)), offset: a, numel: s.p.length });
    }
    const shardJob = (sh: Shard) => ({ spec: spec(kind), options: {}, hyper, shard: sh });
    const parts = shards.map((sh, i) => protocol.stats(shardJob(sh), cuts[i], cuts[i + 1]));
    const partials = new Float64Array(parts.reduce((n, x) => n + x.length, 0));
    let at = 0;
    for (const x of parts) { partials.set(x, at); at += x.length; }
    const decision = protocol.decide(spec(kind), geo, {}, hyper, partials);
    const nparts = shards.map((sh, i) => protocol.apply(shardJob(sh), decision, cuts[i], cuts[i + 1], { norms }));
    const nrm = new Float64Array(nparts.reduce((n, x) => n + x.length, 0));
    at = 0;
    for (const x of nparts) { nrm.set(x, at); at += x.length; }
    protocol.finish(spec(kind), geo, decision, nrm, info, 0);
    shards.forEach((sh) => {
      s.p.set(sh.p, sh.offset);
      s.state.forEach((x, k) => x.set(sh.state[k], sh.offset));
    });
  }

  // every layout: pieces, lanes (row chunks; channel tiles; both), rows with outer > 1, one pass, rows, empty
  const PROTO_SHAPES: Shape[] = [...BIG_SHAPES, { shape: [40, 9000], axis: -1 }, { shape: [64, 3, 3, 3], axis: 0 }, { shape: [4, 6, 5], axis: 1 },
    { shape: [300, 400], axis: 0 }, { shape: [3, 3, 8, 16], axis: -1 }, { shape: [7], axis: 0 }, { shape: [], axis: 0 }];

  test.each(KINDS)('%s: any split into 2-4 shards gives the unsharded step byte for byte (norms on and off)', (kind) => {
    let multi = 0;
    for (let seed = 0; seed < 2 * PROTO_SHAPES.length; seed++) {
      const r = rng(seed * 77 + KINDS.indexOf(kind));
      const shape = PROTO_SHAPES[seed % PROTO_SHAPES.length];
      const { slots: [a] } = makeSlots(r, [shape], kind);
      const [b] = cloneSlots([a]);
      const h = wire(kind, randomHyper(kind, r));
      const norms = seed < PROTO_SHAPES.length;
      const geo: Geometry = { outer: a.outer, channels: a.channels, inner: a.inner, eligible: a.eligible, numel: a.p.length };
      const units = eng().protocol.units(spec(kind), geo).length - 1;
      if (units > 1) multi++;
      for (let t = 1; t <= 2; t++) {
        a.step = b.step = t;
        const ia = new Float64Array(STRIDE), ib = new Float64Array(STRIDE);
        eng().step(job(kind, [a], h, ia), { norms });
        const n = 2 + Math.floor(r() * 3);
        const cuts = [0, units, ...Array.from({ length: n - 1 }, () => Math.floor(r() * (units + 1)))].sort((x, y) => x - y);
        sharded(kind, b, h, cuts, norms, ib);
        bitwise({ slots: [a], info: ia }, { slots: [b], info: ib }, `${kind} seed ${seed} shape [${shape.shape}] step ${t} cuts ${cuts}`);
      }
    }
    expect(multi).toBeGreaterThan(3);
  });

  test('units: element offsets of the plan, then numel', () => {
    const u = Array.from(addon!.protocolUnits('adamp', { outer: 1, channels: 2, inner: 70001, eligible: true, numel: 140002 }));
    expect(u).toEqual([0, 32768, 65536, 70001, 102769, 135537, 140002]);
    expect(Array.from(addon!.protocolUnits('adamw', { outer: 1, channels: 2, inner: 70001, eligible: true, numel: 140002 })))
      .toEqual([0, 32768, 65536, 98304, 131072, 140002]);
  });

  test('shards, partials and records that do not fit are refused with a message', () => {
    const h = wire('sgdp', randomHyper('sgdp', rng(1)));
    const geo = { outer: 5000, channels: 12, inner: 1, eligible: true, numel: 60000 };
    const shard = (offset: number, n: number) => ({ p: new Float32Array(n), g: new Float32Array(n), state: [new Float32Array(n)], outer: 5000, channels: 12, inner: 1, eligible: true, step: 1, offset, numel: 60000 });
    const code = { code: 'ERR_ADAMP_INVALID_ARGUMENT' };
    expect(() => addon!.protocolStats('sgdp', shard(0, 100), h, 0, 1)).toThrow(expect.objectContaining({ ...code, name: 'RangeError', message: expect.stringContaining('units [0, 1) are elements [0, 24576)') }));
    expect(() => addon!.protocolStats('sgdp', shard(1, 24576), h, 0, 1)).toThrow(expect.objectContaining({ ...code, message: expect.stringContaining('offset must be where unit u0 starts') }));
    expect(() => addon!.protocolStats('sgdp', shard(0, 0), h, 0, 9)).toThrow(expect.objectContaining({ ...code, message: expect.stringContaining('the tensor has 3 units') }));
    expect(() => addon!.protocolDecide('sgdp', geo, h, new Float64Array(5))).toThrow(expect.objectContaining({ ...code, message: expect.stringContaining('partials has 5 values, this tensor\'s units give 144') }));
    const decision = addon!.protocolDecide('sgdp', geo, h, new Float64Array(144));
    const bad = decision.slice(0, 11);
    expect(() => addon!.protocolApply('sgdp', shard(0, 24576), h, bad, 0, 1, true)).toThrow(expect.objectContaining({ ...code, message: expect.stringContaining('protocolApply: decision:') }));
    expect(() => addon!.protocolApply('sgdp', shard(0, 24576), h, decision, 0, 1, 1 as never)).toThrow(expect.objectContaining({ ...code, name: 'TypeError', message: 'protocolApply: norms must be a boolean' }));
    expect(() => addon!.protocolFinish('sgdp', geo, decision, new Float64Array(8), new Float64Array(8), 0)).toThrow(expect.objectContaining({ ...code, message: expect.stringContaining('norms has 8 values, needs 9') }));
    expect(() => addon!.protocolFinish('sgdp', geo, decision, new Float64Array(9), new Float64Array(8), 1)).toThrow(expect.objectContaining({ ...code, message: expect.stringContaining('needs 8 at 1') }));
    expect(() => addon!.protocolUnits('sgdp', { ...geo, numel: 5 })).toThrow(expect.objectContaining({ ...code, message: expect.stringContaining('does not match numel = 5') }));
    const info = new Float64Array(16);
    addon!.protocolFinish('sgdp', geo, decision, new Float64Array(9), info, 8);
    expect(info[8]).toBe(DEC.channel);
  });
});

// ------------------------------------------------------------------------------------------------

d('async', () => {
  const h: AdamPH = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, delta: 0.1, wdRatio: 0.1, nesterov: false };

  test('stepAsync gives the same bits as the synchronous step, for several groups of different optimizers', async () => {
    const r = rng(9);
    const { slots: a } = makeSlots(r, [...SHAPES, ...BIG_SHAPES], 'adamp');
    const { slots: c } = makeSlots(r, [...SHAPES, BIG_SHAPES[1]], 'sgd');
    const b = cloneSlots(a), e = cloneSlots(c);
    const ia = new Float64Array(a.length * 8), ib = new Float64Array(b.length * 8), ic = new Float64Array(c.length * 8), ie = new Float64Array(e.length * 8);
    const eng = new NativeEngine(addon!, { threads: 2 });
    const sgd: SGDH = { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: true };
    await eng.stepAsync([job('adamp', a, h, ia), job('sgd', c, sgd, ic)], { norms: true });
    eng.step(job('adamp', b, h, ib), { norms: true });
    eng.step(job('sgd', e, sgd, ie), { norms: true });
    bitwise({ slots: a, info: ia }, { slots: b, info: ib }, 'async adamp');
    bitwise({ slots: c, info: ic }, { slots: e, info: ie }, 'async sgd');
  });

  test('the JavaScript thread stays responsive during an async step', async () => {
    const n = 1_000_000;
    const wave = (k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + k));
    const slots: Slot[] = Array.from({ length: 4 }, (_, k) => ({
      p: wave(k), g: wave(k + 10), state: [new Float32Array(n), new Float32Array(n)], outer: 1, channels: 1000, inner: n / 1000, eligible: true, step: 1,
    }));
    const info = new Float64Array(slots.length * 8);
    const eng = new NativeEngine(addon!, { threads: 1 });
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 1);
    const t0 = Date.now();
    for (let t = 1; t <= 3; t++) {
      for (const s of slots) s.step = t;
      await eng.stepAsync([job('adamp', slots, h, info)], { norms: true });
    }
    const elapsed = Date.now() - t0;
    clearInterval(timer);
    // the timer fires while the steps run (a synchronous step would block it completely)
    expect(ticks).toBeGreaterThanOrEqual(Math.min(3, Math.floor(elapsed / 20)));
    expect(ticks).toBeGreaterThan(0);
    expect(info[F.normSqAfter]).toBeGreaterThan(0);
  });

  test('bad arguments reject before anything runs; detached buffers are refused', async () => {
    const r = rng(4);
    const { slots } = makeSlots(r, [{ shape: [8, 8], axis: 0 }], 'adamp');
    const before = slots[0].p.slice();
    const eng = new NativeEngine(addon!, { threads: 1 });
    const good = job('adamp', slots, h, new Float64Array(8));
    const bad = job('adamp', [{ ...slots[0], g: new Float32Array(3) }], h, new Float64Array(8));
    // the engine hands the addon's RangeError/TypeError on as an AdampError with its code and message
    await expect(eng.stepAsync([good, bad], { norms: true })).rejects.toMatchObject({
      name: 'AdampError', code: 'ERR_ADAMP_INVALID_ARGUMENT', cause: expect.objectContaining({ name: 'RangeError' }), message: expect.stringContaining('stepAsync: jobs[1]: slots[0].g has 3 elements but p has 64'),
    });
    const detached = new Float32Array(64);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    await expect(eng.stepAsync([job('adamp', [{ ...slots[0], state: [slots[0].state[0], detached] }], h, new Float64Array(8))], { norms: true }))
      .rejects.toMatchObject({ name: 'AdampError', code: 'ERR_ADAMP_INVALID_ARGUMENT', message: expect.stringContaining('slots[0].state[1] is backed by a detached ArrayBuffer') });
    expect(slots[0].p).toEqual(before);
  });

  test('resizable buffers are refused by stepAsync with an AdampError (the synchronous step accepts them)', async () => {
    const n = 16;
    const buf = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(n * 4, { maxByteLength: n * 8 });
    const slot: Slot = { p: new Float32Array(n).fill(1), g: new Float32Array(n).fill(1), state: [new Float32Array(n), new Float32Array(buf)], outer: 1, channels: 4, inner: 4, eligible: true, step: 1 };
    const eng = new NativeEngine(addon!, { threads: 1 });
    await expect(eng.stepAsync([job('adamp', [slot], h, new Float64Array(8))], { norms: true }))
      .rejects.toMatchObject({ name: 'AdampError', code: 'ERR_ADAMP_INVALID_ARGUMENT', message: expect.stringContaining('jobs[0].slots[0].state[1] is backed by a resizable ArrayBuffer') });
    expect(slot.p[0]).toBe(1);
    eng.step(job('adamp', [slot], h, new Float64Array(8)), { norms: true });
    expect(slot.p[0]).not.toBe(1);
  });

  test('an array "transferred" while the step runs is copied instead: the step keeps its memory, whatever the copy\'s fate', async () => {
    const n = 4_000_000;
    const mk = (): Slot => ({ p: new Float32Array(n).fill(0.5), g: new Float32Array(n).fill(1), state: [new Float32Array(n), new Float32Array(n)], outer: 1, channels: 4, inner: n / 4, eligible: true, step: 1 });
    const slot = mk(), ref = mk();
    const eng = new NativeEngine(addon!, { threads: 1 });
    const pending = eng.stepAsync([job('adamp', [slot], h, new Float64Array(8))], { norms: true });
    const gbuf = slot.g.buffer as ArrayBuffer;
    let moved: ArrayBuffer | null = structuredClone(gbuf, { transfer: [gbuf] });
    expect(slot.g.byteLength).toBe(n * 4); // not detached: the buffer was marked untransferable
    expect(moved.byteLength).toBe(n * 4);
    moved = null; // the copy may be collected; the step's memory is not it
    for (let i = 0; i < 40; i++) new Float32Array(1 << 20);
    await pending;
    eng.step(job('adamp', [ref], h, new Float64Array(8)), { norms: true });
    expect(Buffer.compare(Buffer.from(slot.p.buffer), Buffer.from(ref.p.buffer))).toBe(0);
  });
});

// ------------------------------------------------------------------------------------------------

d('addon argument checks (never a crash)', () => {
  const H = wire('adamp', { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: false });
  const slot = (): AddonSlot & { p: Float32Array; g: Float32Array } => ({ p: new Float32Array(12), g: new Float32Array(12), state: [new Float32Array(12), new Float32Array(12)], outer: 1, channels: 3, inner: 4, eligible: true, step: 1 });
  const info = () => new Float64Array(8);
  const step = (slots: unknown, hyper: unknown = H, inf: unknown = info(), options?: unknown, kind: unknown = 'adamp') =>
    addon!.step(kind as string, slots as AddonSlot[], hyper as Float64Array, inf as Float64Array, options as never);
  const cases: Array<[string, () => void, string, string]> = [
    ['unknown kind', () => step([slot()], H, info(), undefined, 'adam'), 'TypeError', "step: kind must be one of 'adamp', 'sgdp', 'adamw', 'sgd'"],
    ['slots not an array', () => step({}), 'TypeError', 'step: slots must be an array'],
    ['slot not an object', () => step([3]), 'TypeError', 'step: slots[0] must be an object'],
    ['p not a Float32Array', () => step([{ ...slot(), p: new Float64Array(12) }]), 'TypeError', 'step: slots[0].p must be a Float32Array'],
    ['state not an array', () => step([{ ...slot(), state: new Float32Array(12) }]), 'TypeError', 'step: slots[0].state must be an array of 2 Float32Array'],
    ['state count', () => step([{ ...slot(), state: [new Float32Array(12)] }]), 'RangeError', 'step: slots[0].state has 1 arrays; adamp keeps 2'],
    ['state length', () => step([{ ...slot(), state: [new Float32Array(12), new Float32Array(11)] }]), 'RangeError', 'slots[0].state[1] has 11 elements but p has 12'],
    ['geometry mismatch', () => step([{ ...slot(), channels: 5 }]), 'RangeError', 'outer * channels * inner = 20 does not match p.length = 12'],
    ['negative geometry', () => step([{ ...slot(), inner: -4 }]), 'RangeError', 'slots[0].inner must be a non-negative integer'],
    ['aliased arrays', () => { const s = slot(); step([{ ...s, state: [s.p, s.state[1]] }]); }, 'RangeError', 'p and state[0] overlap'],
    ['overlapping views', () => { const b = new Float32Array(30); step([{ ...slot(), g: b.subarray(0, 12), state: [b.subarray(10, 22), new Float32Array(12)] }]); }, 'RangeError', 'g and state[0] overlap'],
    ['hyper not a Float64Array', () => step([slot()], [1, 2, 3]), 'TypeError', 'step: hyper must be a Float64Array'],
    ['hyper length', () => step([slot()], new Float64Array(5)), 'RangeError', 'step: hyper has 5 values; adamp takes 8 (lr, beta1, beta2, eps, weightDecay, delta, wdRatio, nesterov)'],
    ['hyper out of range', () => step([slot()], Float64Array.of(1e-3, 1, 0.999, 1e-8, 0, 0.1, 0.1, 0)), 'RangeError', 'step: hyper[1] (beta1) must be in [0, 1) (got 1)'],
    ['hyper NaN', () => step([slot()], Float64Array.of(NaN, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 0)), 'RangeError', 'step: hyper[0] (lr) must be finite and >= 0 (got NaN)'],
    ['sgd nesterov without momentum', () => step([{ ...slot(), state: [new Float32Array(12)] }], Float64Array.of(0.1, 0, 0, 0, 1), info(), undefined, 'sgd'), 'RangeError', 'hyper[4] (nesterov) needs momentum > 0 and dampening 0'],
    ['info too short', () => step([slot(), slot()]), 'RangeError', 'step: info has 8 elements, needs 16'],
    ['info wrong type', () => step([slot()], H, new Float32Array(8)), 'TypeError', 'step: info must be a Float64Array'],
    ['bad step', () => step([{ ...slot(), step: 0 }]), 'RangeError', 'slots[0].step must be an integer >= 1'],
    ['step not finite', () => step([{ ...slot(), step: Infinity }]), 'RangeError', 'slots[0].step must be an integer >= 1'],
    ['bad threads', () => step([slot()], H, info(), { threads: 1.5 }), 'RangeError', 'step: options.threads must be an integer in [0, 256]'],
    ['bad norms', () => step([slot()], H, info(), { norms: 'yes' }), 'TypeError', 'step: options.norms must be a boolean'],
    ['options not an object', () => step([slot()], H, info(), 3), 'TypeError', 'step: options must be an object'],
    ['stepAsync jobs', () => { void addon!.stepAsync({} as never); }, 'TypeError', 'stepAsync: jobs must be an array'],
    ['stepAsync hyper', () => { void addon!.stepAsync([{ kind: 'adamw', slots: [], hyper: H, info: info() }]); }, 'RangeError', 'stepAsync: jobs[0]: hyper has 8 values; adamw takes 5'],
    ['bad simd', () => addon!.setSimd('sse' as never), 'TypeError', "setSimd: level must be 'auto', 'avx2' or 'portable'"],
    ['bad speculation', () => addon!.setSpeculation(true as never), 'TypeError', "setSpeculation: mode must be 'on' or 'off'"],
  ];
  test.each(cases)('%s', (_what, fn, name, msg) => {
    let err: unknown;
    try { fn(); } catch (e) { err = e; }
    expect(err).toBeDefined();
    expect((err as Error).name).toBe(name);
    expect((err as { code?: string }).code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect((err as Error).message).toContain(msg);
  });

  test('NativeEngine hands every failure of the addon on as an AdampError with a code, the original as cause', async () => {
    const failing = (e: unknown): Addon => ({ ...addon!, step: () => { throw e; }, stepAsync: () => { throw e; } }) as Addon;
    const job = { spec: spec('adamp'), slots: [slot()], hyper: H, info: info() } as unknown as StepJob;
    const cases: Array<[unknown, string, RegExp]> = [
      [Object.assign(new RangeError('step: bad'), { code: 'ERR_ADAMP_INVALID_ARGUMENT' }), 'ERR_ADAMP_INVALID_ARGUMENT', /^step: bad$/],
      [Object.assign(new Error('no memory'), { code: 'ERR_ADAMP_NATIVE' }), 'ERR_ADAMP_NATIVE', /^no memory$/],
      // without one of the addon's codes (an N-API failure): ERR_ADAMP_NATIVE, the message kept
      [new Error('napi_create_reference failed'), 'ERR_ADAMP_NATIVE', /the native addon failed: napi_create_reference failed/],
      [Object.assign(new Error('x'), { code: 'EPERM' }), 'ERR_ADAMP_NATIVE', /the native addon failed: x/],
      ['a string', 'ERR_ADAMP_NATIVE', /the native addon failed: a string/],
    ];
    for (const [thrown, code, message] of cases) {
      const engine = new NativeEngine(failing(thrown));
      let err: unknown;
      try { engine.step(job, { norms: true }); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(AdampError);
      expect((err as AdampError).code).toBe(code);
      expect((err as Error).message).toMatch(message);
      expect((err as { cause?: unknown }).cause).toBe(thrown);
      const rejected = await engine.stepAsync([job], { norms: true }).then(() => undefined, (e: unknown) => e);
      expect(rejected).toBeInstanceOf(AdampError);
      expect((rejected as AdampError).code).toBe(code);
      expect((rejected as { cause?: unknown }).cause).toBe(thrown);
    }
  });

  test('nothing is changed when a later slot is invalid', () => {
    const a = slot();
    a.p.fill(1);
    a.g.fill(1);
    expect(() => step([a, { ...slot(), step: -1 }], H, new Float64Array(16))).toThrow(/slots\[1\]\.step/);
    expect(a.p[0]).toBe(1);
  });

  test('empty tensors and an empty slot list are fine', () => {
    const inf = new Float64Array(16);
    step([], H, inf);
    const e: AddonSlot = { p: new Float32Array(0), g: new Float32Array(0), state: [new Float32Array(0), new Float32Array(0)], outer: 1, channels: 0, inner: 0, eligible: true, step: 1 };
    step([e, { ...e, eligible: false, channels: 1 }], H, inf);
    expect(inf[8 + F.decision]).toBe(DEC.notEligible);
    expect(inf[8 + F.normSqAfter]).toBe(0);
  });
});

d('addon info, kinds and worker threads', () => {
  test('info() describes the build', () => {
    const i = addon!.info();
    expect(i.version).toBe(require('../package.json').version);
    expect(['avx2', 'portable']).toContain(i.simd);
    expect(i.hardwareThreads).toBeGreaterThanOrEqual(1);
    expect(typeof i.cuda).toBe('boolean');
    expect(i.napiVersion).toBeGreaterThanOrEqual(8);
  });

  test('kinds() lists the C++ registry: names, state slots, hyperparameters in wire order', () => {
    expect(addon!.kinds()).toEqual([
      { name: 'adamp', slots: 2, hyper: ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'delta', 'wdRatio', 'nesterov'], projects: true },
      { name: 'sgdp', slots: 1, hyper: ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov', 'eps', 'delta', 'wdRatio'], projects: true },
      { name: 'adamw', slots: 2, hyper: ['lr', 'beta1', 'beta2', 'eps', 'weightDecay'], projects: false },
      { name: 'sgd', slots: 1, hyper: ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov'], projects: false },
    ]);
  });

  test('the addon loads and steps in a worker thread', async () => {
    const file = 'addon' in loaded ? loaded.path : path.resolve(__dirname, '..', 'build', 'Release', 'adamp.node');
    const script = `
      const { parentPort, workerData } = require('node:worker_threads');
      const a = require(workerData.file);
      const p = new Float32Array([1, 2, 3, 4]), g = new Float32Array([0.5, -1, 0.25, 2]);
      const info = new Float64Array(8);
      a.step('adamp', [{ p, g, state: [new Float32Array(4), new Float32Array(4)], outer: 1, channels: 2, inner: 2, eligible: true, step: 1 }],
        Float64Array.of(0.1, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 0), info, { threads: 1 });
      parentPort.postMessage({ p: Array.from(p), decision: info[0] });`;
    const result = await new Promise<{ p: number[]; decision: number }>((resolve, reject) => {
      const w = new Worker(script, { eval: true, workerData: { file } });
      w.once('message', resolve);
      w.once('error', reject);
    });
    const s: Slot = { p: new Float32Array([1, 2, 3, 4]), g: new Float32Array([0.5, -1, 0.25, 2]), state: [new Float32Array(4), new Float32Array(4)], outer: 1, channels: 2, inner: 2, eligible: true, step: 1 };
    const h: AdamPH = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: false };
    expect(result.decision).toBe(reference('adamp', s, h));
    for (let i = 0; i < 4; i++) expect(Math.abs(result.p[i] - s.p[i])).toBeLessThanOrEqual(1e-6 * 4);
  });
});
