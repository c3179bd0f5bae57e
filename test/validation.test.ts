/**
 * Bad input gets a clear error naming the parameter and the problem, before anything is
 * mutated: a rejected step changes no byte of params or state.
 */
import { AdamP, SGDP } from '../lib/index';
import type { Param } from '../lib/index';
import { availableBackends } from './helpers/backends';
import { randn, rng } from './helpers/random';

/** Every byte an optimizer step could touch: params and the state dict. */
function snapshot(params: Param[], opt: AdamP | SGDP): string {
  const sd = opt.stateDict();
  const arrays: Float32Array[] = params.map((p) => p.data);
  for (const s of Object.values(sd.state)) for (const v of Object.values(s as object)) if (v instanceof Float32Array) arrays.push(v);
  return arrays.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex')).join('|') + JSON.stringify(sd.paramGroups) +
    JSON.stringify(Object.values(sd.state).map((s) => (s as { step?: number }).step));
}

function expectError(fn: () => unknown, message: string | RegExp): void {
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  expect(err).toBeDefined();
  expect((err as { code: string }).code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
  if (typeof message === 'string') expect((err as Error).message).toContain(message);
  else expect((err as Error).message).toMatch(message);
}

function model(seed = 1): Param[] {
  const r = rng(seed);
  return [
    { name: 'conv1.weight', data: randn(r, 8 * 3 * 3 * 3), grad: randn(r, 216), shape: [8, 3, 3, 3] },
    { name: 'conv1.bias', data: randn(r, 8), grad: randn(r, 8), shape: [8] },
    { name: 'fc.weight', data: randn(r, 15), grad: randn(r, 15), shape: [3, 5] },
  ];
}

describe('hyperparameters', () => {
  test.each([
    [{ lr: -1 }, 'options.lr must be >= 0, got -1'],
    [{ lr: NaN }, 'options.lr must be a finite number, got NaN'],
    [{ betas: [0.9, 1] }, 'options.betas[1] must be in [0, 1), got 1'],
    [{ betas: [0.9] }, 'options.betas must be a pair [beta1, beta2]'],
    [{ eps: -1e-8 }, 'options.eps must be >= 0'],
    [{ weightDecay: -0.1 }, 'options.weightDecay must be >= 0'],
    [{ delta: Infinity }, 'options.delta must be a finite number, got Infinity'],
    [{ nesterov: 1 }, 'options.nesterov must be a boolean, got 1'],
    [{ weight_decay: 0.1 }, "options.weight_decay is not an option; did you mean 'weightDecay'?"],
  ])('AdamP %j -> %s', (opts, message) => {
    expectError(() => new AdamP(model(), opts as never), message);
  });

  test('SGDP requires lr', () => {
    expectError(() => new SGDP(model(), {} as never), 'options.lr is required for SGDP');
    expectError(() => new SGDP(model(), undefined as never), 'options.lr is required for SGDP');
  });

  test('SGDP rejects momentum >= 1 with weight decay instead of dividing by zero', () => {
    expectError(() => new SGDP(model(), { lr: 0.1, momentum: 1, weightDecay: 1e-4 }), 'momentum must be < 1 when weightDecay > 0');
    expect(() => new SGDP(model(), { lr: 0.1, momentum: 1 })).not.toThrow();
  });

  test('per-group overrides are validated with the group named', () => {
    const ps = model();
    expectError(() => new AdamP([{ params: [ps[0]] }, { params: [ps[1]], lr: -2 }]), 'paramGroups[1].lr must be >= 0, got -2');
  });

  test('an unknown backend is rejected', () => {
    expectError(() => new AdamP(model(), {}, { backend: 'tpu' as never }), "config.backend must be 'auto', 'js', 'native' or 'cuda'");
  });
});

describe('params', () => {
  test('the message of a shape mismatch names the param and the numbers', () => {
    const p: Param = { name: 'conv1.weight', data: new Float32Array(15), grad: new Float32Array(12), shape: [3, 5] };
    const opt = new AdamP([p]);
    expectError(() => opt.step(), "grad length 12 does not match shape [3,5] of param 'conv1.weight' (expected 15)");
  });

  test.each([
    [{ data: new Float64Array(4), grad: null, shape: [4] }, 'data of param #0 must be a Float32Array, got a Float64Array of length 4'],
    [{ data: new Float32Array(4), grad: null, shape: [2, 3] }, 'data length 4 does not match shape [2,3] of param #0 (expected 6)'],
    [{ data: new Float32Array(4), grad: null, shape: [2, -2] }, 'shape of param #0 must hold non-negative integers'],
    [{ data: new Float32Array(4), grad: null, shape: [2, 2], channelAxis: 2 }, 'channelAxis of param #0 must be an integer in [-2, 1]'],
    [{ data: new Float32Array(4), grad: [1, 2, 3, 4], shape: [4] }, 'grad of param #0 must be a Float32Array or null, got an array of length 4'],
  ])('%#: %s', (p, message) => {
    expectError(() => new AdamP([p as unknown as Param]).step(), message);
  });

  test('a param listed twice is rejected', () => {
    const ps = model();
    expectError(() => new AdamP([{ params: [ps[0]] }, { params: [ps[0]] }]), "param 'conv1.weight' appears more than once");
  });

  test('empty params are rejected', () => {
    expectError(() => new AdamP([]), 'params is an empty list');
  });
});

describe.each(availableBackends())('a rejected step changes nothing (backend %s)', (backend) => {
  const cases: Array<[string, (ps: Param[], opt: AdamP | SGDP) => void, string]> = [
    ['the last param has a bad grad', (ps) => { ps[2].grad = new Float32Array(3); }, "grad length 3 does not match shape [3,5] of param 'fc.weight'"],
    ['a scheduler wrote NaN into lr', (_ps, opt) => { opt.paramGroups[0].lr = NaN; }, 'paramGroups[0].lr must be a finite number, got NaN'],
    ['data was replaced by a wrong-size array', (ps) => { ps[1].data = new Float32Array(7); }, "data length 7 does not match shape [8] of param 'conv1.bias'"],
    ['a gradient buffer was transferred away', (ps) => { const b = ps[2].grad!.buffer as ArrayBuffer; structuredClone(b, { transfer: [b] }); }, 'was its ArrayBuffer transferred or detached?'],
    ['grad aliases data', (ps) => { ps[2].grad = ps[2].data; }, "grad of param 'fc.weight' overlaps data of param 'fc.weight'"],
  ];
  test.each(cases)('when %s', (_what, breakIt, message) => {
    for (const make of [(ps: Param[]) => new AdamP(ps, { weightDecay: 0.1 }, { backend }), (ps: Param[]) => new SGDP(ps, { lr: 0.1, momentum: 0.9, weightDecay: 0.1 }, { backend })]) {
      const ps = model();
      const opt = make(ps);
      opt.step(); // state exists
      for (const p of ps) p.grad = randn(rng(5), p.data.length);
      breakIt(ps, opt);
      const before = snapshotSafe(ps, opt);
      expectError(() => opt.step(), message);
      expect(snapshotSafe(ps, opt)).toBe(before);
    }
  });

  test('stepAsync rejects before changing anything too', async () => {
    const ps = model();
    const opt = new AdamP(ps, {}, { backend });
    ps[0].grad = new Float32Array(5);
    const before = snapshot(ps, opt);
    await expect(opt.stepAsync()).rejects.toMatchObject({ code: 'ERR_ADAMP_INVALID_ARGUMENT' });
    expect(snapshot(ps, opt)).toBe(before);
  });
});

/** snapshot() that tolerates a param whose data is deliberately invalid. */
function snapshotSafe(ps: Param[], opt: AdamP | SGDP): string {
  return snapshot(ps, opt);
}
