/**
 * State dicts, param groups, schedulers, zeroGrad, diagnostics and the async step.
 */
import { AdamP, SGDP } from '../lib/index';
import type { Param } from '../lib/index';
import { availableBackends } from './helpers/backends';
import { gradOfKind, randn, rng } from './helpers/random';

function model(seed: number): Param[] {
  const r = rng(seed);
  return [
    { name: 'w1', data: randn(r, 6 * 20), grad: null, shape: [6, 4, 5] },
    { name: 'b1', data: randn(r, 6), grad: null, shape: [6] },
    { name: 'w2', data: randn(r, 30), grad: null, shape: [10, 3], channelAxis: -1 },
  ];
}

function gradsFor(ps: Param[], step: number): void {
  const r = rng(1000 + step);
  ps.forEach((p, i) => {
    p.grad = (step + i) % 5 === 0 ? null : gradOfKind(r, p.data, p.shape[0] ?? 1, ['random', 'channel', 'layer'][step % 3]);
  });
}

const makers = {
  adamp: (ps: Param[], backend: string) => new AdamP([{ params: ps.slice(0, 2) }, { params: ps.slice(2), lr: 3e-3, nesterov: true }], { weightDecay: 0.05 }, { backend: backend as never }),
  sgdp: (ps: Param[], backend: string) => new SGDP([{ params: ps.slice(0, 2) }, { params: ps.slice(2), dampening: 0.1 }], { lr: 0.05, momentum: 0.9, weightDecay: 1e-3 }, { backend: backend as never }),
};

describe.each(availableBackends())('backend %s', (backend) => {
  test.each(['adamp', 'sgdp'] as const)('%s: resuming from a state dict is bit-identical to never stopping', (kind) => {
    const straight = model(3);
    const a = makers[kind](straight, backend);
    for (let t = 1; t <= 8; t++) { gradsFor(straight, t); a.step(); }

    const first = model(3);
    const b = makers[kind](first, backend);
    for (let t = 1; t <= 4; t++) { gradsFor(first, t); b.step(); }
    const sd = JSON.parse(JSON.stringify(b.stateDict(), (_k, v) => (v instanceof Float32Array ? { f32: Array.from(v) } : v)),
      (_k, v) => (v && typeof v === 'object' && 'f32' in v ? Float32Array.from(v.f32) : v));
    const resumed = first.map((p) => ({ ...p, data: p.data.slice() }));
    const c = makers[kind](resumed, backend);
    c.loadStateDict(sd);
    for (let t = 5; t <= 8; t++) { gradsFor(resumed, t); c.step(); }
    resumed.forEach((p, i) => expect(Buffer.from(p.data.buffer).equals(Buffer.from(straight[i].data.buffer))).toBe(true));
    expect(JSON.stringify(c.lastStepInfo)).toBe(JSON.stringify(a.lastStepInfo));
  });

  test('stateDict returns copies; loadStateDict loads hyperparameters too', () => {
    const ps = model(4);
    const opt = makers.adamp(ps, backend);
    gradsFor(ps, 1);
    opt.step();
    const sd = opt.stateDict();
    expect(sd.paramGroups.map((g) => g.params)).toEqual([[0, 1], [2]]);
    expect(sd.paramGroups[1].lr).toBe(3e-3);
    const m = (sd.state[0] as { expAvg: Float32Array }).expAvg;
    m.fill(123);
    expect((opt.stateDict().state[0] as { expAvg: Float32Array }).expAvg[0]).not.toBe(123);
    sd.paramGroups[0].lr = 0.5;
    opt.loadStateDict(sd);
    expect(opt.paramGroups[0].lr).toBe(0.5);
    expect((opt.stateDict().state[0] as { expAvg: Float32Array }).expAvg[0]).toBe(123);
  });

  test.each([
    ['a wrong state length', (sd: any) => { sd.state[0].expAvg = new Float32Array(3); }, 'stateDict.state[0] (param \'w1\').expAvg has length 3, the param has 120 elements'],
    ['a group count mismatch', (sd: any) => { sd.paramGroups.pop(); }, 'stateDict has 1 param groups, this optimizer has 2'],
    ['a param count mismatch', (sd: any) => { sd.paramGroups[0].params.push(7); }, 'stateDict.paramGroups[0] has 3 params'],
    ['a bad hyperparameter', (sd: any) => { sd.paramGroups[1].betas = [2, 0.9]; }, 'stateDict.paramGroups[1].betas[0] must be in [0, 1), got 2'],
    ['an unknown index', (sd: any) => { sd.state[9] = sd.state[0]; }, 'stateDict.state has an entry for param index 9'],
    ['a bad step', (sd: any) => { sd.state[0].step = -1; }, 'step must be a non-negative integer'],
  ])('loadStateDict refuses %s and changes nothing', (_what, breakIt, message) => {
    const ps = model(5);
    const opt = makers.adamp(ps, backend);
    gradsFor(ps, 1);
    opt.step();
    const before = JSON.stringify(opt.stateDict(), (_k, v) => (v instanceof Float32Array ? Array.from(v) : v));
    const sd = opt.stateDict();
    breakIt(sd);
    expect(() => opt.loadStateDict(sd)).toThrow(message);
    expect(JSON.stringify(opt.stateDict(), (_k, v) => (v instanceof Float32Array ? Array.from(v) : v))).toBe(before);
  });

  test('a scheduler changing lr between steps takes effect', () => {
    const run = (lrs: number[]) => {
      const ps = model(6);
      const opt = new SGDP(ps, { lr: lrs[0], momentum: 0.9 }, { backend });
      lrs.forEach((lr, t) => { opt.paramGroups[0].lr = lr; gradsFor(ps, t + 1); opt.step(); });
      return ps[0].data;
    };
    const a = run([0.1, 0.1, 0.1]), b = run([0.1, 0.01, 0.001]);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(false);
    const c = run([0.1, 0.01, 0.001]);
    expect(Buffer.from(c.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });

  test('zeroGrad fills with zeros, or sets null', () => {
    const ps = model(7);
    gradsFor(ps, 1);
    const opt = new AdamP(ps, {}, { backend });
    opt.zeroGrad();
    expect(ps.every((p) => p.grad === null || p.grad.every((x) => x === 0))).toBe(true);
    opt.zeroGrad(true);
    expect(ps.every((p) => p.grad === null)).toBe(true);
  });

  test('lastStepInfo reports the decision, what it compared, and the effective step size', () => {
    const r = rng(8);
    const p: Param = { name: 'w', data: randn(r, 40), grad: null, shape: [4, 10] };
    p.grad = gradOfKind(r, p.data, 4, 'channel');
    const before = p.data.slice();
    const opt = new AdamP([p], { lr: 0.01 }, { backend, diagnostics: 'full' });
    expect(opt.lastStepInfo).toEqual([]);
    opt.step();
    const info = opt.lastStepInfo[0];
    expect(info).toMatchObject({ index: 0, name: 'w', projection: 'channel', layerCos: null, layerThreshold: null, wdRatio: 0.1 });
    expect(info.channelMaxCos!).toBeLessThan(info.channelThreshold!);
    expect(info.channelThreshold).toBe(Math.fround(0.1 / Math.sqrt(10)));
    let nb = 0, na = 0, nd = 0;
    for (let i = 0; i < 40; i++) { nb += before[i] ** 2; na += p.data[i] ** 2; nd += (p.data[i] - before[i]) ** 2; }
    expect(info.weightNorm!).toBeCloseTo(Math.sqrt(na), 5);
    expect(info.updateNorm!).toBeCloseTo(Math.sqrt(nd), 6);
    expect(info.effectiveStepSize!).toBeCloseTo(Math.sqrt(nd) / Math.sqrt(nb), 6);
    // The default diagnostics report the decision only: the norms cost reductions the step does not need.
    const q: Param = { name: 'w', data: before.slice(), grad: p.grad, shape: [4, 10] };
    const lean = new AdamP([q], { lr: 0.01 }, { backend });
    lean.step();
    expect(lean.lastStepInfo[0]).toMatchObject({ projection: 'channel', channelMaxCos: info.channelMaxCos, weightNorm: null, updateNorm: null, effectiveStepSize: null });
    expect(q.data).toEqual(p.data);
  });

  test('channelAxis -1 tests output channels on the last axis (TensorFlow.js layout)', () => {
    const r = rng(9);
    // A dense kernel [in=12, out=5]: make the grad orthogonal to each output column.
    const inDim = 12, out = 5;
    const w = randn(r, inDim * out);
    const col = (a: Float32Array, c: number) => Array.from({ length: inDim }, (_, i) => a[i * out + c]);
    const g = randn(r, inDim * out);
    for (let c = 0; c < out; c++) {
      const wc = col(w, c), gc = col(g, c);
      const k = wc.reduce((s, x, i) => s + x * gc[i], 0) / wc.reduce((s, x) => s + x * x, 0);
      for (let i = 0; i < inDim; i++) g[i * out + c] -= k * wc[i];
    }
    const last: Param = { data: w.slice(), grad: g.slice(), shape: [inDim, out], channelAxis: -1 };
    const first: Param = { data: w.slice(), grad: g.slice(), shape: [inDim, out] };
    const a = new AdamP([last], {}, { backend }); a.step();
    const b = new AdamP([first], {}, { backend }); b.step();
    expect(a.lastStepInfo[0].projection).toBe('channel');
    expect(a.lastStepInfo[0].channelThreshold).toBe(Math.fround(0.1 / Math.sqrt(inDim)));
    expect(b.lastStepInfo[0].channelThreshold).toBe(Math.fround(0.1 / Math.sqrt(out)));
    expect(b.lastStepInfo[0].projection).not.toBe('channel');
  });

  test('stepAsync resolves with the same result as step(), and guards against overlapping use', async () => {
    const ps1 = model(10), ps2 = model(10);
    const a = makers.adamp(ps1, backend), b = makers.adamp(ps2, backend);
    for (let t = 1; t <= 3; t++) {
      gradsFor(ps1, t); gradsFor(ps2, t);
      a.step();
      const pending = b.stepAsync();
      if (backend !== 'js') {
        expect(() => b.step()).toThrow(expect.objectContaining({ code: 'ERR_ADAMP_STEP_IN_FLIGHT' }));
        expect(() => b.stateDict()).toThrow(expect.objectContaining({ code: 'ERR_ADAMP_STEP_IN_FLIGHT' }));
        await expect(b.stepAsync()).rejects.toMatchObject({ code: 'ERR_ADAMP_STEP_IN_FLIGHT' });
      }
      await pending;
    }
    ps1.forEach((p, i) => expect(Buffer.from(p.data.buffer).equals(Buffer.from(ps2[i].data.buffer))).toBe(true));
  });

  test('dispose() ends the optimizer; Symbol.dispose does the same', () => {
    const ps = model(11);
    const opt = new AdamP(ps, {}, { backend });
    opt[Symbol.dispose]();
    expect(() => opt.step()).toThrow(expect.objectContaining({ code: 'ERR_ADAMP_DISPOSED' }));
  });
});
