/**
 * Custom tensor stores: an optimizer driven from a store of named tensors without copies, and
 * the worked examples in examples/, run as real child processes against the built package.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AdamP, SGDP, paramsFromStore, groupsFromStore, storeParam } from '../lib/index';
import type { StoredTensor, TensorStore } from '../lib/store';
import type { Param } from '../lib/types';
import { randn, rng } from './helpers/random';

const root = path.join(__dirname, '..');

function makeStore(seed: number): Map<string, StoredTensor> {
  const r = rng(seed);
  const t = (shape: number[], grad = true): StoredTensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    return { data: randn(r, n), grad: grad ? randn(r, n, 0.1) : null, shape };
  };
  return new Map([
    ['conv.weight', t([6, 2, 3, 3])],
    ['conv.bias', t([6])],
    ['fc.weight', t([4, 54])],
    ['fc.bias', t([4], false)],
  ]);
}

function asParams(store: Map<string, StoredTensor>): Param[] {
  return [...store].map(([name, t]) => ({ name, data: t.data, grad: t.grad, shape: t.shape }));
}

function errOf(fn: () => unknown): { code?: string; message: string } {
  try { fn(); } catch (e) { return e as { code?: string; message: string }; }
  throw new Error('expected a throw');
}

describe('paramsFromStore', () => {
  test('the optimizer updates the store\'s own arrays in place, exactly as with plain params', () => {
    const store = makeStore(1);
    const arrays = new Map([...store].map(([k, t]) => [k, t.data]));
    const reference = makeStore(1);
    const refParams = asParams(reference);
    const a = new AdamP(paramsFromStore(store), { lr: 0.01, weightDecay: 0.1 }, { backend: 'js' });
    const b = new AdamP(refParams, { lr: 0.01, weightDecay: 0.1 }, { backend: 'js' });
    for (let k = 0; k < 4; k++) {
      // New gradient arrays swapped into the store each step are seen (no stale copies).
      const r = rng(100 + k);
      for (const [name, t] of store) {
        if (name === 'fc.bias') continue;
        t.grad = randn(r, t.data.length, 0.1);
        refParams.find((p) => p.name === name)!.grad = t.grad.slice();
      }
      a.step();
      b.step();
    }
    for (const [name, t] of store) {
      expect(t.data).toBe(arrays.get(name)); // same Float32Array object
      expect(t.data).toEqual(reference.get(name)!.data); // bit-identical values
    }
    expect(store.get('fc.bias')!.data).toEqual(makeStore(1).get('fc.bias')!.data); // no grad: untouched
    expect(a.lastStepInfo.map((i) => i.name)).toEqual(['conv.weight', 'conv.bias', 'fc.weight', 'fc.bias']);
    expect(a.lastStepInfo.map((i) => i.projection)).toEqual(b.lastStepInfo.map((i) => i.projection));
    expect(a.stateDict()).toEqual(b.stateDict());
  });

  test('selection by list (in that order), RegExp and predicate; a default channel axis', () => {
    const store = makeStore(2);
    expect(paramsFromStore(store, { select: ['fc.weight', 'conv.weight'] }).map((p) => p.name)).toEqual(['fc.weight', 'conv.weight']);
    expect(paramsFromStore(store, { select: /bias$/g }).map((p) => p.name)).toEqual(['conv.bias', 'fc.bias']);
    expect(paramsFromStore(store, { select: (n) => n.startsWith('conv') }).map((p) => p.name)).toEqual(['conv.weight', 'conv.bias']);
    const [p] = paramsFromStore(store, { select: ['fc.weight'], channelAxis: -1 });
    expect(p.channelAxis).toBe(-1);
    store.get('fc.weight')!.channelAxis = 0; // the tensor's own axis wins
    expect(p.channelAxis).toBe(0);
  });

  test('groupsFromStore: per-group hyperparameters, each tensor in the first group that selects it', () => {
    const store = makeStore(3);
    const opt = new SGDP(groupsFromStore(store, [
      { select: /weight$/, weightDecay: 1e-2 },
      { select: () => true, weightDecay: 0, momentum: 0.5 },
    ]), { lr: 0.1, momentum: 0.9 }, { backend: 'js' });
    expect(opt.paramGroups.map((g) => g.params.map((p) => p.name))).toEqual([['conv.weight', 'fc.weight'], ['conv.bias', 'fc.bias']]);
    expect(opt.paramGroups.map((g) => [g.weightDecay, g.momentum])).toEqual([[1e-2, 0.9], [0, 0.5]]);
    opt.step();
  });

  test('a get/set store that is not a Map, with tensors replaced between steps', () => {
    class Registry implements TensorStore {
      private readonly tensors: Record<string, StoredTensor> = {};
      set(name: string, t: StoredTensor) { this.tensors[name] = t; }
      get(name: string) { return this.tensors[name]; }
      keys() { return Object.keys(this.tensors); }
    }
    const reg = new Registry();
    reg.set('w', { data: new Float32Array([1, 2, 3, 4, 5, 6]), grad: new Float32Array(6).fill(0.5), shape: [2, 3] });
    const opt = new SGDP(paramsFromStore(reg), { lr: 0.1 }, { backend: 'js' });
    opt.step();
    expect(Array.from(reg.get('w')!.data)).toEqual([0.95, 1.95, 2.95, 3.95, 4.95, 5.95].map(Math.fround));
    // The store replaces the entry (same shape): the optimizer follows.
    const replaced = { data: new Float32Array(6).fill(1), grad: new Float32Array(6).fill(1), shape: [2, 3] };
    reg.set('w', replaced);
    opt.step();
    expect(replaced.data[0]).toBeCloseTo(0.9, 6);
  });

  test('errors name the store tensor and the problem', () => {
    const store = makeStore(4);
    expect(errOf(() => paramsFromStore(store, { select: ['fc.weight', 'nope'] })).message).toMatch(/tensor 'nope', which the store does not hold/);
    expect(errOf(() => paramsFromStore(store, { select: /^zzz/ })).message).toMatch(/matched no tensor/);
    expect(errOf(() => paramsFromStore({} as TensorStore)).message).toMatch(/keys\(\) and get\(name\)/);
    expect(errOf(() => groupsFromStore(store, [{ select: /./ }, { select: /weight/ }])).message).toMatch(/groups\[1\]\.select matched no tensor/);
    const p = storeParam(store, 'fc.weight');
    const opt = new AdamP([p], {}, { backend: 'js' });
    store.get('fc.weight')!.grad = new Float32Array(3);
    const e = errOf(() => opt.step());
    expect(e.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(e.message).toContain("param 'fc.weight'");
    store.delete('fc.weight');
    expect(errOf(() => opt.step()).message).toMatch(/tensor 'fc.weight' is no longer in the store/);
  });
});

describe('worked examples (child processes, the built package as users load it)', () => {
  function runExample(file: string, args: string[] = []): Record<string, any> {
    const out = execFileSync(process.execPath, [path.join(root, 'examples', file), ...args], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const last = out.trim().split('\n').pop()!;
    return JSON.parse(last);
  }

  test('examples/tensor-store.js: trains from a Map store in place, checkpoints and resumes bit-identically', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-example-'));
    try {
      const r = runExample('tensor-store.js', [dir]);
      expect(r.lastLoss).toBeLessThan(0.2 * r.firstLoss);
      expect(r.sameArrayUpdatedInPlace).toBe(true);
      expect(r.resumedIdenticalToUninterrupted).toBe(true);
      expect(fs.statSync(path.join(dir, 'optimizer.safetensors')).size).toBe(r.checkpointBytes);
      expect(r.lastStep.map((s: { name: string }) => s.name)).toEqual(['fc1.weight', 'fc2.weight', 'fc1.bias', 'fc2.bias']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('adamp/tfjs loads from CommonJS and from an ES module', () => {
    const cjs = execFileSync(process.execPath, ['-e', `
      const { AdamP, SGDP } = require('adamp/tfjs');
      const tf = require('@tensorflow/tfjs-core');
      console.log(new AdamP() instanceof tf.Optimizer, new SGDP({ lr: 1 }).getClassName());
    `], { cwd: root, encoding: 'utf8' });
    expect(cjs.trim().split('\n').pop()).toBe('true SGDP');
    const esm = execFileSync(process.execPath, ['--input-type=module', '-e', `
      import { AdamP, SGDP, registerOptimizers } from 'adamp/tfjs';
      console.log(typeof AdamP, typeof SGDP, typeof registerOptimizers);
    `], { cwd: root, encoding: 'utf8' });
    expect(esm.trim().split('\n').pop()).toBe('function function function');
  });

  test('examples/tfjs-fit.js: require("adamp/tfjs") in model.fit, save with the optimizer, reload, continue', () => {
    const r = runExample('tfjs-fit.js');
    expect(r.lastLoss).toBeLessThan(0.5 * r.firstLoss);
    expect(r.iterations).toBe(25 * 4);
    expect(r.reloadedOptimizer).toBe('AdamP');
    expect(r.reloadedIterations).toBe(25 * 4 + 2 * 4);
    expect(Number.isFinite(r.lossAfterReload)).toBe(true);
    expect(r.lastStep[0].name).toMatch(/conv2d.*kernel/);
  });
});
