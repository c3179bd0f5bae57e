/**
 * Every backend against the TypeScript one, through the public API, on many random shapes,
 * seeds, gradient kinds and options (docs/numerics.md#edge-cases included): decisions identical,
 * values within float32 rounding.
 */
import { AdamP, SGDP } from '../lib/index';
import type { Param } from '../lib/index';
import { availableBackends } from './helpers/backends';
import { gradOfKind, numel, randn, randomShape, rng } from './helpers/random';

const others = availableBackends().filter((b) => b !== 'js');
if (others.length === 0) {
  test.skip('no backend besides js can run here (see the reasons printed above)', () => {});
}

const KINDS = ['random', 'channel', 'layer', 'parallel', 'zero'];

function randomParams(r: () => number, count: number): Param[] {
  const out: Param[] = [];
  for (let k = 0; k < count; k++) {
    const shape = randomShape(r);
    const n = numel(shape);
    const e = r();
    // zero weights, a zero row, tiny weights, or ordinary ones
    const data = e < 0.05 ? new Float32Array(n) : e < 0.1 ? randn(r, n, 1e-9) : randn(r, n);
    if (e >= 0.1 && e < 0.15 && shape.length > 1) data.fill(0, 0, n / shape[0]);
    out.push({ name: `p${k}`, data, grad: null, shape, channelAxis: shape.length > 1 && r() < 0.3 ? -1 : undefined });
  }
  return out;
}

function setGrads(r: () => number, ps: Param[]): void {
  for (const p of ps) {
    const kind = KINDS[Math.floor(r() * KINDS.length)];
    p.grad = r() < 0.08 ? null : gradOfKind(r, p.data, p.shape.length > 1 ? p.shape[0] : 1, kind);
    if (p.grad && r() < 0.05) p.grad = p.grad.map((x) => x * 1e-10); // ||g|| < eps
  }
}

describe.each(others.length ? others : ['none'])('backend %s agrees with js', (backend) => {
  if (backend === 'none') return;
  test.each(['adamp', 'sgdp'])('%s on 60 random models x 4 steps', (kind) => {
    for (let seed = 1; seed <= 60; seed++) {
      const r = rng(seed * 7919 + (kind === 'adamp' ? 0 : 1));
      const base = randomParams(r, 1 + Math.floor(r() * 6));
      const a = base.map((p) => ({ ...p, data: p.data.slice() }));
      const b = base.map((p) => ({ ...p, data: p.data.slice() }));
      const opts = kind === 'adamp'
        ? { lr: 0.01 * r(), betas: [0.9, 0.999] as [number, number], weightDecay: r() < 0.5 ? 0 : 0.1, nesterov: r() < 0.5, delta: r() < 0.2 ? 0.5 : 0.1, wdRatio: 0.2 }
        : { lr: 0.1 * r(), momentum: r() < 0.2 ? 0 : 0.9, dampening: r() < 0.2 ? 0.1 : 0, weightDecay: r() < 0.5 ? 0 : 1e-3, nesterov: r() < 0.5 };
      const mk = (ps: Param[], backend: string) => (kind === 'adamp' ? new AdamP(ps, opts, { backend: backend as never }) : new SGDP(ps, opts as never, { backend: backend as never }));
      const oa = mk(a, 'js'), ob = mk(b, backend);
      const lastPre: number[] = []; // per param: the pre-projection scale of the step that last wrote its buffer
      for (let t = 0; t < 4; t++) {
        const gr = rng(seed * 31 + t);
        setGrads(gr, a);
        b.forEach((p, i) => { p.grad = a[i].grad ? a[i].grad!.slice() : null; });
        const before = kind === 'sgdp' ? oa.stateDict().state : {};
        oa.step(); ob.step();
        const ia = oa.lastStepInfo, ib = ob.lastStepInfo;
        for (let i = 0; i < a.length; i++) {
          const where = `seed ${seed} step ${t} ${a[i].name} shape [${a[i].shape}] axis ${a[i].channelAxis ?? 0}`;
          expect(`${where}: ${ib[i].projection}`).toBe(`${where}: ${ia[i].projection}`);
          close(b[i].data, a[i].data, where);
        }
        const sa = oa.stateDict().state, sb = ob.stateDict().state;
        for (const key of Object.keys(sa)) {
          for (const [name, arr] of Object.entries(sa[Number(key)] as object)) {
            // SGDP's buffer holds the projected update: when the projection removes almost all of
            // it (an update parallel to the weights) what is left is rounding noise of the
            // pre-projection magnitude (docs/numerics.md#tolerance), not of the tiny remainder. That magnitude is
            // at most momentum * max|old buffer| + max|g| (a zero gradient still projects the
            // old buffer).
            // A param without a gradient this step kept the buffer of the step that last wrote it.
            const old = (before[Number(key)] as { momentum?: Float32Array } | undefined)?.momentum ?? null;
            if (name === 'momentum' && a[Number(key)].grad) lastPre[Number(key)] = (opts as { momentum?: number }).momentum! * maxAbs(old) + maxAbs(a[Number(key)].grad);
            const pre = name === 'momentum' ? lastPre[Number(key)] ?? 0 : 0;
            if (arr instanceof Float32Array) close((sb[Number(key)] as unknown as Record<string, Float32Array>)[name], arr, `seed ${seed} step ${t} state ${key}.${name}`, pre);
            else expect((sb[Number(key)] as unknown as Record<string, unknown>)[name]).toBe(arr);
          }
        }
      }
    }
  });
});

function maxAbs(x: Float32Array | null): number {
  let m = 0;
  if (x) for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

function close(got: Float32Array, want: Float32Array, where: string, floorScale = 0): void {
  let diff = 0, scale = floorScale;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (Number.isNaN(d) && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) throw new Error(`${where}: NaN mismatch at ${i}`);
    if (d > diff) diff = d;
    scale = Math.max(scale, Math.abs(want[i]));
  }
  // float32 rounding of a few operations; projections that cancel almost everything keep an absolute floor
  if (!(diff <= 2e-6 * scale + 1e-30)) throw new Error(`${where}: max|diff| ${diff} > 2e-6 * ${scale}`);
}
