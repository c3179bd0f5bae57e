/**
 * Parity of the registered baselines with PyTorch: every torch.optim.AdamW and torch.optim.SGD
 * case of test/fixtures/torch/optim (PyTorch 1.13, float32, foreach=False), through the public
 * API, on every backend that runs here, with the tolerance of AdamP's parity
 * (docs/numerics.md#tolerance): params and state within 1e-6 * max|expected| per tensor. The js
 * backend reproduces PyTorch's float32 operations one by one, so it is also checked bit for bit.
 */
import { AdamW, SGD } from '../lib/index';
import type { Param } from '../lib/index';
import { availableBackends } from './helpers/backends';
import { maxDiff } from './helpers/fixtures';
import { loadTorchOptimCase, torchOptimCaseNames, type AdamWState, type SgdState } from './helpers/torch-fixtures';

const TOL = 1e-6;
const names = torchOptimCaseNames();

/** PyTorch options (snake_case) -> adamp's (camelCase); options adamp does not have must be at PyTorch's defaults. */
function toOptions(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (k === 'params') continue;
    if (['maximize', 'foreach', 'differentiable', 'capturable', 'amsgrad', 'fused'].includes(k)) {
      if (v !== false && v !== null) throw new Error(`fixture uses ${k}=${String(v)}, which adamp does not have`);
      continue;
    }
    out[k === 'weight_decay' ? 'weightDecay' : k] = v;
  }
  return out;
}

test('the AdamW and SGD fixtures are present', () => {
  expect(names.filter((n) => n.startsWith('adamw_')).length).toBeGreaterThanOrEqual(4);
  expect(names.filter((n) => n.startsWith('sgd_')).length).toBeGreaterThanOrEqual(6);
});

describe.each(availableBackends())('backend %s', (backend) => {
  test.each(names)('%s matches torch.optim step by step', (name) => {
    const c = loadTorchOptimCase(name);
    const params: Param[] = c.params.map((p, i) => ({ data: c.get(p.data), grad: null, shape: p.shape, name: `p${i}` }));
    const groups = c.groups.map((g) => ({ params: g.params.map((i) => params[i]), ...toOptions(g.resolved) }));
    const opt = c.optimizer === 'adamw'
      ? new AdamW(groups as never, {}, { backend, diagnostics: 'full' })
      : new SGD(groups as never, { lr: (c.groups[0].resolved.lr as number) }, { backend, diagnostics: 'full' });
    expect(opt.backend).toBe(backend);
    c.steps.forEach((step, si) => {
      c.grads[si].forEach((g, i) => { params[i].grad = g === null ? null : c.get(g); });
      opt.step();
      const sd = opt.stateDict();
      const info = opt.lastStepInfo;
      step.params.forEach((e, i) => {
        const where = `${name} step ${step.step} param ${i}`;
        expect(`${where}: ${info[i].projection}`).toBe(`${where}: ${c.grads[si][i] === null ? 'no_grad' : 'not_applicable'}`);
        const check = (got: Float32Array | undefined, ref: [number, number], what: string) => {
          expect(got).toBeDefined();
          const { diff, scale } = maxDiff(got!, c.get(ref));
          if (!(diff <= TOL * scale)) throw new Error(`${where} ${what}: max|diff| ${diff} > ${TOL * scale} (max|expected| ${scale})`);
          if (backend === 'js' && diff !== 0) throw new Error(`${where} ${what}: the js backend differs from PyTorch by ${diff}`);
        };
        check(params[i].data, e.data, 'param');
        const st = sd.state[i] as unknown as Record<string, unknown> | undefined;
        if (e.state === null) {
          expect(st).toBeUndefined();
          return;
        }
        expect(st).toBeDefined();
        if (c.optimizer === 'adamw') {
          const s = e.state as AdamWState;
          expect(st!.step).toBe(s.step);
          check(st!.expAvg as Float32Array, s.exp_avg, 'exp_avg');
          check(st!.expAvgSq as Float32Array, s.exp_avg_sq, 'exp_avg_sq');
        } else {
          const s = e.state as SgdState;
          // PyTorch keeps no buffer without momentum; adamp's stays untouched (zeros).
          if (s.momentum_buffer === null) expect(Array.from(st!.momentumBuffer as Float32Array).every((x) => x === 0)).toBe(true);
          else check(st!.momentumBuffer as Float32Array, s.momentum_buffer, 'momentum_buffer');
        }
      });
    });
  });
});
