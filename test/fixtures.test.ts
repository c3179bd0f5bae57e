/**
 * Parity with the official implementation: every reference case, through the public API, on
 * every backend that runs here. Decisions must be identical at every step for every param;
 * params and state within 1e-6 * max|expected| per tensor (float32, docs/numerics.md#tolerance).
 */
import { AdamP, SGDP } from '../lib/index';
import type { Param } from '../lib/index';
import { availableBackends } from './helpers/backends';
import { fixtureNames, loadFixture, maxAbs, maxDiff, toOptions } from './helpers/fixtures';

const TOL = 1e-6;
const names = fixtureNames();

test('all reference cases are present', () => {
  expect(names.filter((n) => !n.includes('_f32edge_'))).toHaveLength(8); // the cases of the official code's test set
  expect(names.filter((n) => n.includes('_f32edge_'))).toHaveLength(4); // weights and gradients at float32's range (docs/numerics.md#the-float32-edge)
});

describe.each(availableBackends())('backend %s', (backend) => {
  test.each(names)('%s matches the official code step by step', (name) => {
    const c = loadFixture(name);
    const params: Param[] = c.params.map((p, i) => ({ data: c.get(p.data), grad: null, shape: p.shape, name: `p${i}` }));
    const opts = toOptions(c.hyperparameters);
    const opt = c.optimizer === 'adamp'
      ? new AdamP(params, opts, { backend })
      : new SGDP(params, opts as never, { backend });
    expect(opt.backend).toBe(backend);
    const momentum = (opts.momentum as number) ?? 0;
    const dampening = (opts.dampening as number) ?? 0;

    c.steps.forEach((step, si) => {
      const prevBuf = params.map((_, i) => (opt.stateDict().state[i] as { momentum?: Float32Array } | undefined)?.momentum);
      c.grads[si].forEach((g, i) => { params[i].grad = g === null ? null : c.get(g); });
      opt.step();
      const info = opt.lastStepInfo;
      const sd = opt.stateDict();
      step.params.forEach((e, i) => {
        const where = `${name} step ${step.step} param ${i}`;
        expect(`${where}: ${info[i].projection}`).toBe(`${where}: ${e.projection}`);
        if (e.channelThreshold !== null) {
          expect(info[i].channelThreshold).toBe(e.channelThreshold);
          expect(Math.abs(info[i].channelMaxCos! - e.channelMaxCos!)).toBeLessThanOrEqual(1e-6 * Math.max(1, e.channelMaxCos!));
        }
        if (e.layerThreshold !== null) {
          expect(info[i].layerThreshold).toBe(e.layerThreshold);
          expect(Math.abs(info[i].layerCos! - e.layerMaxCos!)).toBeLessThanOrEqual(1e-6 * Math.max(1, e.layerMaxCos!));
        } else {
          expect(info[i].layerCos).toBeNull();
        }
        const check = (got: Float32Array | undefined, ref: [number, number], what: string, floor = 0) => {
          expect(got).toBeDefined();
          const { diff, scale } = maxDiff(got!, c.get(ref));
          const bound = TOL * Math.max(scale, floor);
          if (!(diff <= bound)) throw new Error(`${where} ${what}: max|diff| ${diff} > ${bound} (max|expected| ${scale})`);
        };
        check(params[i].data, e.data, 'param');
        const st = sd.state[i] as unknown as Record<string, unknown> | undefined;
        if (e.state === null) {
          expect(st).toBeUndefined();
          return;
        }
        if (e.state.step !== undefined) {
          expect((st as { step: number }).step).toBe(e.state.step);
          check(st!.expAvg as Float32Array, e.state.exp_avg!, 'exp_avg');
          check(st!.expAvgSq as Float32Array, e.state.exp_avg_sq!, 'exp_avg_sq');
        } else {
          // A projection that removes almost all of the buffer leaves rounding noise: compare
          // against the pre-projection magnitude (docs/numerics.md#tolerance).
          const g = params[i].grad;
          const pre = g ? momentum * maxAbs(prevBuf[i] ?? new Float32Array(1)) + Math.abs(1 - dampening) * maxAbs(g) : 0;
          check(st!.momentum as Float32Array, e.state.momentum!, 'momentum', pre);
        }
      });
    });
  });
});
