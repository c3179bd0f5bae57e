/**
 * The TensorFlow.js adapter, with real tfjs (tfjs-core + the pure-JS CPU backend + layers).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { AdamP, SGDP, registerOptimizers, type NamedTensor } from '../lib/tfjs';
import { AdamP as CoreAdamP, SGDP as CoreSGDP } from '../lib/index';
import type { Param } from '../lib/types';
import { availableBackends } from './helpers/backends';
import { rng } from './helpers/random';
import { artifactsOf } from './helpers/tfjs';

/** adamp/tfjs runs on the CPU backends (tfjs tensors are read into host arrays). */
const CPU_BACKENDS = availableBackends().filter((b): b is 'js' | 'native' => b === 'js' || b === 'native');

beforeAll(async () => {
  await tf.setBackend('cpu');
  // The CPU backend greets its first tensor with a banner recommending tfjs-node: keep it out of the test output.
  const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
  tf.tensor([0]).dispose();
  warn.mockRestore();
});

function randn(n: number, r: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  return out;
}

let counter = 0;
function variable(data: Float32Array, shape: number[], prefix = 'v'): tf.Variable {
  return tf.variable(tf.tensor(data, shape, 'float32'), true, `${prefix}_${counter++}`);
}

function errCode(fn: () => unknown): { code?: string; message: string } {
  try {
    fn();
  } catch (e) {
    return { code: (e as { code?: string }).code, message: (e as Error).message };
  }
  throw new Error('expected a throw');
}

function regressionData(seed: number) {
  const r = rng(seed);
  const x = randn(64 * 6, r);
  const wTrue = randn(6 * 2, r);
  const y = new Float32Array(64 * 2);
  for (let i = 0; i < 64; i++) for (let o = 0; o < 2; o++) {
    let s = 0;
    for (let k = 0; k < 6; k++) s += x[i * 6 + k] * wTrue[k * 2 + o];
    y[i * 2 + o] = Math.tanh(s);
  }
  return { xs: tf.tensor2d(x, [64, 6]), ys: tf.tensor2d(y, [64, 2]) };
}

function mlp(seed: number): tfl.Sequential {
  const model = tfl.sequential();
  model.add(tfl.layers.dense({ units: 16, inputShape: [6], activation: 'tanh', kernelInitializer: tfl.initializers.glorotNormal({ seed }) }));
  model.add(tfl.layers.dense({ units: 2, kernelInitializer: tfl.initializers.glorotNormal({ seed: seed + 1 }) }));
  return model;
}

describe('model.compile / model.fit', () => {
  test.each([
    ['AdamP', () => new AdamP({ lr: 0.02, weightDecay: 1e-2 })],
    ['AdamP nesterov', () => new AdamP({ lr: 0.02, nesterov: true })],
    ['SGDP', () => new SGDP({ lr: 0.1, momentum: 0.9, weightDecay: 1e-4 })],
  ])('%s trains a small model: the loss goes down', async (_name, make) => {
    const { xs, ys } = regressionData(1);
    const model = mlp(7);
    const optimizer = make();
    model.compile({ optimizer, loss: 'meanSquaredError' });
    const h = await model.fit(xs, ys, { epochs: 15, batchSize: 16, verbose: 0, shuffle: false });
    const loss = h.history.loss as number[];
    expect(loss.every(Number.isFinite)).toBe(true);
    expect(loss[loss.length - 1]).toBeLessThan(0.5 * loss[0]);
    expect(optimizer.iterations).toBe(15 * 4);
    // Diagnostics are exposed, named after the variables.
    const info = optimizer.lastStepInfo;
    expect(info.map((i) => i.name)).toEqual(model.trainableWeights.map((w) => (w.read() as tf.Variable).name));
    expect(info.filter((i) => i.projection === 'not_eligible').length).toBe(2); // the biases
    for (const i of info) expect(['channel', 'layer', 'none', 'not_eligible']).toContain(i.projection);
    expect(['js', 'native']).toContain(optimizer.backend);
    model.dispose();
    optimizer.dispose();
  });

  test('conv2d + dense model trains with AdamP', async () => {
    const r = rng(3);
    const n = 32;
    const x = randn(n * 6 * 6 * 2, r);
    const y = new Float32Array(n);
    for (let i = 0; i < n; i++) { let s = 0; for (let k = 0; k < 72; k++) s += x[i * 72 + k] * (k % 3 - 1); y[i] = Math.tanh(s / 8); }
    const model = tfl.sequential();
    model.add(tfl.layers.conv2d({ inputShape: [6, 6, 2], filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.heNormal({ seed: 1 }) }));
    model.add(tfl.layers.flatten());
    model.add(tfl.layers.dense({ units: 1, kernelInitializer: tfl.initializers.glorotNormal({ seed: 2 }) }));
    const optimizer = new AdamP({ lr: 0.01 });
    model.compile({ optimizer, loss: 'meanSquaredError' });
    const h = await model.fit(tf.tensor4d(x, [n, 6, 6, 2]), tf.tensor2d(y, [n, 1]), { epochs: 12, batchSize: 8, verbose: 0, shuffle: false });
    const loss = h.history.loss as number[];
    expect(loss[loss.length - 1]).toBeLessThan(0.5 * loss[0]);
    expect(optimizer.lastStepInfo[0].name).toMatch(/conv2d.*kernel/);
  });
});

describe.each(CPU_BACKENDS)('parity with the core API, backend %s', (backend) => {
  const shapes: number[][] = [[3, 3, 2, 5], [7, 4], [4], [1, 6]];

  test.each([
    ['AdamP', { lr: 0.05, weightDecay: 0.1, nesterov: true }],
    ['SGDP', { lr: 0.1, momentum: 0.9, weightDecay: 0.05 }],
  ] as const)('%s: each step through tfjs equals a step of the core optimizer (channelAxis -1), decisions included', (kind, hp) => {
    const r = rng(11);
    const init = shapes.map((s) => randn(s.reduce((a, b) => a * b, 1), r));
    const vars = init.map((d, i) => variable(d, shapes[i], 'parity'));
    const params: Param[] = init.map((d, i) => ({ data: d.slice(), grad: null, shape: shapes[i], channelAxis: shapes[i].length > 1 ? -1 : undefined, name: vars[i].name }));
    const core = kind === 'AdamP' ? new CoreAdamP(params, hp, { backend }) : new CoreSGDP(params, hp as { lr: number }, { backend });
    const opt = kind === 'AdamP' ? new AdamP({ ...hp, backend }) : new SGDP({ ...(hp as { lr: number }), backend });
    const seen = new Set<string>();
    for (let step = 0; step < 6; step++) {
      const grads: NamedTensor[] = [];
      params.forEach((p, i) => {
        let g: Float32Array;
        if (step % 3 === 1 && p.shape.length > 1) {
          // Orthogonal to the weights per output channel (last axis): the channel view must fire.
          g = orthogonalPerLastAxis(randn(p.data.length, r), p.data, p.shape);
        } else if (step === 4 && i === 2) {
          p.grad = null; // a variable without a gradient this step
          return;
        } else {
          g = randn(p.data.length, r, 0.1);
        }
        p.grad = g;
        grads.push({ name: vars[i].name, tensor: tf.tensor(g, p.shape as number[]) });
      });
      core.step();
      opt.applyGradients(grads);
      vars.forEach((v, i) => expect(v.dataSync()).toEqual(params[i].data));
      const a = core.lastStepInfo.map((i) => i.projection);
      const b = opt.lastStepInfo.map((i) => i.projection);
      expect(b).toEqual(a);
      a.forEach((d) => seen.add(d));
      grads.forEach((g) => g.tensor.dispose());
    }
    expect(seen.has('channel')).toBe(true);
    expect(seen.has('not_eligible')).toBe(true);
    expect(seen.has('no_grad')).toBe(true);
    // The state matches too.
    const sa = core.stateDict();
    const sb = opt.stateDict();
    expect(sb.state).toEqual(sa.state);
    expect(opt.backend).toBe(backend);
  });
});

/** Removes from g, for each slice along the last axis, its component along w's slice. */
function orthogonalPerLastAxis(g: Float32Array, w: Float32Array, shape: readonly number[]): Float32Array {
  const out = Float64Array.from(g);
  const c = shape[shape.length - 1];
  for (let ch = 0; ch < c; ch++) {
    let gw = 0, ww = 0;
    for (let i = ch; i < w.length; i += c) { gw += out[i] * w[i]; ww += w[i] * w[i]; }
    for (let i = ch; i < w.length; i += c) out[i] -= (gw / ww) * w[i];
  }
  return Float32Array.from(out);
}

describe('channel view of tfjs weights', () => {
  test('the projection acts per output channel (last axis): a gradient orthogonal per output channel fires `channel` with axis -1, not with axis 0', () => {
    const r = rng(5);
    const shape = [12, 6]; // dense kernel [in, out]
    const w = randn(72, r);
    const g = orthogonalPerLastAxis(randn(72, r), w, shape);
    const run = (channelAxis?: number) => {
      const v = variable(w.slice(), shape, 'axis');
      const opt = new AdamP({ lr: 0.01, ...(channelAxis === undefined ? {} : { channelAxis }) });
      opt.applyGradients([{ name: v.name, tensor: tf.tensor(g, shape) }]);
      const info = opt.lastStepInfo[0];
      return { info, after: v.dataSync() as Float32Array };
    };
    const last = run(); // default: -1
    expect(last.info.projection).toBe('channel');
    expect(last.info.channelMaxCos!).toBeLessThan(last.info.channelThreshold!);
    expect(run(-1).info.projection).toBe('channel');
    const first = run(0);
    expect(first.info.projection).not.toBe('channel');
    expect(first.info.channelMaxCos!).toBeGreaterThan(first.info.channelThreshold!);
    // Per output channel, the update is (nearly) orthogonal to that channel's weights: the norm of each column is preserved to first order.
    const colNorm = (x: Float32Array, c: number) => { let s = 0; for (let i = c; i < x.length; i += 6) s += x[i] * x[i]; return Math.sqrt(s); };
    for (let c = 0; c < 6; c++) {
      const before = colNorm(w, c);
      const dNorm = (() => { let s = 0; for (let i = c; i < 72; i += 6) s += (last.after[i] - w[i]) ** 2; return Math.sqrt(s); })();
      expect(Math.abs(colNorm(last.after, c) - before)).toBeLessThan(0.05 * dNorm + 1e-6);
    }
  });

  test('channelAxis as a function chooses per variable; a bad axis is refused with the variable named', () => {
    const v = variable(randn(20, rng(1)), [4, 5], 'fnaxis');
    const seen: Array<[string, readonly number[]]> = [];
    const opt = new AdamP({ channelAxis: (name, shape) => { seen.push([name, shape]); return 0; } });
    opt.applyGradients([{ name: v.name, tensor: tf.ones([4, 5]) }]);
    expect(seen).toEqual([[v.name, [4, 5]]]);
    const bad = new AdamP({ channelAxis: () => 2 });
    const e = errCode(() => bad.applyGradients([{ name: v.name, tensor: tf.ones([4, 5]) }]));
    expect(e.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(e.message).toContain(v.name);
    expect(e.message).toContain('channelAxis');
  });
});

describe('minimize / applyGradients', () => {
  test('minimize drives a quadratic down, with and without varList', () => {
    const target = tf.tensor2d(randn(12, rng(2)), [3, 4]);
    const w = variable(new Float32Array(12).fill(0.5), [3, 4], 'quad');
    const opt = new AdamP({ lr: 0.05 });
    const loss = () => tf.mean(tf.square(tf.sub(w, target))) as tf.Scalar;
    const first = (opt.minimize(loss, true) as tf.Scalar).dataSync()[0];
    let last = first;
    for (let i = 0; i < 60; i++) last = (opt.minimize(loss, true, [w]) as tf.Scalar).dataSync()[0];
    expect(last).toBeLessThan(0.2 * first);
    expect(opt.iterations).toBe(61);
  });

  test('bad input is refused before anything changes, naming the variable', () => {
    const v = variable(new Float32Array([1, 2, 3, 4]), [2, 2], 'bad');
    const opt = new AdamP();
    const shape = errCode(() => opt.applyGradients([{ name: v.name, tensor: tf.ones([4]) }]));
    expect(shape.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(shape.message).toContain(v.name);
    const unknown = errCode(() => opt.applyGradients({ no_such_variable_xyz: tf.ones([2]) }));
    expect(unknown.message).toContain('no_such_variable_xyz');
    const iv = tf.variable(tf.tensor([1, 2], [2], 'int32'), true, `int_${counter++}`);
    expect(errCode(() => opt.applyGradients([{ name: iv.name, tensor: tf.ones([2], 'int32') }])).message).toContain('int32');
    expect(Array.from(v.dataSync())).toEqual([1, 2, 3, 4]);
    expect(opt.iterations).toBe(0);
    // Hyperparameters are validated at construction by the core rules.
    expect(errCode(() => new AdamP({ lr: -1 })).message).toContain('lr');
    expect(errCode(() => new AdamP({ betas: [0.9, 1.5] })).message).toContain('betas[1]');
    expect(errCode(() => new SGDP({} as { lr: number })).message).toContain('lr is required');
    expect(errCode(() => new AdamP({ backend: 'cuda' as 'js' })).message).toContain('backend');
    expect(errCode(() => new AdamP({ threads: 0 })).message).toContain('threads');
    // After dispose, steps are refused with a code.
    opt.dispose();
    expect(errCode(() => opt.applyGradients([{ name: v.name, tensor: tf.ones([2, 2]) }])).code).toBe('ERR_ADAMP_DISPOSED');
  });

  test('hyperparameters changed between steps (a schedule) take effect', () => {
    const mk = () => variable(new Float32Array([1, -2, 3, 0.5]), [4], 'sched');
    const a = mk(), b = mk();
    const oa = new SGDP({ lr: 0.1 });
    const ob = new SGDP({ lr: 0.1 });
    ob.learningRate = 0.01;
    expect(ob.hyperparameters.lr).toBe(0.01);
    oa.applyGradients([{ name: a.name, tensor: tf.ones([4]) }]);
    ob.applyGradients([{ name: b.name, tensor: tf.ones([4]) }]);
    expect(a.dataSync()[0]).toBeCloseTo(0.9, 6);
    expect(b.dataSync()[0]).toBeCloseTo(0.99, 6);
  });
});

describe('getWeights / setWeights', () => {
  async function roundTrip(kind: 'AdamP' | 'SGDP', rename: boolean) {
    const r = rng(21);
    const shapes = [[5, 3], [3]];
    const init = shapes.map((s) => randn(s[0] * (s[1] ?? 1), r));
    const gradsFor = (k: number) => shapes.map((s) => randn(s[0] * (s[1] ?? 1), rng(100 + k), 0.3));
    const make = () => (kind === 'AdamP' ? new AdamP({ lr: 0.03, weightDecay: 0.1 }) : new SGDP({ lr: 0.1, momentum: 0.9 }));
    const va = init.map((d, i) => variable(d.slice(), shapes[i], 'rtA'));
    const a = make();
    const stepWith = (opt: AdamP | SGDP, vs: tf.Variable[], k: number) =>
      opt.applyGradients(gradsFor(k).map((g, i) => ({ name: vs[i].name, tensor: tf.tensor(g, shapes[i]) })));
    for (let k = 0; k < 3; k++) stepWith(a, va, k);
    const weights = await a.getWeights();
    expect(weights[0].name).toBe('iter');
    expect(weights[0].tensor.dataSync()[0]).toBe(3);
    const suffixes = kind === 'AdamP' ? ['step', 'exp_avg', 'exp_avg_sq'] : ['momentum'];
    expect(weights.slice(1).map((w) => w.name)).toEqual(va.flatMap((v) => suffixes.map((s) => `${v.name}/${s}`)));
    // A second optimizer on copies of the variables (same names, or new names: positional match).
    const vb = va.map((v, i) => rename ? variable(v.dataSync() as Float32Array, shapes[i], 'rtB') : v);
    const b = make();
    await b.setWeights(weights);
    expect(b.iterations).toBe(3);
    const snapshot = va.map((v) => (v.dataSync() as Float32Array).slice());
    for (let k = 3; k < 6; k++) stepWith(a, va, k);
    if (!rename) va.forEach((v, i) => v.assign(tf.tensor(snapshot[i], shapes[i])));
    for (let k = 3; k < 6; k++) stepWith(b, vb, k);
    if (rename) va.forEach((v, i) => expect(vb[i].dataSync()).toEqual(v.dataSync()));
    expect(b.stateDict().state).toEqual(a.stateDict().state);
  }
  test.each([['AdamP', false], ['AdamP', true], ['SGDP', false], ['SGDP', true]] as const)(
    '%s round-trips its state (renamed variables: %s), then steps identically', async (kind, rename) => {
      await roundTrip(kind, rename);
    });

  test('setWeights refuses weights of another layout or shape, and keeps the previous state', async () => {
    const v = variable(new Float32Array(6).fill(1), [2, 3], 'sw');
    const opt = new AdamP({ lr: 0.1 });
    opt.applyGradients([{ name: v.name, tensor: tf.ones([2, 3]) }]);
    const before = opt.stateDict();
    const other = new SGDP({ lr: 0.1 });
    const w2 = variable(new Float32Array(6).fill(1), [2, 3], 'sw');
    other.applyGradients([{ name: w2.name, tensor: tf.ones([2, 3]) }]);
    await expect(opt.setWeights(await other.getWeights())).rejects.toThrow(/step/);
    const mismatched: NamedTensor[] = [
      { name: 'iter', tensor: tf.scalar(1, 'int32') },
      { name: `${v.name}/step`, tensor: tf.scalar(1, 'int32') },
      { name: `${v.name}/exp_avg`, tensor: tf.zeros([3, 2]) },
      { name: `${v.name}/exp_avg_sq`, tensor: tf.zeros([3, 2]) },
    ];
    await expect(opt.setWeights(mismatched)).rejects.toThrow(/shape/);
    expect(opt.stateDict()).toEqual(before);
  });
});

describe('serialization', () => {
  test('getConfig / fromConfig round-trip, classes registered once', () => {
    const opt = new AdamP({ lr: 0.003, betas: [0.8, 0.99], weightDecay: 0.2, delta: 0.05, wdRatio: 0.2, nesterov: true, channelAxis: 0 });
    const config = opt.getConfig();
    expect(config).toEqual({ lr: 0.003, betas: [0.8, 0.99], eps: 1e-8, weightDecay: 0.2, delta: 0.05, wdRatio: 0.2, nesterov: true, channelAxis: 0 });
    const map = tf.serialization.SerializationMap.getMap().classNameMap;
    expect(map.AdamP[0]).toBe(AdamP);
    expect(map.SGDP[0]).toBe(SGDP);
    const copy = AdamP.fromConfig(AdamP, config) as AdamP;
    expect(copy).toBeInstanceOf(AdamP);
    expect(copy.getConfig()).toEqual(config);
    const s = new SGDP({ lr: 0.5, momentum: 0.9, dampening: 0.1 });
    expect((SGDP.fromConfig(SGDP, s.getConfig()) as SGDP).getConfig()).toEqual(s.getConfig());
    // A second registration (e.g. the module loaded twice) must not reach tfjs, which may throw on it.
    const spy = jest.spyOn(tf.serialization, 'registerClass').mockImplementation(() => { throw new Error('already registered'); });
    try {
      expect(() => registerOptimizers()).not.toThrow();
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  test('model.save with the optimizer -> tf.loadLayersModel recreates AdamP with its config and state; training resumes identically', async () => {
    const { xs, ys } = regressionData(4);
    const model = mlp(9);
    model.compile({ optimizer: new AdamP({ lr: 0.01, weightDecay: 0.05, nesterov: true }), loss: 'meanSquaredError' });
    await model.fit(xs, ys, { epochs: 2, batchSize: 16, verbose: 0, shuffle: false });
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(await artifactsOf(model)));
    const lo = loaded.optimizer as unknown as AdamP;
    expect(lo).toBeInstanceOf(AdamP);
    expect(lo.getConfig()).toEqual((model.optimizer as unknown as AdamP).getConfig());
    expect(lo.iterations).toBe(8);
    await model.fit(xs, ys, { epochs: 2, batchSize: 16, verbose: 0, shuffle: false });
    await loaded.fit(xs, ys, { epochs: 2, batchSize: 16, verbose: 0, shuffle: false });
    const wa = model.getWeights().map((t) => t.dataSync());
    const wb = loaded.getWeights().map((t) => t.dataSync());
    expect(wb).toEqual(wa);
  });
});
