/**
 * The adapter steps variables on the TensorFlow.js backend's own storage (tfjs-backend-cpu's
 * arrays, tfjs-backend-wasm's heap) where it can, and through copies elsewhere. These tests
 * check that it gives the same bits as the copying path and as the core optimizer, that it
 * changes no tensor but the variable (clones, reshapes, slices, tensors made from the variable's
 * array, the tensor it was assigned from, the gradient), that nothing leaks, and that kernels
 * which cache packed weights (the wasm backend's XNNPACK conv and matmul) see the new values.
 * Every test runs on each tfjs backend available (cpu; wasm when installed) and each adamp CPU
 * backend (js; native when the addon loads).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { AdamP, SGDP, AdamW, SGD, type NamedTensor } from '../lib/tfjs';
import { AdamP as CoreAdamP } from '../lib/index';
import type { Param } from '../lib/types';
import { rng, randn } from './helpers/random';
import { backendPairs, ownerOf, tfjsBackends, useTfjsBackend, type TfjsBackendName } from './helpers/tfjs';

const PAIRS = backendPairs();

let counter = 0;
/** A variable that owns its data (the initial tensor disposed), as tfjs-layers makes them. */
function ownedVariable(data: Float32Array, shape: number[], prefix = 'st'): tf.Variable {
  const init = tf.tensor(data, shape, 'float32');
  const v = tf.variable(init, true, `${prefix}_${counter++}`);
  init.dispose();
  return v;
}

function grads(vs: tf.Variable[], seed: number): NamedTensor[] {
  const r = rng(seed);
  return vs.map((v) => ({ name: v.name, tensor: tf.tensor(randn(r, v.size, 0.1), v.shape, 'float32') }));
}

function dispose(list: NamedTensor[]): void {
  for (const g of list) g.tensor.dispose();
}

function snapshot(t: tf.Tensor): Float32Array {
  return (t.dataSync() as Float32Array).slice();
}

const inPlacePath = (b: TfjsBackendName) => b; // the path name equals the tfjs backend's

describe.each(PAIRS)('tfjs %s, adamp %s', (tfjsBackend, backend) => {
  beforeAll(async () => {
    await useTfjsBackend(tfjsBackend);
  });

  test('a variable that owns its data is stepped on the backend storage, with the same bits as the copying path and as the core optimizer', () => {
    const r = rng(1);
    const shapes = [[3, 3, 4, 6], [10, 5], [6], [2, 2, 3, 2]];
    const init = shapes.map((s) => randn(r, s.reduce((a, b) => a * b, 1)));
    const a = init.map((d, i) => ownedVariable(d.slice(), shapes[i]));
    const b = init.map((d, i) => ownedVariable(d.slice(), shapes[i]));
    const params: Param[] = init.map((d, i) => ({ data: d.slice(), grad: null, shape: shapes[i], channelAxis: shapes[i].length > 1 ? -1 : undefined }));
    const hp = { lr: 0.05, weightDecay: 0.1 };
    const direct = new AdamP({ ...hp, backend, channelAxis: -1 });
    const copies = new AdamP({ ...hp, backend, channelAxis: -1, inPlace: false });
    const core = new CoreAdamP(params, hp, { backend });
    for (let step = 0; step < 4; step++) {
      const ga = grads(a, 10 + step);
      const gb = ga.map((g, i) => ({ name: b[i].name, tensor: g.tensor }));
      params.forEach((p, i) => { p.grad = (ga[i].tensor.dataSync() as Float32Array).slice(); });
      direct.applyGradients(ga);
      copies.applyGradients(gb);
      core.step();
      for (const v of a) expect(direct.lastStepPaths[v.name]).toBe(inPlacePath(tfjsBackend));
      for (const v of b) expect(copies.lastStepPaths[v.name]).toBe('copy');
      a.forEach((v, i) => {
        expect(v.dataSync()).toEqual(b[i].dataSync());
        expect(v.dataSync()).toEqual(params[i].data);
        expect(ownerOf(v)).toBe(tfjsBackend);
      });
      expect(direct.lastStepInfo.map((x) => x.projection)).toEqual(core.lastStepInfo.map((x) => x.projection));
      dispose(ga);
    }
    expect(direct.stateDict().state).toEqual(core.stateDict().state);
    expect(copies.stateDict().state).toEqual(core.stateDict().state);
    [...a, ...b].forEach((v) => v.dispose());
    direct.dispose();
    copies.dispose();
  });

  test('a variable created from a tensor that is still alive (shared data) takes the copying path once, then owns its data', () => {
    const init = tf.tensor(randn(rng(2), 12), [3, 4]);
    const v = tf.variable(init, true, `shared_${counter++}`);
    const before = snapshot(init);
    const opt = new SGDP({ lr: 0.1, momentum: 0.9, backend });
    const g = grads([v], 3);
    opt.applyGradients(g);
    expect(opt.lastStepPaths[v.name]).toBe('copy');
    expect(init.dataSync()).toEqual(before);
    opt.applyGradients(g);
    expect(opt.lastStepPaths[v.name]).toBe(inPlacePath(tfjsBackend));
    expect(init.dataSync()).toEqual(before);
    dispose(g);
    init.dispose();
    v.dispose();
  });

  test('no other tensor changes: clones, reshapes, contiguous slices, tensors made from the variable\'s array, the tensor it was assigned from, the gradient', () => {
    const shape = [6, 4];
    const v = ownedVariable(randn(rng(4), 24), shape);
    const opt = new AdamP({ lr: 0.1, backend });
    const step = (seed: number) => {
      const g = grads([v], seed);
      const gBefore = snapshot(g[0].tensor);
      opt.applyGradients(g);
      expect(g[0].tensor.dataSync()).toEqual(gBefore); // the gradient is read, never written
      dispose(g);
    };
    step(5); // v owns its data
    expect(opt.lastStepPaths[v.name]).toBe(inPlacePath(tfjsBackend));

    // Tensors that hold on to the variable's data or its array: each must keep its values.
    const held: Array<{ what: string; t: tf.Tensor; values: Float32Array }> = [];
    const hold = (what: string, t: tf.Tensor) => held.push({ what, t, values: snapshot(t) });
    const arrayBefore = v.dataSync() as Float32Array; // on cpu: the backend's own array
    const arrayValues = arrayBefore.slice();
    hold('tf.tensor(v.dataSync())', tf.tensor(v.dataSync() as Float32Array, shape)); // on cpu: the same array
    hold('contiguous slice', tf.slice(v, [1, 0], [2, 4])); // on cpu: a subarray of the variable's array
    step(6);
    expect(arrayBefore).toEqual(arrayValues);
    expect(opt.lastStepPaths[v.name]).toBe(inPlacePath(tfjsBackend));
    for (const h of held) expect([h.what, h.t.dataSync()]).toEqual([h.what, h.values]);

    // Tensors that share the variable's data id: the step must not write there (refCount > 1).
    const clone = tf.clone(v);
    hold('clone', clone);
    const reshaped = tf.reshape(v, [24]);
    hold('reshape', reshaped);
    step(7);
    expect(opt.lastStepPaths[v.name]).toBe('copy');
    for (const h of held) expect([h.what, h.t.dataSync()]).toEqual([h.what, h.values]);
    expect(v.dataId).not.toBe(clone.dataId);

    // The tensor a variable was assigned from shares its data id.
    const source = tf.tensor(randn(rng(8), 24), shape);
    v.assign(source);
    hold('assigned from', source);
    step(9);
    expect(opt.lastStepPaths[v.name]).toBe('copy');
    for (const h of held) expect([h.what, h.t.dataSync()]).toEqual([h.what, h.values]);
    expect(v.dataSync()).not.toEqual(source.dataSync());

    for (const h of held) h.t.dispose();
    step(10);
    expect(opt.lastStepPaths[v.name]).toBe(inPlacePath(tfjsBackend));
    v.dispose();
    opt.dispose();
  });

  test('the variable as its own gradient (applyGradients({ [v.name]: v })) gives the copying path\'s result', () => {
    const data = randn(rng(11), 20);
    const a = ownedVariable(data.slice(), [4, 5]);
    const b = ownedVariable(data.slice(), [4, 5]);
    const oa = new AdamW({ lr: 0.1, backend });
    const ob = new AdamW({ lr: 0.1, backend, inPlace: false });
    for (let k = 0; k < 3; k++) {
      oa.applyGradients({ [a.name]: a });
      ob.applyGradients({ [b.name]: b });
      expect(a.dataSync()).toEqual(b.dataSync());
    }
    expect(oa.lastStepPaths[a.name]).toBe(inPlacePath(tfjsBackend));
    a.dispose();
    b.dispose();
  });

  test('nothing leaks: tensor count and bytes are unchanged by steps on either path', () => {
    const vs = [ownedVariable(randn(rng(12), 60), [6, 10]), ownedVariable(randn(rng(13), 10), [10])];
    const g = grads(vs, 14);
    for (const inPlace of [true, false]) {
      const opt = new SGD({ lr: 0.1, momentum: 0.9, backend, inPlace });
      opt.applyGradients(g);
      const before = tf.memory();
      for (let k = 0; k < 3; k++) opt.applyGradients(g);
      const after = tf.memory();
      expect(after.numTensors).toBe(before.numTensors);
      expect(after.numBytes).toBe(before.numBytes);
      expect((after as { numDataBuffers?: number }).numDataBuffers).toBe((before as { numDataBuffers?: number }).numDataBuffers);
      opt.dispose();
    }
    dispose(g);
    vs.forEach((v) => v.dispose());
  });

  test('layers that cache packed weights see the new values: after each step, predictions equal a fresh model\'s with the same weights', () => {
    // tfjs-backend-wasm has no conv backprop kernels: the gradients are given, not computed by fit.
    const build = (seed: number) => {
      const m = tfl.sequential();
      m.add(tfl.layers.conv2d({ inputShape: [6, 6, 2], filters: 3, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.heNormal({ seed }) }));
      m.add(tfl.layers.depthwiseConv2d({ kernelSize: 2, depthMultiplier: 2, depthwiseInitializer: tfl.initializers.heNormal({ seed: seed + 1 }) }));
      m.add(tfl.layers.flatten());
      m.add(tfl.layers.dense({ units: 2, kernelInitializer: tfl.initializers.glorotNormal({ seed: seed + 2 }) }));
      return m;
    };
    const xs = tf.tensor4d(randn(rng(15), 8 * 6 * 6 * 2), [8, 6, 6, 2]);
    const model = build(3);
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const opt = new AdamP({ lr: 0.05, backend });
    for (let k = 0; k < 3; k++) {
      (model.predict(xs) as tf.Tensor).dispose(); // the kernels cache the current weights
      const g = grads(vars, 20 + k);
      opt.applyGradients(g);
      dispose(g);
      for (const v of vars) expect(opt.lastStepPaths[v.name]).toBe(inPlacePath(tfjsBackend));
      const fresh = build(100);
      fresh.setWeights(model.getWeights().map((w) => tf.tensor(snapshot(w), w.shape)));
      const a = model.predict(xs) as tf.Tensor;
      const b = fresh.predict(xs) as tf.Tensor;
      expect(a.dataSync()).toEqual(b.dataSync());
      a.dispose();
      b.dispose();
      fresh.dispose();
    }
    model.dispose();
    xs.dispose();
  });

  test('model.fit steps every trainable weight on the backend storage', async () => {
    const model = tfl.sequential();
    model.add(tfl.layers.dense({ units: 8, inputShape: [5], activation: 'tanh', kernelInitializer: tfl.initializers.glorotNormal({ seed: 1 }) }));
    model.add(tfl.layers.dense({ units: 2, kernelInitializer: tfl.initializers.glorotNormal({ seed: 2 }) }));
    const opt = new SGDP({ lr: 0.1, momentum: 0.9, backend });
    model.compile({ optimizer: opt, loss: 'meanSquaredError' });
    const r = rng(30);
    const xs = tf.tensor2d(randn(r, 16 * 5), [16, 5]);
    const ys = tf.tensor2d(randn(r, 32), [16, 2]);
    const h = await model.fit(xs, ys, { epochs: 3, batchSize: 8, verbose: 0, shuffle: false });
    expect((h.history.loss as number[]).every(Number.isFinite)).toBe(true);
    const names = model.trainableWeights.map((w) => (w.read() as tf.Variable).name);
    expect(Object.keys(opt.lastStepPaths).sort()).toEqual(names.slice().sort());
    for (const n of names) expect(opt.lastStepPaths[n]).toBe(inPlacePath(tfjsBackend));
    model.dispose();
    xs.dispose();
    ys.dispose();
  });
});

describe('variables and gradients on another backend than the current one', () => {
  const backends = tfjsBackends();
  (backends.includes('wasm') ? test : test.skip)('a variable created on cpu and stepped while wasm is current takes the copying path and moves to wasm', async () => {
    await useTfjsBackend('cpu');
    const data = randn(rng(16), 30);
    const v = ownedVariable(data.slice(), [5, 6]);
    const g = tf.tensor(randn(rng(17), 30, 0.1), [5, 6]);
    const ref = ownedVariable(data.slice(), [5, 6]);
    const oRef = new AdamP({ lr: 0.1, backend: 'js' });
    oRef.applyGradients([{ name: ref.name, tensor: g }]);
    const expected = snapshot(ref);
    await useTfjsBackend('wasm');
    const opt = new AdamP({ lr: 0.1, backend: 'js' });
    opt.applyGradients([{ name: v.name, tensor: g }]);
    expect(opt.lastStepPaths[v.name]).toBe('copy');
    expect(v.dataSync()).toEqual(expected);
    expect(ownerOf(v)).toBe('wasm');
    v.dispose();
    g.dispose();
    ref.dispose();
  });
});
