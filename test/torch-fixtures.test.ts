/**
 * The PyTorch reference fixtures (test/fixtures/torch) load and are self-consistent. This does
 * not run adamp: the tests against the implementations use these files through
 * test/helpers/torch-fixtures.ts.
 */
import {
  f32Bits, f32FromBits, loadClipFixtures, loadSchedulerFixtures, loadTorchOptimCase, num, numel,
  torchOptimCaseNames,
} from './helpers/torch-fixtures';
import type { AdamWState, Ref, SchedulerSpec, SgdState } from './helpers/torch-fixtures';

const sameBits = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('torch.optim fixtures', () => {
  const names = torchOptimCaseNames();

  test('all cases are present', () => {
    expect(names.filter((n) => n.startsWith('adamw_'))).toHaveLength(4);
    expect(names.filter((n) => n.startsWith('sgd_'))).toHaveLength(7);
  });

  test.each(names)('%s is consistent', (name) => {
    const c = loadTorchOptimCase(name);
    expect(c.name).toBe(name);
    expect(c.meta.torch_version).toMatch(/^1\.13\./);
    expect(name.startsWith(c.optimizer + '_')).toBe(true);
    const n = c.params.length;
    const refOk = (ref: Ref, i: number) => {
      expect(ref[1]).toBe(numel(c.params[i].shape));
      expect(ref[0] + ref[1]).toBeLessThanOrEqual(c.size);
      expect(c.get(ref).every(Number.isFinite)).toBe(true);
    };

    // the groups partition the params; every group has its settings
    expect(c.groups.flatMap((g) => g.params).sort((a, b) => a - b)).toEqual([...Array(n).keys()]);
    const groupOf = (i: number) => c.groups.find((g) => g.params.includes(i))!.resolved;
    for (const g of c.groups) {
      expect(g.resolved.foreach).toBe(false);
      for (const [k, v] of Object.entries(g.options)) expect(g.resolved[k]).toEqual(v);
      for (const [k, v] of Object.entries(c.hyperparameters)) if (!(k in g.options)) expect(g.resolved[k]).toEqual(v);
      const keys = c.optimizer === 'adamw' ? ['lr', 'betas', 'eps', 'weight_decay'] : ['lr', 'momentum', 'dampening', 'weight_decay', 'nesterov'];
      for (const k of keys) expect(g.resolved).toHaveProperty(k);
    }
    c.params.forEach((p, i) => refOk(p.data, i));

    expect(c.grads.length).toBeGreaterThanOrEqual(5);
    expect(c.grads.length).toBeLessThanOrEqual(20);
    expect(c.steps).toHaveLength(c.grads.length);
    const prev = c.params.map((p) => c.get(p.data));
    const gradsSoFar = new Array(n).fill(0);
    c.steps.forEach((s, si) => {
      expect(s.step).toBe(si + 1);
      expect(c.grads[si]).toHaveLength(n);
      expect(s.params).toHaveLength(n);
      s.params.forEach((e, i) => {
        const g = c.grads[si][i];
        if (g !== null) {
          refOk(g, i);
          gradsSoFar[i]++;
        } else {
          // no grad: the param does not move
          expect(sameBits(c.get(e.data), prev[i])).toBe(true);
        }
        refOk(e.data, i);
        prev[i] = c.get(e.data);
        if (gradsSoFar[i] === 0) {
          expect(e.state).toBeNull();
          return;
        }
        expect(e.state).not.toBeNull();
        if (c.optimizer === 'adamw') {
          const st = e.state as AdamWState;
          expect(st.step).toBe(gradsSoFar[i]); // one per step that had a grad
          refOk(st.exp_avg, i);
          refOk(st.exp_avg_sq, i);
          expect(c.get(st.exp_avg_sq).every((v) => v >= 0)).toBe(true);
        } else {
          const st = e.state as SgdState;
          const hp = groupOf(i);
          if (hp.momentum === 0) {
            expect(st.momentum_buffer).toBeNull();
          } else {
            expect(st.momentum_buffer).not.toBeNull();
            refOk(st.momentum_buffer!, i);
            // the first buffer is a plain clone of d_p (= the grad without weight decay)
            if (gradsSoFar[i] === 1 && g !== null && hp.weight_decay === 0) {
              expect(sameBits(c.get(st.momentum_buffer!), c.get(g))).toBe(true);
            }
          }
        }
      });
    });
    expect(gradsSoFar.every((k) => k > 0)).toBe(true);
  });

  test('the cases cover the shapes and options the brief asks for', () => {
    const cases = names.map(loadTorchOptimCase);
    const shapes = new Set(cases.flatMap((c) => c.params.map((p) => p.shape.length)));
    expect([...shapes].sort()).toEqual([0, 1, 2, 4]);
    expect(cases.some((c) => c.groups.length > 1 && c.optimizer === 'adamw')).toBe(true);
    expect(cases.some((c) => c.groups.length > 1 && c.optimizer === 'sgd')).toBe(true);
    const adamw = cases.filter((c) => c.optimizer === 'adamw').flatMap((c) => c.groups.map((g) => g.resolved));
    expect(adamw.some((g) => g.weight_decay === 0.01)).toBe(true);
    expect(adamw.some((g) => g.weight_decay === 0)).toBe(true);
    const sgd = cases.filter((c) => c.optimizer === 'sgd').flatMap((c) => c.groups.map((g) => g.resolved));
    expect(sgd.some((g) => g.momentum === 0)).toBe(true);
    expect(sgd.some((g) => g.nesterov === true)).toBe(true);
    expect(sgd.some((g) => (g.dampening as number) > 0)).toBe(true);
    expect(cases.every((c) => c.grads.some((row) => row.includes(null)))).toBe(true);
  });
});

describe('lr_scheduler fixtures', () => {
  const f = loadSchedulerFixtures();

  test('all scheduler families are present', () => {
    const types = new Set(f.cases.map((c) => c.scheduler.type));
    expect([...types].sort()).toEqual(['CosineAnnealingLR', 'ExponentialLR', 'LambdaLR', 'LinearLR', 'MultiStepLR', 'OneCycleLR', 'SequentialLR', 'StepLR']);
    expect(new Set(f.cases.map((c) => c.name)).size).toBe(f.cases.length);
    expect(f.meta.torch_version).toMatch(/^1\.13\./);
  });

  const lambdaNames = (s: SchedulerSpec): string[] => {
    if (s.type === 'LambdaLR') return ([] as string[]).concat(s.args.lr_lambda as string | string[]);
    if (s.type === 'SequentialLR') return (s.args.schedulers as SchedulerSpec[]).flatMap(lambdaNames);
    return [];
  };

  test.each(f.cases.map((c) => [c.name, c] as const))('%s is consistent', (_name, c) => {
    const groups = c.optimizer.groups.length;
    expect(groups).toBe(2);
    expect(c.lr).toHaveLength(c.steps + 1);
    expect(c.lastEpoch).toBe(c.steps);
    for (const row of c.lr) {
      expect(row).toHaveLength(groups);
      for (const v of row) expect(typeof v).toBe('number');
    }
    expect(c.groupsAfterInit).toHaveLength(groups);
    c.groupsAfterInit.forEach((g, i) => expect(g.lr).toBe(c.lr[0][i]));
    if (c.momentumKey === null) {
      expect(c.momentum).toBeNull();
    } else {
      expect(c.scheduler.type).toBe('OneCycleLR');
      expect(c.momentumKey).toBe(c.optimizer.name === 'SGD' ? 'momentum' : 'betas[0]');
      expect(c.momentum).toHaveLength(c.steps + 1);
      for (const row of c.momentum!) expect(row).toHaveLength(groups);
    }
    if (c.scheduler.type === 'OneCycleLR') {
      expect(c.steps).toBe(c.scheduler.args.total_steps);
      expect(c.raisesOnStepCall).toBe(c.steps + 1);
    }
    for (const n of lambdaNames(c.scheduler)) expect(f.lambdas).toHaveProperty(n);

    const r = c.resume;
    expect(r.atStep).toBeGreaterThanOrEqual(0);
    expect(r.atStep).toBeLessThan(c.steps);
    expect(r.lastEpoch).toBe(r.atStep);
    expect(r.stateDict.last_epoch).toBe(r.atStep);
    expect(r.stateDict._last_lr).toEqual(c.lr[r.atStep]);
    r.optimizerGroups.forEach((g, i) => {
      expect(g.lr).toBe(c.lr[r.atStep][i]);
      if (c.momentumKey === 'momentum') expect(g.momentum).toBe(c.momentum![r.atStep][i]);
      if (c.momentumKey === 'betas[0]') expect((g.betas as number[])[0]).toBe(c.momentum![r.atStep][i]);
    });
    if (c.scheduler.type === 'SequentialLR') {
      expect((r.stateDict._schedulers as unknown[]).length).toBe((c.scheduler.args.schedulers as unknown[]).length);
    }
    expect(typeof r.schedulerOnlyContinues).toBe('boolean');
  });

  test('closed-form schedulers continue from the scheduler state alone, chainable ones need the optimizer groups', () => {
    const only = (t: string) => f.cases.filter((c) => c.scheduler.type === t).map((c) => c.resume.schedulerOnlyContinues);
    for (const t of ['LambdaLR', 'OneCycleLR']) expect(only(t).every(Boolean)).toBe(true);
    for (const t of ['CosineAnnealingLR', 'StepLR', 'MultiStepLR', 'ExponentialLR', 'LinearLR']) expect(only(t).some(Boolean)).toBe(false);
  });
});

describe('clip_grad_norm_ fixtures', () => {
  const f = loadClipFixtures();

  test('cases are present', () => {
    expect(f.cases.length).toBeGreaterThanOrEqual(10);
    expect(new Set(f.cases.map((c) => c.normType))).toEqual(new Set([2, 'inf']));
  });

  test.each(f.cases.map((c) => [c.name, c] as const))('%s is consistent', (_name, c) => {
    expect(c.gradsIn).toHaveLength(c.params.length);
    expect(c.gradsOut).toHaveLength(c.params.length);
    const total = num(c.totalNorm);
    const bits = f32FromBits(c.totalNormBits);
    expect(Object.is(bits, total) || (Number.isNaN(bits) && Number.isNaN(total))).toBe(true);
    expect(Object.is(Math.fround(total), total)).toBe(true);
    if (c.gradsIn.every((g) => g === null)) {
      expect(total).toBe(0);
      expect(c.clipCoef).toBeNull();
      return;
    }
    const coef = num(c.clipCoef!);
    const coefBits = f32FromBits(c.clipCoefBits!);
    expect(Object.is(coefBits, coef) || (Number.isNaN(coefBits) && Number.isNaN(coef))).toBe(true);
    if (!Number.isNaN(coef)) expect(coef).toBeLessThanOrEqual(1);
    if (c.maxNormIsTotalNorm) expect(c.maxNorm).toBe(total);
    const coefArr = Float32Array.of(coef);
    c.gradsIn.forEach((g, i) => {
      const o = c.gradsOut[i];
      if (g === null) {
        expect(o).toBeNull();
        return;
      }
      expect(o).not.toBeNull();
      expect(g[1]).toBe(numel(c.params[i].shape));
      expect(o![1]).toBe(g[1]);
      const a = f.get(g), b = f.get(o!);
      // every grad is multiplied by the float32 coef (also when it is 1)
      const want = a.map((v) => Math.fround(v * coefArr[0]));
      for (let k = 0; k < a.length; k++) {
        expect(Object.is(want[k], b[k]) || (Number.isNaN(want[k]) && Number.isNaN(b[k]))).toBe(true);
      }
    });
    if (!Number.isNaN(total)) expect(f32Bits(Float32Array.of(total))).toBe(c.totalNormBits);
  });
});
