/**
 * Properties of AdamP/SGDP that hold beyond the fixtures, on many random shapes and seeds,
 * on every backend that runs here.
 */
import { AdamP, SGDP } from '../lib/index';
import type { Param } from '../lib/index';
import { availableBackends } from './helpers/backends';
import { gradOfKind, numel, randn, randomShape, rng } from './helpers/random';

const f = Math.fround;

describe.each(availableBackends())('backend %s', (backend) => {
  test('the projected update has no radial component (per channel and per layer)', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const r = rng(seed);
      const shape = [2 + Math.floor(r() * 20), 3 + Math.floor(r() * 30)];
      const p0 = randn(r, numel(shape));
      for (const kind of ['channel', 'layer'] as const) {
        const p: Param = { data: p0.slice(), grad: gradOfKind(r, p0, shape[0], kind), shape };
        // A large lr keeps dp far above the float32 rounding of p, so what is measured is the update.
        const opt = seed % 2 ? new AdamP([p], { lr: 0.5 }, { backend }) : new SGDP([p], { lr: 1, momentum: 0.9 }, { backend });
        opt.step();
        const proj = opt.lastStepInfo[0].projection;
        expect(proj === 'channel' || proj === 'layer').toBe(true);
        // dp = p1 - p0 must be orthogonal to p0 in the view that fired.
        const rows = proj === 'channel' ? shape[0] : 1;
        const cols = p0.length / rows;
        for (let rr = 0; rr < rows; rr++) {
          let pd = 0, pp = 0, dd = 0;
          for (let j = 0; j < cols; j++) {
            const i = rr * cols + j;
            const d = p.data[i] - p0[i];
            pd += p0[i] * d; pp += p0[i] * p0[i]; dd += d * d;
          }
          expect(Math.abs(pd)).toBeLessThanOrEqual(1e-5 * Math.sqrt(pp * dd) + 1e-12);
        }
      }
    }
  });

  test('with delta = 0 AdamP is exactly AdamW as the official code computes it', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const r = rng(100 + seed);
      const shape = randomShape(r);
      const n = numel(shape);
      const hp = { lr: 0.01 * r(), betas: [0.8 + 0.19 * r(), 0.9 + 0.099 * r()] as [number, number], eps: 1e-8, weightDecay: r() < 0.5 ? 0 : 0.1, nesterov: r() < 0.5 };
      const p: Param = { data: randn(r, n), grad: null, shape };
      const ref = { p: p.data.slice(), m: new Float32Array(n), v: new Float32Array(n) };
      const opt = new AdamP([p], { ...hp, delta: 0 }, { backend });
      for (let t = 1; t <= 3; t++) {
        const g = randn(r, n);
        p.grad = g;
        opt.step();
        adamwReference(ref, g, hp, t);
        const info = opt.lastStepInfo[0];
        expect(['none', 'not_eligible']).toContain(info.projection);
        expectClose(p.data, ref.p, backend === 'js' ? 0 : 1e-6);
      }
    }
  });

  test('with delta = 0 SGDP is exactly SGD with momentum as the official code computes it', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const r = rng(200 + seed);
      const shape = randomShape(r);
      const n = numel(shape);
      const hp = { lr: 0.1 * r(), momentum: r() < 0.3 ? 0 : 0.9, dampening: r() < 0.3 ? 0.1 : 0, weightDecay: r() < 0.5 ? 0 : 1e-3, nesterov: r() < 0.5 };
      const p: Param = { data: randn(r, n), grad: null, shape };
      const ref = { p: p.data.slice(), buf: new Float32Array(n) };
      const opt = new SGDP([p], { ...hp, delta: 0 }, { backend });
      for (let t = 1; t <= 3; t++) {
        const g = randn(r, n);
        p.grad = g;
        opt.step();
        sgdReference(ref, g, hp);
        expectClose(p.data, ref.p, backend === 'js' ? 0 : 1e-6);
        expectClose((opt.stateDict().state[0] as { momentum: Float32Array }).momentum, ref.buf, backend === 'js' ? 0 : 1e-6);
      }
    }
  });

  test('the decision is scale invariant: scaling the weights by 2^k changes no decision', () => {
    const kinds = ['random', 'channel', 'layer', 'parallel'];
    for (let seed = 1; seed <= 40; seed++) {
      const r = rng(300 + seed);
      const shape = [1 + Math.floor(r() * 16), 2 + Math.floor(r() * 12), 3];
      const p0 = randn(r, numel(shape));
      const g = gradOfKind(r, p0, shape[0], kinds[seed % kinds.length]);
      const decisions = [-8, 0, 8].map((k) => {
        const p: Param = { data: p0.map((x) => x * 2 ** k), grad: g.slice(), shape };
        const opt = new AdamP([p], {}, { backend });
        opt.step();
        return opt.lastStepInfo[0];
      });
      for (const d of decisions) {
        expect(d.projection).toBe(decisions[1].projection);
        expect(d.channelMaxCos).toBe(decisions[1].channelMaxCos);
      }
    }
  });

  test('1-D and scalar params are never projected and get the full weight decay', () => {
    for (const shape of [[128], [], [1]]) {
      const n = numel(shape);
      const p: Param = { data: new Float32Array(n).fill(2), grad: new Float32Array(n), shape };
      const opt = new AdamP([p], { lr: 0.1, weightDecay: 0.5 }, { backend });
      opt.step(); // zero grad: u = 0, so only the decay moves p
      expect(opt.lastStepInfo[0].projection).toBe('not_eligible');
      expect(opt.lastStepInfo[0].wdRatio).toBe(1);
      expect(Array.from(p.data)).toEqual(new Array(n).fill(f(2 * f(1 - 0.1 * 0.5))));
    }
  });

  test('a zero gradient on a 2-D weight fires the channel view and decays by wdRatio', () => {
    const p: Param = { data: new Float32Array(12).fill(1), grad: new Float32Array(12), shape: [3, 4] };
    const opt = new AdamP([p], { lr: 0.1, weightDecay: 0.5, wdRatio: 0.2 }, { backend });
    opt.step();
    expect(opt.lastStepInfo[0].projection).toBe('channel');
    expect(Array.from(p.data)).toEqual(new Array(12).fill(f(1 - 0.1 * 0.5 * 0.2)));
  });

  test('random gradients fire the layer view about 8% of the time (docs/numerics.md#edge-cases), channel almost never', () => {
    const counts = { channel: 0, layer: 0, none: 0 } as Record<string, number>;
    const r = rng(7);
    const trials = 400;
    for (let t = 0; t < trials; t++) {
      const shape = [8, 16];
      const p: Param = { data: randn(r, 128), grad: randn(r, 128), shape };
      const opt = new SGDP([p], { lr: 0.1 }, { backend });
      opt.step();
      counts[opt.lastStepInfo[0].projection]++;
    }
    expect(counts.layer / trials).toBeGreaterThan(0.04);
    expect(counts.layer / trials).toBeLessThan(0.13);
    expect(counts.channel).toBeLessThanOrEqual(2);
  });

  test('a null gradient skips the param: no state, no decay, no step count', () => {
    const a: Param = { data: new Float32Array([1, 2, 3, 4]), grad: null, shape: [2, 2] };
    const b: Param = { data: new Float32Array([1, 1]), grad: new Float32Array([0.5, -0.5]), shape: [2] };
    const opt = new AdamP([a, b], { weightDecay: 0.1 }, { backend });
    opt.step();
    expect(Array.from(a.data)).toEqual([1, 2, 3, 4]);
    expect(opt.stateDict().state[0]).toBeUndefined();
    expect(opt.lastStepInfo[0].projection).toBe('no_grad');
    a.grad = new Float32Array([0.1, 0.2, 0.3, 0.4]);
    opt.step();
    expect((opt.stateDict().state[0] as { step: number }).step).toBe(1);
    expect((opt.stateDict().state[1] as { step: number }).step).toBe(2);
  });

  test('SGDP without Nesterov stores the projected update in the momentum buffer; with Nesterov it does not', () => {
    const r = rng(11);
    const shape = [6, 10];
    const p0 = randn(r, 60);
    const g = gradOfKind(r, p0, 6, 'channel');
    // Make the buffer radial first: step once with a parallel grad (no projection), then an orthogonal one.
    for (const nesterov of [false, true]) {
      const p: Param = { data: p0.slice(), grad: p0.map((x) => x), shape };
      const opt = new SGDP([p], { lr: 0.01, momentum: 0.9, nesterov }, { backend });
      opt.step();
      expect(opt.lastStepInfo[0].projection).toBe('none');
      const before = p.data.slice();
      p.grad = g.slice();
      opt.step();
      expect(opt.lastStepInfo[0].projection).toBe('channel');
      const buf = (opt.stateDict().state[0] as { momentum: Float32Array }).momentum;
      // radial part of the buffer relative to the weights it was projected against
      let bp = 0, bb = 0, pp = 0;
      for (let i = 0; i < 60; i++) { bp += buf[i] * before[i]; bb += buf[i] * buf[i]; pp += before[i] * before[i]; }
      const radial = Math.abs(bp) / Math.sqrt(bb * pp);
      if (nesterov) expect(radial).toBeGreaterThan(0.1);
      else expect(radial).toBeLessThan(1e-5);
    }
  });
});

function expectClose(a: Float32Array, b: Float32Array, rel: number): void {
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) { diff = Math.max(diff, Math.abs(a[i] - b[i])); scale = Math.max(scale, Math.abs(b[i])); }
  if (!(diff <= rel * scale)) throw new Error(`max|diff| ${diff} > ${rel} * ${scale}`);
}

/** AdamW in float32, written from docs/numerics.md#adamp independently of the engines. */
function adamwReference(s: { p: Float32Array; m: Float32Array; v: Float32Array }, g: Float32Array,
  hp: { lr: number; betas: [number, number]; eps: number; weightDecay: number; nesterov: boolean }, t: number): void {
  const [b1, b2] = hp.betas;
  const bc1 = 1 - b1 ** t, bc2 = 1 - b2 ** t;
  for (let i = 0; i < g.length; i++) {
    s.m[i] = f(f(s.m[i] * f(b1)) + g[i] * f(1 - b1));
    s.v[i] = f(f(s.v[i] * f(b2)) + f(f(1 - b2) * g[i]) * g[i]);
    const denom = f(f(f(Math.sqrt(s.v[i])) / f(Math.sqrt(bc2))) + f(hp.eps));
    const u = hp.nesterov ? f(f(f(f(b1) * s.m[i]) + f(f(1 - b1) * g[i])) / denom) : f(s.m[i] / denom);
    let p = s.p[i];
    if (hp.weightDecay > 0) p = f(p * f(1 - hp.lr * hp.weightDecay));
    s.p[i] = f(p + u * f(-hp.lr / bc1));
  }
}

/** The official SGDP with the projection never firing: SGD with momentum and decoupled decay / (1 - momentum). */
function sgdReference(s: { p: Float32Array; buf: Float32Array }, g: Float32Array,
  hp: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean }): void {
  for (let i = 0; i < g.length; i++) {
    s.buf[i] = f(f(s.buf[i] * f(hp.momentum)) + g[i] * f(1 - hp.dampening));
    const d = hp.nesterov ? f(g[i] + f(f(hp.momentum) * s.buf[i])) : s.buf[i];
    let p = s.p[i];
    if (hp.weightDecay > 0) p = f(p * f(1 - (hp.lr * hp.weightDecay) / (1 - hp.momentum)));
    s.p[i] = f(p + d * f(-hp.lr));
  }
}
