/**
 * The native engine against the TypeScript engine, at the engine level (slots, scalars, info
 * record), on every channel layout the C++ core schedules differently: rows (axis 0), rows with
 * outer > 1 (a middle axis), channels innermost (TensorFlow.js, inner == 1), rows longer than a
 * task (split into pieces). Plus: bit-identical results for every thread count and both kernel
 * sets, async stepping, and the addon's argument checks.
 */
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import { Decision, Info, INFO_STRIDE } from '../lib/backends/engine';
import type { AdamPScalars, SGDPScalars, Slot } from '../lib/backends/engine';
import { JsEngine } from '../lib/backends/js/engine';
import { NativeEngine } from '../lib/backends/native/engine';
import { loadAddon } from '../lib/binding/load';
import type { Addon } from '../lib/binding/types';
import { randn, rng } from './helpers/random';

const loaded = loadAddon();
const addon: Addon | undefined = 'addon' in loaded ? loaded.addon : undefined;
if (!addon) {
  // eslint-disable-next-line no-console
  console.warn(`native-engine tests skipped: the addon did not load:\n  ${'errors' in loaded ? loaded.errors.join('\n  ') : ''}`);
  test.skip('the native addon is not built (npm run build:native)', () => {});
}
const d = addon ? describe : describe.skip;

// ------------------------------------------------------------------------------------------------
// Data

interface Geometry { shape: number[]; axis: number }

function geometry({ shape, axis }: Geometry): { outer: number; channels: number; inner: number; eligible: boolean } {
  const n = shape.reduce((a, b) => a * b, 1);
  if (shape.length <= 1) return { outer: 1, channels: 1, inner: n, eligible: false };
  const ax = axis < 0 ? shape.length + axis : axis;
  const outer = shape.slice(0, ax).reduce((a, b) => a * b, 1);
  const inner = shape.slice(ax + 1).reduce((a, b) => a * b, 1);
  return { outer, channels: shape[ax], inner, eligible: true };
}

/** Element i of a tensor with this geometry belongs to channel floor(i / inner) % channels. */
function channelOf(i: number, channels: number, inner: number): number {
  return Math.floor(i / inner) % channels;
}

type GradKind = 'random' | 'channel' | 'layer' | 'parallel' | 'zero' | 'tiny' | 'nan' | 'zeroRow';
const GRAD_KINDS: GradKind[] = ['random', 'channel', 'layer', 'parallel', 'zero', 'tiny', 'nan', 'zeroRow'];

function makeGrad(r: () => number, p: Float32Array, channels: number, inner: number, kind: GradKind): Float32Array {
  const n = p.length;
  const g = randn(r, n);
  switch (kind) {
    case 'zero': return new Float32Array(n);
    case 'parallel': return p.map((x) => x * 0.5);
    case 'tiny': return g.map((x) => x * 1e-10);
    case 'nan': g[Math.floor(r() * n)] = NaN; return g;
    case 'random': case 'zeroRow': return g;
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

interface Case { slots: Slot[]; kinds: GradKind[] }

function makeCase(r: () => number, geos: Geometry[], kind: 'adamp' | 'sgdp'): Case {
  const slots: Slot[] = [];
  const kinds: GradKind[] = [];
  for (const geo of geos) {
    const gm = geometry(geo);
    const n = gm.outer * gm.channels * gm.inner;
    const e = r();
    const p = e < 0.05 ? new Float32Array(n) : e < 0.1 ? randn(r, n, 1e-9) : e < 0.12 ? randn(r, n, 1e20) : randn(r, n);
    const gk = GRAD_KINDS[Math.floor(r() * GRAD_KINDS.length)];
    if (gk === 'zeroRow') for (let i = 0; i < n; i++) if (channelOf(i, gm.channels, gm.inner) === 0) p[i] = 0;
    slots.push({ p, g: makeGrad(r, p, gm.channels, gm.inner, gk), m: new Float32Array(n), v: kind === 'adamp' ? new Float32Array(n) : new Float32Array(0), ...gm, step: 1 });
    kinds.push(gk);
  }
  return { slots, kinds };
}

function cloneSlots(slots: readonly Slot[]): Slot[] {
  return slots.map((s) => ({ ...s, p: s.p.slice(), g: s.g.slice(), m: s.m.slice(), v: s.v.slice() }));
}

function adampHp(r: () => number): AdamPScalars {
  return {
    lr: r() < 0.5 ? 1e-3 : 0.05 * r(), beta1: r() < 0.7 ? 0.9 : 0.8, beta2: r() < 0.7 ? 0.999 : 0.99,
    eps: r() < 0.8 ? 1e-8 : r() < 0.5 ? 1e-6 : 0, weightDecay: [0, 0.01, 0.1, -0.1][Math.floor(r() * 4)],
    delta: r() < 0.7 ? 0.1 : 0.5, wdRatio: r() < 0.7 ? 0.1 : 0.3, nesterov: r() < 0.5,
  };
}

function sgdpHp(r: () => number): SGDPScalars {
  return {
    lr: 0.1 * r() + 1e-3, momentum: r() < 0.2 ? 0 : 0.9, dampening: r() < 0.3 ? 0.1 : 0,
    weightDecay: [0, 1e-3, 1e-2, -1e-3][Math.floor(r() * 4)], nesterov: r() < 0.5,
    eps: r() < 0.8 ? 1e-8 : 1e-6, delta: r() < 0.7 ? 0.1 : 0.5, wdRatio: r() < 0.7 ? 0.1 : 0.3,
  };
}

// ------------------------------------------------------------------------------------------------
// Comparison

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) if (Number.isFinite(a[i]) && Math.abs(a[i]) > m) m = Math.abs(a[i]);
  return m;
}

/**
 * |a-b| <= 1e-6 * max(max|b|, floorScale) per tensor; NaN and infinities must match exactly.
 * floorScale: the pre-projection magnitude of a projected SGDP buffer (SPEC.md s6: where the
 * projection removes almost all of it, what is left is rounding noise of that magnitude).
 */
function expectClose(a: Float32Array, b: Float32Array, where: string, floorScale = 0): void {
  expect(a.length).toBe(b.length);
  const tol = 1e-6 * Math.max(maxAbs(b), floorScale);
  for (let i = 0; i < a.length; i++) {
    if (Number.isFinite(b[i])) {
      if (!(Math.abs(a[i] - b[i]) <= tol)) throw new Error(`${where}: element ${i}: native ${a[i]} vs js ${b[i]} (tolerance ${tol})`);
    } else if (!Object.is(a[i], b[i]) && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) {
      throw new Error(`${where}: element ${i}: native ${a[i]} vs js ${b[i]}`);
    }
  }
}

function expectInfoClose(a: Float64Array, b: Float64Array, k: number, where: string): void {
  const o = k * INFO_STRIDE;
  const dec = (x: number) => ['none', 'channel', 'layer', 'notEligible'][x];
  if (a[o + Info.decision] !== b[o + Info.decision]) {
    throw new Error(`${where}: decision native ${dec(a[o])} vs js ${dec(b[o])} (channel cos ${a[o + 1]} / ${b[o + 1]}, thr ${b[o + 2]}; layer cos ${a[o + 3]} / ${b[o + 3]}, thr ${b[o + 4]})`);
  }
  for (const f of [Info.channelThreshold, Info.layerThreshold]) expect(Object.is(a[o + f], b[o + f]) || a[o + f] === b[o + f]).toBe(true);
  for (const f of [Info.channelMaxCos, Info.layerCos, Info.normSqBefore, Info.normSqAfter, Info.deltaSq]) {
    const x = a[o + f], y = b[o + f];
    if (Number.isNaN(y)) { expect(Number.isNaN(x)).toBe(true); continue; }
    // The native core sums float32 products in 16-term float lanes folded in double: a dot
    // product's error is below 9.6e-7 * ||x|| ||y||, so a cos near 0 carries up to ~1e-6 absolute.
    const floor = f === Info.channelMaxCos || f === Info.layerCos ? 1e-6 : 1e-30;
    if (!(Math.abs(x - y) <= 1e-5 * Math.abs(y) + floor) && !(x === y)) throw new Error(`${where}: info field ${f}: native ${x} vs js ${y}`);
  }
}

// Shapes covering every layout of the C++ scheduler (see native/cpu/step.cpp).
const SHAPES: Geometry[] = [
  { shape: [128], axis: 0 }, { shape: [], axis: 0 }, { shape: [7], axis: 0 },
  { shape: [10, 20], axis: 0 }, { shape: [64, 3, 3, 3], axis: 0 }, { shape: [256, 128, 1, 1], axis: 0 },
  { shape: [1, 16], axis: 0 }, { shape: [10, 1], axis: 0 }, { shape: [3, 3, 8, 16], axis: -1 },
  { shape: [5, 13], axis: -1 }, { shape: [4, 6, 5], axis: 1 }, { shape: [3, 9, 2], axis: 1 },
  { shape: [2, 3, 3, 33], axis: -1 }, { shape: [17, 9], axis: 0 }, { shape: [1, 1], axis: 0 },
];
const BIG_SHAPES: Geometry[] = [
  { shape: [2, 70001], axis: 0 }, // rows longer than a task: pieces
  { shape: [20000, 3], axis: -1 }, // channels innermost, many rows
  { shape: [3, 40001], axis: -1 }, // channels innermost, many channels
  { shape: [8, 300, 30], axis: 1 }, // middle axis, outer > 1
  { shape: [300000], axis: 0 }, // not eligible, several blocks
];

d('NativeEngine agrees with JsEngine', () => {
  const native = () => new NativeEngine(addon!, { threads: 2 });

  test.each(['adamp', 'sgdp'] as const)('%s: 50 random cases x 3 steps, every layout and SPEC s8 edge case', (kind) => {
    const counts = { channel: 0, layer: 0, none: 0, notEligible: 0 };
    for (let seed = 1; seed <= 50; seed++) {
      const r = rng(seed * 1009 + (kind === 'adamp' ? 0 : 7));
      const geos = Array.from({ length: 1 + Math.floor(r() * 5) }, () => SHAPES[Math.floor(r() * SHAPES.length)]);
      if (seed % 10 === 0) geos.push(BIG_SHAPES[(seed / 10) % BIG_SHAPES.length]);
      const { slots: a, kinds } = makeCase(r, geos, kind);
      const b = cloneSlots(a);
      const hpA = kind === 'adamp' ? adampHp(r) : undefined;
      const hpS = kind === 'sgdp' ? sgdpHp(r) : undefined;
      const js = new JsEngine(), nat = native();
      for (let t = 1; t <= 3; t++) {
        for (const s of [...a, ...b]) s.step = t;
        if (t > 1) {
          // fresh gradients for later steps, the same for both
          const gr = rng(seed * 31 + t);
          a.forEach((s, k) => { const g = makeGrad(gr, s.p, s.channels, s.inner, kinds[k]); s.g = g; b[k].g = g.slice(); });
        }
        const ia = new Float64Array(a.length * INFO_STRIDE), ib = new Float64Array(b.length * INFO_STRIDE);
        // SGDP's buffer before its projection is momentum * old buffer + (1 - dampening) * g.
        const pre = b.map((s) => (kind === 'sgdp' ? hpS!.momentum * maxAbs(s.m) + maxAbs(s.g) : 0));
        if (kind === 'adamp') { nat.stepAdamP(a, hpA!, ia); js.stepAdamP(b, hpA!, ib); }
        else { nat.stepSGDP(a, hpS!, ia); js.stepSGDP(b, hpS!, ib); }
        for (let k = 0; k < a.length; k++) {
          const where = `${kind} seed ${seed} step ${t} slot ${k} shape [${geos[k].shape}] axis ${geos[k].axis} grad ${kinds[k]} hp ${JSON.stringify(hpA ?? hpS)}`;
          expectInfoClose(ia, ib, k, where);
          expectClose(a[k].p, b[k].p, `${where}: p`);
          expectClose(a[k].m, b[k].m, `${where}: m`, pre[k]);
          if (kind === 'adamp') expectClose(a[k].v, b[k].v, `${where}: v`);
          const dec = ia[k * INFO_STRIDE];
          if (dec === Decision.channel) counts.channel++;
          else if (dec === Decision.layer) counts.layer++;
          else if (dec === Decision.none) counts.none++;
          else counts.notEligible++;
        }
      }
    }
    // the random cases must exercise every decision
    expect(counts.channel).toBeGreaterThan(10);
    expect(counts.layer).toBeGreaterThan(10);
    expect(counts.none).toBeGreaterThan(10);
    expect(counts.notEligible).toBeGreaterThan(10);
  });

  test('SGDP without Nesterov writes the projected update into the buffer; with Nesterov it does not', () => {
    for (const nesterov of [false, true]) {
      const r = rng(5);
      const { slots: a } = makeCase(r, [{ shape: [16, 32], axis: 0 }], 'sgdp');
      a[0].g = makeGrad(r, a[0].p, 16, 32, 'channel');
      const b = cloneSlots(a);
      const hp: SGDPScalars = { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov, eps: 1e-8, delta: 0.1, wdRatio: 0.1 };
      const ia = new Float64Array(8), ib = new Float64Array(8);
      native().stepSGDP(a, hp, ia);
      new JsEngine().stepSGDP(b, hp, ib);
      expect(ia[Info.decision]).toBe(Decision.channel);
      expectClose(a[0].m, b[0].m, 'buffer');
      // the buffer equals the gradient only when it was not projected
      const same = a[0].m.every((x, i) => x === a[0].g[i]);
      expect(same).toBe(nesterov);
    }
  });
});

d('determinism', () => {
  const made: Partial<Record<'adamp' | 'sgdp', Slot[]>> = {};
  function bigCase(kind: 'adamp' | 'sgdp'): { slots: Slot[] } {
    if (!made[kind]) {
      const r = rng(42);
      const geos = [...BIG_SHAPES, { shape: [64, 64, 3, 3], axis: 0 }, { shape: [512], axis: 0 }, { shape: [3, 3, 64, 64], axis: -1 }];
      made[kind] = makeCase(r, geos, kind).slots.map((s) => ({ ...s, g: randn(r, s.p.length) }));
    }
    return { slots: cloneSlots(made[kind]!) };
  }
  function run(kind: 'adamp' | 'sgdp', threads: number, simd: 'avx2' | 'portable' | 'auto' = 'auto'): { slots: Slot[]; info: Float64Array } {
    addon!.setSimd(simd);
    try {
      const { slots } = bigCase(kind);
      const info = new Float64Array(slots.length * INFO_STRIDE);
      const eng = new NativeEngine(addon!, { threads });
      for (let t = 1; t <= 2; t++) {
        for (const s of slots) s.step = t;
        if (kind === 'adamp') eng.stepAdamP(slots, { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, delta: 0.1, wdRatio: 0.1, nesterov: t === 2 }, info);
        else eng.stepSGDP(slots, { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov: false, eps: 1e-8, delta: 0.1, wdRatio: 0.1 }, info);
      }
      return { slots, info };
    } finally {
      addon!.setSimd('auto');
    }
  }
  function expectBitwise(x: { slots: Slot[]; info: Float64Array }, y: { slots: Slot[]; info: Float64Array }, what: string): void {
    for (let k = 0; k < x.slots.length; k++) {
      for (const f of ['p', 'm', 'v'] as const) {
        const a = new Uint32Array(x.slots[k][f].buffer), b = new Uint32Array(y.slots[k][f].buffer);
        let diff = -1;
        for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) { diff = i; break; }
        if (diff >= 0) throw new Error(`${what}: slot ${k} ${f}[${diff}] differs`);
      }
    }
    expect(Buffer.from(x.info.buffer).equals(Buffer.from(y.info.buffer))).toBe(true);
  }

  test.each(['adamp', 'sgdp'] as const)('%s: bit-identical for 1, 2, 3 and 8 threads', (kind) => {
    const one = run(kind, 1);
    for (const t of [2, 3, 8]) expectBitwise(one, run(kind, t), `${t} threads vs 1`);
  });

  test.each(['adamp', 'sgdp'] as const)('%s: AVX2 and portable kernels are bit-identical', (kind) => {
    if (!addon!.info().avx2) {
      // eslint-disable-next-line no-console
      console.warn('AVX2 not available on this CPU/build: only the portable kernels can run');
      return;
    }
    expect(addon!.setSimd('portable')).toBe('portable');
    addon!.setSimd('auto');
    expectBitwise(run(kind, 2, 'avx2'), run(kind, 2, 'portable'), 'avx2 vs portable');
  });
});

d('async', () => {
  const hp: AdamPScalars = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, delta: 0.1, wdRatio: 0.1, nesterov: false };

  test('stepAsync gives the same bits as the synchronous step', async () => {
    const r = rng(9);
    const { slots: a } = makeCase(r, [...SHAPES, ...BIG_SHAPES], 'adamp');
    const b = cloneSlots(a);
    const ia = new Float64Array(a.length * 8), ib = new Float64Array(b.length * 8);
    const eng = new NativeEngine(addon!, { threads: 2 });
    await eng.stepAsync([{ kind: 'adamp', slots: a, hp, info: ia }]);
    eng.stepAdamP(b, hp, ib);
    for (let k = 0; k < a.length; k++) expect(a[k].p).toEqual(b[k].p);
    expect(Array.from(ia)).toEqual(Array.from(ib));
  });

  test('the JavaScript thread stays responsive during an async step', async () => {
    const n = 1_000_000;
    const wave = (k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + k));
    const slots: Slot[] = Array.from({ length: 4 }, (_, k) => ({
      p: wave(k), g: wave(k + 10), m: new Float32Array(n), v: new Float32Array(n), outer: 1, channels: 1000, inner: n / 1000, eligible: true, step: 1,
    }));
    const info = new Float64Array(slots.length * 8);
    const eng = new NativeEngine(addon!, { threads: 1 });
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 1);
    const t0 = Date.now();
    for (let t = 1; t <= 3; t++) {
      for (const s of slots) s.step = t;
      await eng.stepAsync([{ kind: 'adamp', slots, hp, info }]);
    }
    const elapsed = Date.now() - t0;
    clearInterval(timer);
    // the timer fires while the steps run (a synchronous step would block it completely)
    expect(ticks).toBeGreaterThanOrEqual(Math.min(3, Math.floor(elapsed / 20)));
    expect(ticks).toBeGreaterThan(0);
    expect(info[Info.normSqAfter]).toBeGreaterThan(0);
  });

  test('bad arguments reject before anything runs; detached buffers are refused', async () => {
    const r = rng(4);
    const { slots } = makeCase(r, [{ shape: [8, 8], axis: 0 }], 'adamp');
    const before = slots[0].p.slice();
    const eng = new NativeEngine(addon!, { threads: 1 });
    const bad = [{ ...slots[0], g: new Float32Array(3) }];
    await expect(eng.stepAsync([{ kind: 'adamp', slots: bad, hp, info: new Float64Array(8) }])).rejects.toMatchObject({ name: 'RangeError', message: expect.stringContaining('slots[0].g has 3 elements but p has 64') });
    const detached = new Float32Array(64);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    await expect(eng.stepAsync([{ kind: 'adamp', slots: [{ ...slots[0], m: detached }], hp, info: new Float64Array(8) }]))
      .rejects.toMatchObject({ name: 'TypeError', message: expect.stringContaining('slots[0].m is backed by a detached ArrayBuffer') });
    expect(slots[0].p).toEqual(before);
  });
});

d('async steps and buffer lifetime', () => {
  const hp: AdamPScalars = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: false };

  test('resizable buffers are refused by stepAsync (sync step() accepts them)', async () => {
    const n = 16;
    const buf = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(n * 4, { maxByteLength: n * 8 });
    const slot: Slot = { p: new Float32Array(buf), g: new Float32Array(n).fill(1), m: new Float32Array(n), v: new Float32Array(n), outer: 1, channels: 4, inner: 4, eligible: true, step: 1 };
    const eng = new NativeEngine(addon!, { threads: 1 });
    await expect(eng.stepAsync([{ kind: 'adamp', slots: [slot], hp, info: new Float64Array(8) }]))
      .rejects.toMatchObject({ name: 'RangeError', message: expect.stringContaining('slots[0].p is backed by a resizable ArrayBuffer') });
    eng.stepAdamP([slot], hp, new Float64Array(8));
    expect(slot.p[0]).not.toBe(0);
  });

  test('an array transferred away while the step runs rejects the promise with a code', async () => {
    const n = 4_000_000;
    const slot: Slot = { p: new Float32Array(n).fill(0.5), g: new Float32Array(n).fill(1), m: new Float32Array(n), v: new Float32Array(n), outer: 1, channels: 4, inner: n / 4, eligible: true, step: 1 };
    const eng = new NativeEngine(addon!, { threads: 1 });
    const pending = eng.stepAsync([{ kind: 'adamp', slots: [slot], hp, info: new Float64Array(8) }]);
    const gbuf = slot.g.buffer as ArrayBuffer;
    const moved = structuredClone(gbuf, { transfer: [gbuf] }); // keeps the memory alive
    await expect(pending).rejects.toMatchObject({ code: 'ERR_ADAMP_DETACHED_DURING_STEP' });
    expect(moved.byteLength).toBe(n * 4);
  });
});

d('addon argument checks (never a crash)', () => {
  const hp: AdamPScalars = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: false };
  const slot = (): Slot => ({ p: new Float32Array(12), g: new Float32Array(12), m: new Float32Array(12), v: new Float32Array(12), outer: 1, channels: 3, inner: 4, eligible: true, step: 1 });
  const cases: Array<[string, () => void, string, string]> = [
    ['slots not an array', () => addon!.adampStep({} as never, hp, new Float64Array(8)), 'TypeError', 'adampStep: slots must be an array'],
    ['p not a Float32Array', () => addon!.adampStep([{ ...slot(), p: new Float64Array(12) as never }], hp, new Float64Array(8)), 'TypeError', 'adampStep: slots[0].p must be a Float32Array'],
    ['geometry mismatch', () => addon!.adampStep([{ ...slot(), channels: 5 }], hp, new Float64Array(8)), 'RangeError', 'outer * channels * inner = 20 does not match p.length = 12'],
    ['negative geometry', () => addon!.adampStep([{ ...slot(), inner: -4 }], hp, new Float64Array(8)), 'RangeError', 'slots[0].inner must be a non-negative integer'],
    ['aliased arrays', () => { const s = slot(); addon!.adampStep([{ ...s, m: s.p }], hp, new Float64Array(8)); }, 'RangeError', 'must be distinct arrays'],
    ['missing hyperparameter', () => addon!.adampStep([slot()], { ...hp, beta2: undefined as never }, new Float64Array(8)), 'TypeError', 'adampStep: hp.beta2 must be a number'],
    ['info too short', () => addon!.adampStep([slot(), slot()], hp, new Float64Array(8)), 'RangeError', 'info has 8 elements, needs 16'],
    ['info wrong type', () => addon!.sgdpStep([slot()], { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, eps: 1e-8, delta: 0.1, wdRatio: 0.1 }, new Float32Array(8) as never), 'TypeError', 'sgdpStep: info must be a Float64Array'],
    ['bad step', () => addon!.adampStep([{ ...slot(), step: 0 }], hp, new Float64Array(8)), 'RangeError', 'slots[0].step must be an integer >= 1'],
    ['bad threads', () => addon!.adampStep([slot()], hp, new Float64Array(8), 1.5), 'RangeError', 'threads must be an integer in [0, 256]'],
    ['bad simd', () => addon!.setSimd('sse' as never), 'TypeError', "setSimd: level must be 'auto', 'avx2' or 'portable'"],
  ];
  test.each(cases)('%s', (_what, fn, name, msg) => {
    let err: unknown;
    try { fn(); } catch (e) { err = e; }
    expect(err).toBeDefined();
    expect((err as Error).name).toBe(name);
    expect((err as Error).message).toContain(msg);
  });

  test('empty tensors and an empty slot list are fine', () => {
    const info = new Float64Array(16);
    addon!.adampStep([], hp, info);
    const e = { p: new Float32Array(0), g: new Float32Array(0), m: new Float32Array(0), v: new Float32Array(0), outer: 1, channels: 0, inner: 0, eligible: true, step: 1 };
    const js = new Float64Array(16);
    addon!.adampStep([e, { ...e, eligible: false, channels: 1 }], hp, info);
    new JsEngine().stepAdamP([{ ...e }, { ...e, eligible: false, channels: 1 }], hp, js);
    expect(Array.from(info)).toEqual(Array.from(js));
  });
});

d('addon info, floors and worker threads', () => {
  test('info() describes the build', () => {
    const i = addon!.info();
    expect(i.version).toBe(require('../package.json').version);
    expect(['avx2', 'portable']).toContain(i.simd);
    expect(i.hardwareThreads).toBeGreaterThanOrEqual(1);
    expect(typeof i.cuda).toBe('boolean');
    expect(i.napiVersion).toBeGreaterThanOrEqual(8);
  });

  test('adamStep (one-pass AdamW floor) matches AdamP on a never-projected tensor', () => {
    const r = rng(11);
    const n = 1003;
    const p = randn(r, n), g = randn(r, n);
    const a = { p: p.slice(), g, m: new Float32Array(n), v: new Float32Array(n), outer: 1, channels: 1, inner: n, eligible: false, step: 1 };
    const b = { ...a, p: p.slice(), m: new Float32Array(n), v: new Float32Array(n) };
    addon!.adamStep([a], { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 });
    addon!.adampStep([b], { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, delta: 0.1, wdRatio: 0.1, nesterov: false }, new Float64Array(8));
    expect(a.p).toEqual(b.p);
    expect(a.v).toEqual(b.v);
  });

  test('sgdStep (one-pass SGD floor) follows torch.optim.SGD', () => {
    const r = rng(12);
    const n = 77;
    const p = randn(r, n), g = randn(r, n), m = randn(r, n);
    const s = { p: p.slice(), g, m: m.slice() };
    addon!.sgdStep([s], { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-2, nesterov: false });
    const f = Math.fround;
    for (let i = 0; i < n; i++) {
      const dp = f(g[i] + f(1e-2) * p[i]);
      const b = f(f(m[i] * f(0.9)) + dp);
      expect(s.m[i]).toBe(b);
      expect(s.p[i]).toBe(f(p[i] + f(-0.1) * b));
    }
  });

  test('the addon loads and steps in a worker thread', async () => {
    const file = 'addon' in loaded ? loaded.path : '';
    const script = `
      const { parentPort, workerData } = require('node:worker_threads');
      const a = require(workerData.file.startsWith('bindings:') ? workerData.fallback : workerData.file);
      const p = new Float32Array([1, 2, 3, 4]), g = new Float32Array([0.5, -1, 0.25, 2]);
      const info = new Float64Array(8);
      a.adampStep([{ p, g, m: new Float32Array(4), v: new Float32Array(4), outer: 1, channels: 2, inner: 2, eligible: true, step: 1 }],
        { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: false }, info, 1);
      parentPort.postMessage({ p: Array.from(p), decision: info[0] });`;
    const fallback = path.resolve(__dirname, '..', 'build', 'Release', 'adamp.node');
    const result = await new Promise<{ p: number[]; decision: number }>((resolve, reject) => {
      const w = new Worker(script, { eval: true, workerData: { file, fallback } });
      w.once('message', resolve);
      w.once('error', reject);
    });
    const p = new Float32Array([1, 2, 3, 4]);
    const info = new Float64Array(8);
    new JsEngine().stepAdamP([{ p, g: new Float32Array([0.5, -1, 0.25, 2]), m: new Float32Array(4), v: new Float32Array(4), outer: 1, channels: 2, inner: 2, eligible: true, step: 1 }],
      { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: false }, info);
    expect(result.decision).toBe(info[0]);
    for (let i = 0; i < 4; i++) expect(Math.abs(result.p[i] - p[i])).toBeLessThanOrEqual(1e-6 * 4);
  });
});
