/**
 * The CUDA backend through the public API. On any machine: the backend report says why CUDA is
 * (un)available and `backend: 'cuda'` fails with that reason; a CUDA build of the addon loads
 * without a GPU and its exports check their arguments. With a GPU: AdamP and SGDP on the device
 * against the TypeScript engine (values, projection decisions, state dicts, reloading state).
 *
 * The addon is the one `loadAddon()` finds (build/Release), or ADAMP_ADDON_PATH
 * (e.g. build-cuda/Release/adamp.node from `npx cmake-js rebuild -O build-cuda --CDADAMP_WITH_CUDA=ON`).
 */
import { AdamP } from '../lib/adamp';
import { SGDP } from '../lib/sgdp';
import { backends, createEngine } from '../lib/backends/select';
import { cudaProvider, hasCuda } from '../lib/backends/cuda';
import { loadAddon } from '../lib/binding/load';
import type { Param } from '../lib/types';
import { randn, rng } from './helpers/random';
import { expectClose } from './helpers/fixtures';

const loaded = loadAddon();
const addon = 'addon' in loaded ? loaded.addon : undefined;
const cudaAddon = addon !== undefined && hasCuda(addon) ? addon : undefined;
const status = cudaAddon?.cudaStatus();
const gpu = status?.available === true;
const report = cudaProvider.report();
if (!gpu) {
  // eslint-disable-next-line no-console
  console.warn(`cuda GPU tests skipped: ${report.reason}`);
}

describe('cuda backend without assumptions about the machine', () => {
  test('backends() lists cuda with the reason it can or cannot run', () => {
    const r = backends().find((b) => b.name === 'cuda');
    expect(r).toBeDefined();
    expect(typeof r!.reason).toBe('string');
    expect(r!.reason.length).toBeGreaterThan(10);
    expect(r!.available).toBe(gpu);
  });

  (gpu ? test.skip : test)("backend: 'cuda' throws ERR_ADAMP_BACKEND_UNAVAILABLE with the reason", () => {
    let err: { code?: string; message?: string } | undefined;
    try {
      createEngine('cuda', { kind: 'adamp' });
    } catch (e) {
      err = e as { code?: string; message?: string };
    }
    expect(err?.code).toBe('ERR_ADAMP_BACKEND_UNAVAILABLE');
    expect(err?.message).toContain(report.reason.split('\n')[0]);
  });

  (cudaAddon ? test : test.skip)('a CUDA build reports the runtime and, without a GPU, why (driver missing = 35, no device = 100)', () => {
    expect(status!.runtimeVersion).toBeGreaterThanOrEqual(12000);
    expect(Array.isArray(status!.devices)).toBe(true);
    if (!status!.available) {
      expect(status!.reason).toMatch(/driver|device|compute capability/);
      if (status!.code === 35) expect(status!.reason).toMatch(/driver/);
      if (status!.code === 100) expect(status!.reason).toMatch(/no CUDA device/);
    }
  });

  (cudaAddon && !gpu ? test : test.skip)('without a GPU, creating a context fails with the CUDA error', () => {
    let err: { code?: string; message?: string; cudaError?: number } | undefined;
    try {
      cudaAddon!.cudaCreate('adamp');
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.code).toBe('ERR_ADAMP_CUDA');
    expect(err?.cudaError).toBe(status!.code);
    expect(err?.message).toMatch(/cudaCreate failed: cuda\w+ \(\d+\)/);
  });

  (cudaAddon ? test : test.skip)('the CUDA exports check their arguments', () => {
    const bad = {} as unknown as Parameters<NonNullable<typeof cudaAddon>['cudaAddTensor']>[0];
    let err: { code?: string; message?: string } | undefined;
    try {
      cudaAddon!.cudaAddTensor(bad, 4, 1, 2, 2, true);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(err?.message).toMatch(/cudaAddTensor: the first argument must be a context handle/);
    expect(() => cudaAddon!.cudaCreate('adam' as 'adamp')).toThrow(/kind must be 'adamp' or 'sgdp', got 'adam'/);
  });
});

// ------------------------------------------------------------------------------------------------
// On a GPU: the device against the TypeScript engine.

interface Spec { shape: number[]; axis?: number }
const SPECS: Spec[] = [
  { shape: [64, 3, 3, 3] }, { shape: [64] }, { shape: [10, 20] }, { shape: [1, 16] }, { shape: [10, 1] },
  { shape: [3, 3, 16, 32], axis: -1 }, { shape: [300, 70] }, { shape: [7] }, { shape: [] }, { shape: [2, 9000] },
];

function makeParams(seed: number): Param[] {
  const r = rng(seed);
  return SPECS.map((s, i) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    return { data: randn(r, n), grad: new Float32Array(n), shape: s.shape, name: `p${i}`, ...(s.axis !== undefined ? { channelAxis: s.axis } : {}) };
  });
}

/** Gradients: random, or with the radial part removed (the projection fires), per param and step. */
function fillGrads(ps: Param[], step: number, seed: number): void {
  const r = rng(seed * 1000 + step);
  ps.forEach((p, i) => {
    const g = randn(r, p.data.length, 0.1);
    if ((i + step) % 3 === 0 && p.data.length > 1) {
      let gp = 0, pp = 0;
      for (let k = 0; k < g.length; k++) { gp += g[k] * p.data[k]; pp += p.data[k] * p.data[k]; }
      for (let k = 0; k < g.length; k++) g[k] = Math.fround(g[k] - (gp / pp) * p.data[k]);
    }
    p.grad = (i + step) % 5 === 4 ? null : g;
  });
}


(gpu ? describe : describe.skip)('cuda backend on the GPU', () => {
  test.each(['adamp', 'sgdp'] as const)('%s on the device matches the TypeScript engine', (kind) => {
    const a = makeParams(7), b = makeParams(7);
    const make = (ps: Param[], backend: 'js' | 'cuda') => (kind === 'adamp'
      ? new AdamP(ps, { lr: 1e-2, weightDecay: 0.05, nesterov: true }, { backend })
      : new SGDP(ps, { lr: 0.1, momentum: 0.9, weightDecay: 1e-3 }, { backend }));
    const js = make(a, 'js'), cu = make(b, 'cuda');
    expect(cu.backend).toBe('cuda');
    for (let step = 1; step <= 4; step++) {
      fillGrads(a, step, 3);
      fillGrads(b, step, 3);
      js.step();
      cu.step();
      cu.synchronize();
      const ij = js.lastStepInfo, ic = cu.lastStepInfo;
      for (let i = 0; i < a.length; i++) {
        expect(`${i}:${ic[i].projection}`).toBe(`${i}:${ij[i].projection}`);
        expectClose(b[i].data, a[i].data, `${kind} step ${step} ${a[i].name}`);
      }
    }
    const sj = js.stateDict(), sc = cu.stateDict();
    for (const k of Object.keys(sj.state)) {
      const x = sj.state[Number(k)] as unknown as Record<string, unknown>;
      const y = sc.state[Number(k)] as unknown as Record<string, unknown>;
      for (const f of Object.keys(x)) {
        if (x[f] instanceof Float32Array) expectClose(y[f] as Float32Array, x[f] as Float32Array, `state ${k}.${f}`);
        else expect(y[f]).toEqual(x[f]);
      }
    }
    // Reloading state keeps the params' current values (only the device has them after this
    // step: loadStateDict writes them back) and uploads params and the new state at the next step.
    fillGrads(a, 5, 3);
    fillGrads(b, 5, 3);
    js.step();
    cu.step();
    cu.loadStateDict(js.stateDict() as never);
    for (let i = 0; i < a.length; i++) expectClose(b[i].data, a[i].data, `${kind} params after loadStateDict ${a[i].name}`);
    fillGrads(a, 9, 3);
    fillGrads(b, 9, 3);
    js.step();
    cu.step();
    cu.synchronize();
    for (let i = 0; i < a.length; i++) expectClose(b[i].data, a[i].data, `${kind} after loadStateDict ${a[i].name}`);
    cu.dispose();
  });
});
