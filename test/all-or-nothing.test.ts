/**
 * A step is all or nothing, and every refusal is an AdampError with a code, on every backend:
 * the cases a hostile-input review found (several groups with a bad param in a later one, aliasing
 * host arrays, undefined or deleted hyperparameters, state dicts of another optimizer, config
 * typos, arrays from another realm, shared memory), and a native core that runs out of memory.
 */
import * as vm from 'vm';
import { AdamP, AdamW, SGD, SGDP } from '../lib/index';
import type { Param } from '../lib/index';
import { loadAddon } from '../lib/binding/load';
import { availableBackends } from './helpers/backends';
import { randn, rng } from './helpers/random';

function snapshot(ps: Param[], opt: { stateDict(): unknown }): string {
  return JSON.stringify({ p: ps.map((p) => Array.from(p.data)), g: ps.map((p) => (p.grad ? Array.from(p.grad) : null)), sd: opt.stateDict() },
    (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Float32Array) : v));
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    const err = e as { name?: string; code?: string; message?: string };
    if (err.name !== 'AdampError') throw new Error(`not an AdampError: ${err.name}: ${err.message}`);
    return `${err.code}: ${err.message}`;
  }
  throw new Error('did not throw');
}

function params(seed: number, n = 3): Param[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const shape = i % 2 === 0 ? [4, 6] : [6];
    const size = shape.reduce((a, b) => a * b, 1);
    return { name: `p${i}`, data: randn(r, size), grad: randn(r, size), shape };
  });
}

describe.each(availableBackends().filter((b) => b !== 'cuda'))('backend %s', (backend) => {
  const config = { backend };

  test('a bad param in a later group leaves the earlier groups unstepped and creates no state', () => {
    const ps = params(1, 4);
    const opt = new AdamP([{ params: ps.slice(0, 2) }, { params: ps.slice(2) }], { lr: 0.1 }, config);
    opt.step();
    const before = snapshot(ps, opt);
    const bad = ps[3];
    const good = bad.grad;
    for (const breakIt of [
      () => { bad.grad = new Float32Array(5); }, // wrong length
      () => { bad.grad = 'x' as never; },
      () => { bad.data = new Float32Array(0); }, // detached look-alike
    ]) {
      const data = bad.data;
      breakIt();
      expect(codeOf(() => opt.step())).toMatch(/^ERR_ADAMP_INVALID_ARGUMENT: .*param 'p3'/);
      bad.data = data;
      bad.grad = good;
      expect(snapshot(ps, opt)).toBe(before);
    }
    // a first step that fails creates no state
    const fresh = params(2, 3);
    const o2 = new SGDP([{ params: fresh.slice(0, 2) }, { params: fresh.slice(2) }], { lr: 0.1, momentum: 0.9 }, config);
    fresh[2].grad = new Float32Array(1);
    expect(codeOf(() => o2.step())).toMatch(/ERR_ADAMP_INVALID_ARGUMENT/);
    expect(o2.stateDict().state).toEqual({});
  });

  test('a transferred (detached) buffer is caught by its byte length, before anything changes', () => {
    const ps = params(3);
    const opt = new AdamW(ps, {}, config);
    const before = snapshot(ps, opt);
    const buf = ps[1].grad!.buffer as ArrayBuffer;
    structuredClone(buf, { transfer: [buf] });
    expect(codeOf(() => opt.step())).toMatch(/grad length 0 .*transferred or detached/);
    ps[1].grad = null;
    expect(JSON.parse(snapshot(ps, opt)).p).toEqual(JSON.parse(before).p);
  });

  test('params that overlap, or a grad that is another param\'s data, are refused', () => {
    const buf = new Float32Array(40);
    const a: Param = { name: 'a', data: buf.subarray(0, 24), grad: new Float32Array(24), shape: [4, 6] };
    const b: Param = { name: 'b', data: buf.subarray(20, 26), grad: new Float32Array(6), shape: [6] };
    expect(codeOf(() => new AdamP([a, b], {}, config).step())).toMatch(/data of param 'b' overlaps data of param 'a'/);
    const c: Param = { name: 'c', data: buf.subarray(24, 30), grad: null, shape: [6] };
    c.grad = a.data.subarray(0, 6);
    expect(codeOf(() => new AdamP([a, c], {}, config).step())).toMatch(/grad of param 'c' overlaps data of param 'a'/);
    // two params sharing one gradient array read it only: that is allowed
    const shared = new Float32Array(6).fill(0.5);
    const d: Param = { name: 'd', data: new Float32Array(6), grad: shared, shape: [6] };
    const e: Param = { name: 'e', data: new Float32Array(6), grad: shared, shape: [6] };
    new SGD([d, e], { lr: 0.1 }, config).step();
    expect(d.data).toEqual(e.data);
  });

  test('undefined or deleted hyperparameters in paramGroups are refused at the next step', () => {
    const ps = params(4);
    const opt = new AdamP(ps, { lr: 0.01 }, config);
    const before = snapshot(ps, opt);
    (opt.paramGroups[0] as { lr?: number }).lr = undefined;
    expect(codeOf(() => opt.step())).toMatch(/paramGroups\[0\]\.lr is undefined/);
    delete (opt.paramGroups[0] as { eps?: number }).eps;
    (opt.paramGroups[0] as { lr?: number }).lr = 0.01;
    expect(codeOf(() => opt.step())).toMatch(/paramGroups\[0\]\.eps is missing/);
    const now = JSON.parse(snapshot(ps, opt)), then = JSON.parse(before);
    expect([now.p, now.sd.state]).toEqual([then.p, then.sd.state]);
  });

  test('loadStateDict refuses missing hyperparameters and the state dict of another optimizer', () => {
    const ps = params(5);
    const adamp = new AdamP(ps, {}, config);
    adamp.step();
    const sd = adamp.stateDict();
    const { lr: _lr, ...noLr } = sd.paramGroups[0];
    expect(codeOf(() => adamp.loadStateDict({ ...sd, paramGroups: [noLr as never] }))).toMatch(/paramGroups\[0\]\.lr is missing/);
    const sgdp = new SGDP(params(5), { lr: 0.1 }, config);
    expect(codeOf(() => sgdp.loadStateDict(sd as never))).toMatch(/another optimizer/);
    const adamw = new AdamW(params(5), {}, config);
    // same slots and options but delta/wdRatio/nesterov: AdamW has none of them
    expect(codeOf(() => adamw.loadStateDict(sd as never))).toMatch(/another optimizer/);
  });

  test('config keys and options are checked as strictly as hyperparameters', () => {
    const ps = params(6);
    expect(codeOf(() => new AdamP(ps, {}, { backnd: 'js' } as never))).toMatch(/config\.backnd is not a config key; did you mean 'backend'\?/);
    expect(codeOf(() => new AdamP(ps, {}, { thread: 1 } as never))).toMatch(/did you mean 'threads'\?/);
    expect(codeOf(() => new AdamP(ps, {}, { threads: 257 }))).toMatch(/config\.threads must be an integer in \[1, 256\]/);
    expect(codeOf(() => new AdamP(ps, new Map() as never, config))).toMatch(/options must be a plain object/);
    expect(codeOf(() => new AdamP(ps, [] as never, config))).toMatch(/options must be a plain object/);
    expect(codeOf(() => new SGDP(ps, { lr: 0.1, weight_decay: 1 } as never, config))).toMatch(/did you mean 'weightDecay'\?/);
  });

  test('arrays from another realm are taken, as state dicts take them', () => {
    const ctx = vm.createContext({});
    const foreign = vm.runInContext('new Float32Array([0.5, -1, 2, 3, 1, 1])', ctx) as Float32Array;
    const grad = vm.runInContext('new Float32Array(6).fill(0.25)', ctx) as Float32Array;
    expect(foreign instanceof Float32Array).toBe(false);
    const p: Param = { data: foreign, grad, shape: [2, 3] };
    const opt = new AdamP([p], { lr: 0.1 }, config);
    opt.step();
    expect(foreign[0]).not.toBe(0.5);
  });

  test('params and grads in shared memory (SharedArrayBuffer) step like any other', () => {
    const r = rng(7);
    const a = randn(r, 24), g = randn(r, 24);
    const sa = new Float32Array(new SharedArrayBuffer(96)), sg = new Float32Array(new SharedArrayBuffer(96));
    sa.set(a);
    sg.set(g);
    const plain: Param = { data: a.slice(), grad: g, shape: [4, 6] };
    const shared: Param = { data: sa, grad: sg, shape: [4, 6] };
    const o1 = new AdamP([plain], { lr: 0.1 }, config), o2 = new AdamP([shared], { lr: 0.1 }, config);
    o1.step();
    o2.step();
    expect(Array.from(sa)).toEqual(Array.from(plain.data));
  });

  test('zeroGrad checks every gradient before clearing any', () => {
    const ps = params(8);
    const opt = new AdamP(ps, {}, config);
    const before = ps.map((p) => p.grad!.slice());
    ps[2].grad = 3 as never;
    expect(codeOf(() => opt.zeroGrad())).toMatch(/grad of param 'p2' must be a Float32Array or null/);
    expect(ps[0].grad).toEqual(before[0]);
    ps[2].grad = before[2];
    opt.zeroGrad();
    expect(ps.every((p) => p.grad!.every((x) => x === 0))).toBe(true);
  });

  test('step(closure) calls the closure first and returns its loss', () => {
    const ps = params(9);
    const opt = new SGD(ps, { lr: 0.1 }, config);
    const calls: string[] = [];
    const loss = opt.step(() => { calls.push('closure'); ps.forEach((p) => p.grad!.fill(1)); return 42; });
    expect(loss).toBe(42);
    expect(calls).toEqual(['closure']);
    expect(codeOf(() => opt.step(5 as never))).toMatch(/closure must be a function/);
  });
});

/**
 * The native core allocates everything a step needs before its first kernel (native/cpu/step.h),
 * so a step that runs out of memory throws ERR_ADAMP_NATIVE having changed nothing. The addon's
 * test-only hook fails each allocation of a step in turn; native/tests/test_all_or_nothing.cpp does the same below the
 * addon for every heap allocation (operator new).
 */
describe('native: a step the core cannot allocate for changes nothing', () => {
  const loaded = loadAddon();
  const addon = 'addon' in loaded ? loaded.addon : undefined;
  const native = availableBackends().includes('native');

  /** Two groups: a conv weight (rows; the speculative pass when it is on) and a bias; channels innermost (lanes) and long rows (pieces). */
  function groups(seed: number): Param[][] {
    const r = rng(seed);
    const p = (name: string, shape: number[], channelAxis?: number): Param => {
      const n = shape.reduce((a, b) => a * b, 1);
      return { name, data: randn(r, n), grad: randn(r, n), shape, ...(channelAxis === undefined ? {} : { channelAxis }) };
    };
    return [[p('conv', [8, 3, 3, 3]), p('bias', [8])], [p('lanes', [50, 20], 1), p('pieces', [2, 40000])]];
  }
  const bytes = (ps: Param[][], opt: { stateDict(): unknown }): string =>
    JSON.stringify({ p: ps.flat().map((p) => Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength).toString('base64')), sd: opt.stateDict() },
      (_k, v) => (ArrayBuffer.isView(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : v));
  const nativeCode = (e: unknown): string => `${(e as { name?: string }).name}: ${(e as { code?: string }).code}`;

  (native ? test.each([
    ['AdamP', 1, 'off'], ['AdamP', 2, 'off'], ['AdamP', 2, 'on'], ['SGDP', 1, 'off'], ['SGDP', 2, 'off'],
  ] as const) : test.skip.each([['AdamP', 1, 'off']] as const))('%s, %d threads, speculation %s: each allocation of a step in turn', async (name, threads, spec) => {
    expect(typeof addon?.testOnlyFailAllocation).toBe('function');
    const hook = addon!.testOnlyFailAllocation!.bind(addon);
    addon!.setSpeculation(spec);
    try {
      const make = (): { ps: Param[][]; opt: AdamP | SGDP } => {
        const ps = groups(21);
        const gs = ps.map((params) => ({ params }));
        const config = { backend: 'native' as const, threads };
        const opt = name === 'AdamP' ? new AdamP(gs, { lr: 0.01, weightDecay: 0.1 }, config) : new SGDP(gs, { lr: 0.01, weightDecay: 0.1 }, config);
        opt.step();
        return { ps, opt };
      };
      const a = make(), twin = make(), probe = make();
      hook(0);
      probe.opt.step();
      const total = hook(-1);
      expect(total).toBeGreaterThan(10);
      const before = bytes(a.ps, a.opt);
      try {
        for (let n = 1; n <= total; n++) {
          hook(n);
          let code = 'no error';
          try {
            if (n % 5 === 0) await a.opt.stepAsync();
            else a.opt.step();
          } catch (e) {
            code = nativeCode(e);
          }
          hook(-1);
          expect(`allocation ${n} of ${total}: ${code}`).toBe(`allocation ${n} of ${total}: AdampError: ERR_ADAMP_NATIVE`);
          expect(bytes(a.ps, a.opt) === before).toBe(true);
        }
      } finally {
        hook(-1);
      }
      a.opt.step();
      twin.opt.step();
      expect(bytes(a.ps, a.opt) === bytes(twin.ps, twin.opt)).toBe(true);
      expect(a.opt.lastStepInfo).toEqual(twin.opt.lastStepInfo);
    } finally {
      addon!.setSpeculation('off');
    }
  });
});
