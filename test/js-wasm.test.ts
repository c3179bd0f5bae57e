/**
 * The WebAssembly SIMD kernel of the js backend (lib/backends/js/wasm.ts, wasm/kernel.c) against
 * the pure TypeScript loops it replaces: params, state and every info field must be bit-identical
 * (NaN compared as NaN), on random shapes, options, chunkings and edge cases. Nothing is rebuilt
 * here (scripts/build-wasm.sh needs clang): the committed module is checked against its hash.
 */
import { createHash } from 'crypto';
import { AdamP, SGDP, backends } from '../lib/index';
import type { Param } from '../lib/index';
import { Decision, INFO_STRIDE } from '../lib/core/info';
import type { Slot } from '../lib/backends/engine';
import { adampJob, FULL, sgdpJob, type AdamPHp as AdamPScalars, type SGDPHp as SGDPScalars } from './helpers/jobs';
import { JsEngine } from '../lib/backends/js/engine';
import { adampSpec } from '../lib/optim/adamp';
import { DEFAULT_CHUNK, wasmKernel, wasmKernelFailure } from '../lib/backends/js/wasm';
import { KERNEL_WASM_BASE64, KERNEL_WASM_SHA256 } from '../lib/backends/js/wasm/kernel-wasm';
import { Rng } from '../cli/rng';
import { fixtureNames, loadFixture, toOptions } from './helpers/fixtures';

/** First index where a and b differ (NaN equals NaN, +0 differs from -0), or -1. */
function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i]) && !(a[i] !== a[i] && b[i] !== b[i])) return i;
  }
  return -1;
}

function expectSame(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  const i = firstDiff(a, b);
  if (i >= 0) throw new Error(`${what}: differs at ${i}: ${a[i]} (TypeScript) vs ${b[i]} (wasm), lengths ${a.length}/${b.length}`);
}

describe('the WebAssembly kernel', () => {
  test('is available on this runtime and used by default', () => {
    expect(wasmKernelFailure()).toBe('');
    expect(wasmKernel()).not.toBeNull();
    expect(new JsEngine({ wasm: true }).usesWasm).toBe(true);
    expect(new JsEngine({ wasm: false }).usesWasm).toBe(false);
    const saved = process.env.ADAMP_JS_WASM;
    try {
      process.env.ADAMP_JS_WASM = '0';
      expect(new JsEngine().usesWasm).toBe(false);
      delete process.env.ADAMP_JS_WASM;
      expect(new JsEngine().usesWasm).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.ADAMP_JS_WASM;
      else process.env.ADAMP_JS_WASM = saved;
    }
  });

  test("backends() says whether the js backend runs the kernel", () => {
    const js = (): string => backends().find((b) => b.name === 'js')!.reason;
    expect(js()).toBe('TypeScript with a WebAssembly SIMD kernel, single-threaded');
    const saved = process.env.ADAMP_JS_WASM;
    try {
      process.env.ADAMP_JS_WASM = '0';
      expect(js()).toBe('pure TypeScript, single-threaded (WebAssembly SIMD kernel not used: turned off by ADAMP_JS_WASM=0)');
    } finally {
      if (saved === undefined) delete process.env.ADAMP_JS_WASM;
      else process.env.ADAMP_JS_WASM = saved;
    }
  });

  test('the embedded module is the one its generated header names', () => {
    const bytes = Buffer.from(KERNEL_WASM_BASE64, 'base64');
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(KERNEL_WASM_SHA256);
  });
});

interface Case {
  algo: 'adamp' | 'sgdp';
  shape: number[];
  axisLast: boolean;
  chunk: number;
  /** Largest tensor kept whole in the kernel between the sweeps (0: every tensor streams twice). */
  whole: number;
  hpA: AdamPScalars;
  hpS: SGDPScalars;
  p: Float32Array;
  grads: Float32Array[];
}

/** A random case: shapes of 1-4 dims, either channel axis, gradients random, orthogonal per channel or to the whole tensor, zero, or with NaN/inf. */
function randomCase(rng: Rng): Case {
  const nd = 1 + rng.int(4);
  const shape = Array.from({ length: nd }, () => 1 + rng.int(nd === 1 ? 200 : nd === 2 ? 40 : 9));
  const n = shape.reduce((a, b) => a * b, 1);
  const axisLast = nd > 1 && rng.uniform() < 0.35;
  const p = new Float32Array(n);
  const scaleP = rng.uniform() < 0.1 ? 1e-20 : rng.uniform() < 0.1 ? 1e18 : 1;
  for (let i = 0; i < n; i++) p[i] = (rng.uniform() * 2 - 1) * scaleP;
  if (rng.uniform() < 0.05) p.fill(0);
  const rows = axisLast ? shape[nd - 1] : shape[0];
  const grads: Float32Array[] = [];
  const steps = 1 + rng.int(3);
  for (let s = 0; s < steps; s++) {
    const g = new Float32Array(n);
    for (let i = 0; i < n; i++) g[i] = rng.uniform() * 2 - 1;
    const kind = rng.uniform();
    if (kind < 0.3 && !axisLast) {
      // orthogonal to every output channel: the channel projection fires
      const cols = n / rows;
      for (let r = 0; r < rows; r++) {
        let gp = 0, pp = 0;
        for (let j = r * cols; j < (r + 1) * cols; j++) { gp += g[j] * p[j]; pp += p[j] * p[j]; }
        for (let j = r * cols; j < (r + 1) * cols; j++) g[j] -= pp > 0 ? (gp / pp) * p[j] : 0;
      }
    } else if (kind < 0.5) {
      // orthogonal to the whole tensor: the layer view may fire
      let gp = 0, pp = 0;
      for (let j = 0; j < n; j++) { gp += g[j] * p[j]; pp += p[j] * p[j]; }
      for (let j = 0; j < n; j++) g[j] -= pp > 0 ? (gp / pp) * p[j] : 0;
    } else if (kind < 0.56) {
      g.fill(0);
    } else if (kind < 0.6) {
      g[rng.int(n)] = NaN;
    } else if (kind < 0.62) {
      g[rng.int(n)] = rng.uniform() < 0.5 ? Infinity : -Infinity;
    } else if (kind < 0.66) {
      for (let i = 0; i < n; i++) g[i] *= 1e-30; // subnormal squares
    }
    grads.push(g);
  }
  const pick = <T>(xs: T[]): T => xs[rng.int(xs.length)];
  return {
    algo: rng.uniform() < 0.5 ? 'adamp' : 'sgdp',
    shape, axisLast, p, grads,
    chunk: pick([1, 3, 4, 5, 8, 13, 64, 100, DEFAULT_CHUNK]),
    whole: pick([0, 50, Infinity]),
    hpA: {
      lr: 10 ** (-1 - 3 * rng.uniform()), beta1: pick([0.9, 0.5, 0]), beta2: pick([0.999, 0.99]), eps: pick([1e-8, 1e-3]),
      weightDecay: pick([0, 0, 0.01, 0.5]), delta: pick([0.1, 0.1, 0.9, 1e-6]), wdRatio: pick([0.1, 1]), nesterov: rng.uniform() < 0.5,
    },
    hpS: {
      lr: 10 ** (-1 - 3 * rng.uniform()), momentum: pick([0.9, 0.5, 0]), dampening: pick([0, 0, 0.1]), weightDecay: pick([0, 0, 1e-4, 0.1]),
      nesterov: rng.uniform() < 0.5, eps: pick([1e-8, 1e-3]), delta: pick([0.1, 0.1, 0.9]), wdRatio: pick([0.1, 1]),
    },
  };
}

function slotOf(c: Case): Slot {
  const n = c.p.length;
  const nd = c.shape.length;
  const channels = nd === 1 ? 1 : c.axisLast ? c.shape[nd - 1] : c.shape[0];
  return {
    p: c.p.slice(), g: new Float32Array(n), state: c.algo === 'adamp' ? [new Float32Array(n), new Float32Array(n)] : [new Float32Array(n)],
    outer: c.axisLast ? n / channels : 1, channels: nd === 1 ? 1 : channels, inner: c.axisLast ? 1 : n / channels,
    eligible: nd > 1, step: 0,
  };
}

describe('wasm and TypeScript loops agree bit for bit', () => {
  test('on 3000 random tensors, options and chunkings (AdamP and SGDP)', () => {
    const rng = new Rng(20261125);
    const seen = new Map<number, number>();
    for (let t = 0; t < 3000; t++) {
      const c = randomCase(rng);
      const a = slotOf(c), b = slotOf(c);
      const ts = new JsEngine({ wasm: false }), wa = new JsEngine({ wasm: true, chunk: c.chunk, whole: c.whole });
      c.grads.forEach((g, si) => {
        a.g = g.slice(); b.g = g.slice();
        a.step = b.step = si + 1;
        const ia = new Float64Array(INFO_STRIDE), ib = new Float64Array(INFO_STRIDE);
        if (c.algo === 'adamp') { ts.step(adampJob([a], c.hpA, ia), FULL); wa.step(adampJob([b], c.hpA, ib), FULL); }
        else { ts.step(sgdpJob([a], c.hpS, ia), FULL); wa.step(sgdpJob([b], c.hpS, ib), FULL); }
        const where = `case ${t} (${c.algo} ${JSON.stringify(c.shape)} axisLast=${c.axisLast} chunk=${c.chunk} whole=${c.whole}) step ${si + 1}`;
        expectSame(ia, ib, `${where} info`);
        expectSame(a.p, b.p, `${where} p`);
        a.state.forEach((x, k) => expectSame(x, b.state[k], `${where} state[${k}]`));
        expectSame(a.g, b.g, `${where} g (untouched)`);
        seen.set(ia[0], (seen.get(ia[0]) ?? 0) + 1);
      });
    }
    // every decision was exercised
    for (const d of [Decision.none, Decision.channel, Decision.layer, Decision.notEligible]) expect(seen.get(d) ?? 0).toBeGreaterThan(20);
  });

  test('a group of many tensors in one call, larger than a chunk, kept whole or streamed twice', () => {
    const rng = new Rng(7);
    const shapes = [[64, 3, 7, 7], [64], [256, 64, 1, 1], [100, 40], [5000], [3, 9000]];
    for (const algo of ['adamp', 'sgdp'] as const) {
      for (const [nesterov, whole] of [[false, Infinity], [true, Infinity], [false, 10000], [true, 10000]] as const) {
        const mk = (): Slot[] => shapes.map((shape) => {
          const n = shape.reduce((x, y) => x * y, 1);
          const r = new Rng(n);
          const p = new Float32Array(n).map(() => r.uniform() - 0.5);
          return { p, g: new Float32Array(n), state: algo === 'adamp' ? [new Float32Array(n), new Float32Array(n)] : [new Float32Array(n)],
            outer: 1, channels: shape.length > 1 ? shape[0] : 1, inner: shape.length > 1 ? n / shape[0] : n, eligible: shape.length > 1, step: 0 };
        });
        const a = mk(), b = mk();
        const ts = new JsEngine({ wasm: false }), wa = new JsEngine({ wasm: true, chunk: 4096, whole });
        for (let step = 1; step <= 3; step++) {
          a.forEach((s, k) => {
            const g = new Float32Array(s.p.length).map(() => rng.uniform() - 0.5);
            if (step === 2 && s.eligible) { // orthogonal to every channel
              const cols = s.inner;
              for (let r = 0; r < s.channels; r++) {
                let gp = 0, pp = 0;
                for (let j = r * cols; j < (r + 1) * cols; j++) { gp += g[j] * s.p[j]; pp += s.p[j] * s.p[j]; }
                for (let j = r * cols; j < (r + 1) * cols; j++) g[j] -= (gp / pp) * s.p[j];
              }
            }
            s.g = g; b[k].g = g.slice();
            s.step = b[k].step = step;
          });
          const ia = new Float64Array(INFO_STRIDE * a.length), ib = new Float64Array(INFO_STRIDE * a.length);
          if (algo === 'adamp') {
            const hp: AdamPScalars = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2, delta: 0.1, wdRatio: 0.1, nesterov };
            ts.step(adampJob(a, hp, ia), FULL); wa.step(adampJob(b, hp, ib), FULL);
          } else {
            const hp: SGDPScalars = { lr: 1e-2, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov, eps: 1e-8, delta: 0.1, wdRatio: 0.1 };
            ts.step(sgdpJob(a, hp, ia), FULL); wa.step(sgdpJob(b, hp, ib), FULL);
          }
          expectSame(ia, ib, `${algo} nesterov=${nesterov} step ${step} info`);
          if (step === 2) expect(ia[0]).toBe(Decision.channel); // the first tensor's channel projection fired
          a.forEach((s, k) => {
            expectSame(s.p, b[k].p, `${algo} step ${step} tensor ${k} p`);
            s.state.forEach((x, j) => expectSame(x, b[k].state[j], `${algo} step ${step} tensor ${k} state[${j}]`));
          });
        }
      }
    }
  });

  test('a tensor with more channels than the kernel takes runs the TypeScript loops, with the same results', () => {
    const chmax = wasmKernel()!.chmax;
    const n = (chmax + 3) * 2;
    const r = new Rng(3);
    const mk = (): Slot => ({ p: new Float32Array(n).map(() => r.uniform() - 0.5), g: new Float32Array(n), state: [new Float32Array(n), new Float32Array(n)],
      outer: 1, channels: chmax + 3, inner: 2, eligible: true, step: 1 });
    const a = mk();
    const b: Slot = { ...a, p: a.p.slice(), state: a.state.map((x) => x.slice()) };
    a.g = new Float32Array(n).map(() => r.uniform() - 0.5);
    b.g = a.g.slice();
    expect(wasmKernel()!.takes(adampSpec, a)).toBe(false);
    const hp: AdamPScalars = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: false };
    const ia = new Float64Array(INFO_STRIDE), ib = new Float64Array(INFO_STRIDE);
    new JsEngine({ wasm: false }).step(adampJob([a], hp, ia), FULL);
    new JsEngine({ wasm: true }).step(adampJob([b], hp, ib), FULL);
    expectSame(ia, ib, 'info');
    expectSame(a.p, b.p, 'p');
  });

  test('the module memory does not grow, whatever the tensor size', () => {
    const k = wasmKernel()!;
    const bytes = (k.x.memory.buffer as ArrayBuffer).byteLength;
    const n = 3 * k.chunk + 17;
    const s: Slot = { p: new Float32Array(n).fill(0.5), g: new Float32Array(n).fill(0.25), state: [new Float32Array(n), new Float32Array(n)],
      outer: 1, channels: 7, inner: n / 7, eligible: false, step: 1 };
    const e = new JsEngine();
    const hp: AdamPScalars = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: false };
    e.step(adampJob([s], hp, new Float64Array(INFO_STRIDE)), FULL);
    e.step(adampJob([{ ...s, eligible: true, channels: 1, inner: n, step: 2 }], hp, new Float64Array(INFO_STRIDE)), FULL);
    expect((k.x.memory.buffer as ArrayBuffer).byteLength).toBe(bytes);
    expect(k.P.length).toBe(k.chunk); // the views are still attached
    expect(k.U.length).toBe(k.cap);
  });
});

/** Runs a public-API optimizer with the kernel on or off (ADAMP_JS_WASM is read when the engine is created). */
function withWasm<T>(on: boolean, make: () => T): T {
  const saved = process.env.ADAMP_JS_WASM;
  process.env.ADAMP_JS_WASM = on ? '1' : '0';
  try {
    return make();
  } finally {
    if (saved === undefined) delete process.env.ADAMP_JS_WASM;
    else process.env.ADAMP_JS_WASM = saved;
  }
}

describe('through the public API (backend js)', () => {
  test.each(fixtureNames())('reference case %s: identical params, state and lastStepInfo with and without the kernel', (name) => {
    const c = loadFixture(name);
    const run = (on: boolean): { params: Param[]; opt: AdamP | SGDP } => {
      const params: Param[] = c.params.map((p, i) => ({ data: c.get(p.data), grad: null, shape: p.shape, name: `p${i}` }));
      const opts = toOptions(c.hyperparameters);
      const opt = withWasm(on, () => (c.optimizer === 'adamp'
        ? new AdamP(params, opts, { backend: 'js' })
        : new SGDP(params, opts as never, { backend: 'js' })));
      return { params, opt };
    };
    const a = run(false), b = run(true);
    c.steps.forEach((_, si) => {
      for (const r of [a, b]) {
        c.grads[si].forEach((g, i) => { r.params[i].grad = g === null ? null : c.get(g); });
        r.opt.step();
      }
      expect(b.opt.lastStepInfo).toEqual(a.opt.lastStepInfo);
      a.params.forEach((p, i) => expectSame(p.data, b.params[i].data, `${name} step ${si + 1} param ${i}`));
      const sa = a.opt.stateDict().state, sb = b.opt.stateDict().state;
      for (const k of Object.keys(sa)) {
        for (const [field, val] of Object.entries(sa[k as never] as unknown as Record<string, unknown>)) {
          const other = (sb[k as never] as unknown as Record<string, unknown>)[field];
          if (val instanceof Float32Array) expectSame(val, other as Float32Array, `${name} step ${si + 1} state ${k}.${field}`);
          else expect(other).toEqual(val);
        }
      }
    });
  });

  test('channelAxis -1 (TensorFlow.js kernels), several groups, AdamP and SGDP', () => {
    const rng = new Rng(11);
    for (const algo of ['adamp', 'sgdp'] as const) {
      const run = (on: boolean): { params: Param[]; opt: AdamP | SGDP } => {
        const r = new Rng(5);
        const shapes = [[3, 3, 8, 16], [16], [40, 30], [30]];
        const params: Param[] = shapes.map((shape, i) => {
          const n = shape.reduce((x, y) => x * y, 1);
          return { data: new Float32Array(n).map(() => r.uniform() - 0.5), grad: null, shape, name: `w${i}`, channelAxis: -1 };
        });
        const groups = [{ params: params.slice(0, 2) }, { params: params.slice(2), weightDecay: 0.01 }];
        const opt = withWasm(on, () => (algo === 'adamp'
          ? new AdamP(groups as never, { lr: 1e-2, nesterov: true }, { backend: 'js' })
          : new SGDP(groups as never, { lr: 1e-2, momentum: 0.9 }, { backend: 'js' })));
        return { params, opt };
      };
      const a = run(false), b = run(true);
      for (let step = 0; step < 4; step++) {
        a.params.forEach((p, i) => {
          const g = new Float32Array(p.data.length).map(() => rng.uniform() - 0.5);
          p.grad = g;
          b.params[i].grad = g.slice();
        });
        a.opt.step();
        b.opt.step();
        expect(b.opt.lastStepInfo).toEqual(a.opt.lastStepInfo);
        a.params.forEach((p, i) => expectSame(p.data, b.params[i].data, `${algo} step ${step} param ${i}`));
      }
    }
  });
});
