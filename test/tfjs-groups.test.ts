/**
 * Per-variable groups (`groups: [{ select, ...options }]`) and the config round trip: every option
 * survives getConfig/fromConfig (and model.save -> tf.loadLayersModel, which camel-cases strings
 * with underscores), or getConfig refuses it with the reason (functions cannot be saved).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { AdamP, SGDP, AdamW, SGD, type AdampTfjsOptimizer } from '../lib/tfjs';
import { AdamP as CoreAdamP, OneCycleLR, StepLR } from '../lib/index';
import type { AdamPOptions } from '../lib/index';
import type { Param } from '../lib/types';
import { rng, randn } from './helpers/random';
import { adampCpuBackends, artifactsOf, useTfjsBackend } from './helpers/tfjs';

beforeAll(async () => {
  await useTfjsBackend('cpu');
});

function errOf(fn: () => unknown): { code?: string; message: string } {
  try {
    fn();
  } catch (e) {
    return { code: (e as { code?: string }).code, message: (e as Error).message };
  }
  throw new Error('expected a throw');
}

/** dense(8) + batchNorm + dense(3): kernels, biases, gamma, beta. */
function model(seed: number): tfl.Sequential {
  const m = tfl.sequential();
  m.add(tfl.layers.dense({ units: 8, inputShape: [5], kernelInitializer: tfl.initializers.glorotNormal({ seed }) }));
  m.add(tfl.layers.batchNormalization({}));
  m.add(tfl.layers.dense({ units: 3, kernelInitializer: tfl.initializers.glorotNormal({ seed: seed + 1 }) }));
  return m;
}

function data(seed: number) {
  const r = rng(seed);
  return { xs: tf.tensor2d(randn(r, 32 * 5), [32, 5]), ys: tf.tensor2d(randn(r, 32 * 3), [32, 3]) };
}

describe.each(adampCpuBackends())('groups, adamp %s', (backend) => {
  test('a RegExp group gets its options, the other variables the defaults; bit for bit the core optimizer with the same param groups', () => {
    const m = model(1);
    const vars = m.trainableWeights.map((w) => w.read() as tf.Variable);
    const hp = { lr: 0.05, weightDecay: 0.3 };
    const opt = new AdamP({ ...hp, backend, groups: [{ select: /bias|gamma|beta/, weightDecay: 0 }] });
    const isNoDecay = (n: string) => /bias|gamma|beta/.test(n);
    const params: Param[] = vars.map((v) => ({ name: v.name, data: (v.dataSync() as Float32Array).slice(), grad: null, shape: v.shape, ...(v.shape.length > 1 ? { channelAxis: -1 } : {}) }));
    const core = new CoreAdamP([
      { params: params.filter((p) => !isNoDecay(p.name!)) },
      { params: params.filter((p) => isNoDecay(p.name!)), weightDecay: 0 },
    ], hp, { backend });
    for (let k = 0; k < 3; k++) {
      const r = rng(10 + k);
      const g = vars.map((v) => ({ name: v.name, tensor: tf.tensor(randn(r, v.size, 0.1), v.shape) }));
      for (const p of params) p.grad = (g.find((x) => x.name === p.name)!.tensor.dataSync() as Float32Array).slice();
      opt.applyGradients(g);
      core.step();
      g.forEach((x) => x.tensor.dispose());
    }
    for (const p of params) expect([p.name, registered(p.name!).dataSync()]).toEqual([p.name, p.data]);
    // The core's groups: defaults first, then groups[0]; names in that order.
    expect(opt.variableNames).toEqual([...params.filter((p) => !isNoDecay(p.name!)), ...params.filter((p) => isNoDecay(p.name!))].map((p) => p.name));
    const sd = opt.stateDict();
    expect(sd.paramGroups.map((g) => [g.params.length, g.weightDecay])).toEqual([[2, 0.3], [4, 0]]);
    expect(sd.state).toEqual(core.stateDict().state);
    m.dispose();
  });

  test('a predicate selects by name and shape; the first matching group wins; groups may stay empty', () => {
    const m = model(2);
    const opt = new SGDP({
      lr: 0.1, momentum: 0.9, backend,
      groups: [
        { select: (_name, shape) => shape.length === 1, weightDecay: 0 },
        { select: /kernel/, weightDecay: 1e-3, momentum: 0.5 },
        { select: /bias/, lr: 1 }, // never reached: biases are 1-D, the first group took them
        { select: /nothing_matches/, lr: 2 },
      ],
    });
    opt.attach(m.trainableWeights);
    const groups = opt.stateDict().paramGroups;
    expect(groups.map((g) => g.params.length)).toEqual([0, 4, 2, 0, 0]);
    expect(groups.map((g) => g.momentum)).toEqual([0.9, 0.9, 0.5, 0.9, 0.9]);
    m.dispose();
  });

  test('hyperparameters (a schedule) reach every group but the options a group sets; group options are live', () => {
    const v = tf.variable(tf.zeros([4]), true, `live_${Math.random()}`);
    const w = tf.variable(tf.zeros([2, 2]), true, `livek_${Math.random()}`);
    const opt = new SGDP({ lr: 0.1, backend, groups: [{ select: (_n, s) => s.length === 1, weightDecay: 0 }] });
    const step = () => opt.applyGradients([{ name: v.name, tensor: tf.ones([4]) }, { name: w.name, tensor: tf.ones([2, 2]) }]);
    step();
    expect(v.dataSync()[0]).toBeCloseTo(-0.1, 6);
    opt.learningRate = 0.01;
    step();
    expect(v.dataSync()[0]).toBeCloseTo(-0.11, 6);
    (opt.groups[0].options as { lr?: number }).lr = 1;
    step();
    expect(v.dataSync()[0]).toBeCloseTo(-1.11, 5);
    expect(w.dataSync()[0]).toBeCloseTo(-0.12, 6);
    (opt.groups[0].options as { lr?: number }).lr = -1;
    expect(errOf(step).message).toMatch(/lr must be >= 0/);
    v.dispose();
    w.dispose();
  });
});

describe('groups and LR schedulers', () => {
  test('a scheduler drives every group (paramGroups): each lr from its own initial lr; a group that did not set lr gets its own from then on', () => {
    const w = tf.variable(tf.zeros([3, 2]), true, `sch_w_${Math.random()}`);
    const b = tf.variable(tf.zeros([2]), true, `sch_bias_${Math.random()}`);
    const g = tf.variable(tf.zeros([2]), true, `sch_gamma_${Math.random()}`);
    const opt = new AdamP({ lr: 0.1, groups: [{ select: /bias/, lr: 0.01 }, { select: /gamma/, weightDecay: 0 }] });
    expect(opt.paramGroups.map((x) => x.lr)).toEqual([0.1, 0.01, 0.1]);
    const scheduler = new StepLR(opt, { stepSize: 1, gamma: 0.5 });
    const step = () => opt.applyGradients([w, b, g].map((v) => ({ name: v.name, tensor: tf.onesLike(v) })));
    step();
    scheduler.step();
    expect(opt.paramGroups.map((x) => x.lr)).toEqual([0.05, 0.005, 0.05]);
    expect(opt.learningRate).toBe(0.05);
    expect(opt.groups[1].options).toEqual({ weightDecay: 0, lr: 0.05 });
    step();
    expect(opt.stateDict().paramGroups.map((x) => x.lr)).toEqual([0.05, 0.005, 0.05]);
    expect(scheduler.getLastLr()).toEqual([0.05, 0.005, 0.05]);
    [w, b, g].forEach((v) => v.dispose());
  });

  test('OneCycleLR cycles each group\'s momentum (SGDP)', () => {
    const w = tf.variable(tf.zeros([3, 2]), true, `oc_w_${Math.random()}`);
    const b = tf.variable(tf.zeros([2]), true, `oc_bias_${Math.random()}`);
    const opt = new SGDP({ lr: 0.1, momentum: 0.9, groups: [{ select: /bias/, momentum: 0.5 }] });
    const scheduler = new OneCycleLR(opt, { maxLr: [1, 0.5], totalSteps: 10, baseMomentum: 0.8, maxMomentum: 0.95 });
    expect(opt.paramGroups.map((x) => x.momentum)).toEqual([0.95, 0.95]);
    opt.applyGradients([w, b].map((v) => ({ name: v.name, tensor: tf.onesLike(v) })));
    scheduler.step();
    expect(opt.stateDict().paramGroups.map((x) => x.momentum)).toEqual([0.95, 0.95]);
    expect(opt.paramGroups.map((x) => x.lr)).toEqual(scheduler.getLastLr());
    [w, b].forEach((v) => v.dispose());
  });
});

describe('groups: validation', () => {
  test('bad groups are refused at construction, naming the group and the option', () => {
    expect(errOf(() => new AdamP({ groups: {} as never })).message).toMatch(/options.groups must be an array/);
    expect(errOf(() => new AdamP({ groups: [{ weightDecay: 0 } as never] })).message).toMatch(/options.groups\[0\].select must be a RegExp/);
    expect(errOf(() => new AdamP({ groups: [{ select: 'bias' as never }] })).message).toMatch(/options.groups\[0\].select must be a RegExp/);
    expect(errOf(() => new AdamP({ groups: [{ select: /b/, weightDecay: -1 }] })).message).toMatch(/options.groups\[0\].weightDecay must be >= 0/);
    const typo = errOf(() => new AdamP({ groups: [{ select: /b/, weight_decay: 0 } as never] }));
    expect(typo.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(typo.message).toMatch(/options.groups\[0\].weight_decay is not an option; did you mean 'weightDecay'/);
    expect(errOf(() => new SGDP({ lr: 0.1, weightDecay: 0.1, groups: [{ select: /b/, momentum: 1 }] })).message).toMatch(/options.groups\[0\].momentum must be < 1 when weightDecay > 0/);
  });

  test('a predicate must return a boolean; a global RegExp matches every variable it should', () => {
    const v = tf.variable(tf.zeros([3]), true, `pred_${Math.random()}`);
    const bad = new AdamP({ groups: [{ select: (() => 1) as never }] });
    expect(errOf(() => bad.applyGradients([{ name: v.name, tensor: tf.ones([3]) }])).message).toMatch(/returned 1 .* must return a boolean/);
    const vars = [0, 1, 2].map((i) => tf.variable(tf.zeros([3]), true, `gbias_${i}_${Math.random()}`));
    const opt = new AdamP({ groups: [{ select: /bias/g, lr: 0 }] });
    opt.attach(vars);
    expect(opt.stateDict().paramGroups.map((g) => g.params.length)).toEqual([0, 3]);
    [v, ...vars].forEach((x) => x.dispose());
  });
});

describe('getConfig / fromConfig', () => {
  test('every option round-trips: hyperparameters, channelAxis, RegExp groups (underscores and flags), backend, threads, diagnostics, inPlace', () => {
    const opt = new AdamP({
      lr: 0.003, betas: [0.8, 0.99], weightDecay: 0.2, delta: 0.05, wdRatio: 0.2, nesterov: true,
      channelAxis: 0, groups: [{ select: /depthwise_kernel|_bias$/i, weightDecay: 0, betas: [0.5, 0.9] }, { select: /a_b_c/, lr: 1 }],
      backend: 'js', threads: 2, diagnostics: 'full', inPlace: false,
    });
    const config = opt.getConfig();
    expect(config).toEqual({
      lr: 0.003, betas: [0.8, 0.99], eps: 1e-8, weightDecay: 0.2, delta: 0.05, wdRatio: 0.2, nesterov: true, channelAxis: 0,
      groups: [
        { select: { regexp: ['depthwise', 'kernel|', 'bias$'], flags: 'i' }, weightDecay: 0, betas: [0.5, 0.9] },
        { select: { regexp: ['a', 'b', 'c'], flags: '' }, lr: 1 },
      ],
      backend: 'js', threads: 2, diagnostics: 'full', inPlace: false,
    });
    // JSON and back, as a saved model stores it.
    const copy = AdamP.fromConfig(AdamP, JSON.parse(JSON.stringify(config))) as AdamP;
    expect(copy.getConfig()).toEqual(config);
    expect(copy.groups[0].select).toEqual(/depthwise_kernel|_bias$/i);
    expect(copy.backend).toBe('js');
    // Defaults: channelAxis 'auto', no groups, nothing else.
    expect(new AdamP().getConfig()).toEqual({ lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: false, channelAxis: 'auto' });
    // Every adapter class is registered under its own class name; SGD's is namespaced (tfjs-core has an 'SGD').
    const map = tf.serialization.SerializationMap.getMap().classNameMap;
    for (const cls of [AdamP, SGDP, AdamW, SGD]) expect(map[cls.className][0]).toBe(cls);
    expect([AdamP, SGDP, AdamW, SGD].map((c) => c.className)).toEqual(['AdamP', 'SGDP', 'AdamW', 'adamp.SGD']);
    expect(new SGD({ lr: 0.1 }).getClassName()).toBe('adamp.SGD');
    const s = new SGDP({ lr: 0.5, momentum: 0.9, dampening: 0.1, groups: [{ select: /x/, momentum: 0 }] });
    expect((SGDP.fromConfig(SGDP, s.getConfig()) as SGDP).getConfig()).toEqual(s.getConfig());
  });

  test('options that are functions are refused by getConfig with the reason; a malformed saved group is refused by fromConfig', () => {
    const fnAxis = errOf(() => new AdamP({ channelAxis: () => 0 }).getConfig());
    expect(fnAxis.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(fnAxis.message).toMatch(/getConfig: options.channelAxis is a function, which a TensorFlow.js config cannot hold .*includeOptimizer: false.*saveCheckpoint/);
    const fnGroup = errOf(() => new AdamP({ groups: [{ select: /ok/ }, { select: () => true }] }).getConfig());
    expect(fnGroup.message).toMatch(/getConfig: options.groups\[1\].select is a function.*RegExp/);
    expect(errOf(() => AdamP.fromConfig(AdamP, { groups: [{ select: { regexp: 'x', flags: '' } }] } as never)).message).toMatch(/config.groups\[0\].select must be a saved RegExp/);
    expect(errOf(() => AdamP.fromConfig(AdamP, { groups: [{ select: { regexp: ['('], flags: '' } }] } as never)).message).toMatch(/config.groups\[0\].select is not a valid RegExp/);
  });

  test('model.save with the optimizer -> tf.loadLayersModel: groups whose RegExp has underscores survive, state too; training resumes identically', async () => {
    const { xs, ys } = data(3);
    const m = model(5);
    // /bias$/ also selects `dense_Dense1/bias_1`, the name a second copy of the model gives its bias.
    const make = () => new AdamP({ lr: 0.01, weightDecay: 0.1, groups: [{ select: /batch_normalization|bias$/, weightDecay: 0 }] });
    m.compile({ optimizer: make(), loss: 'meanSquaredError' });
    await m.fit(xs, ys, { epochs: 2, batchSize: 16, verbose: 0, shuffle: false });
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(await artifactsOf(m)));
    const lo = loaded.optimizer as unknown as AdamP;
    expect(lo).toBeInstanceOf(AdamP);
    expect(lo.getConfig()).toEqual((m.optimizer as unknown as AdamP).getConfig());
    expect(lo.groups[0].select).toEqual(/batch_normalization|bias$/);
    await m.fit(xs, ys, { epochs: 2, batchSize: 16, verbose: 0, shuffle: false });
    await loaded.fit(xs, ys, { epochs: 2, batchSize: 16, verbose: 0, shuffle: false });
    expect(loaded.getWeights().map((t) => t.dataSync())).toEqual(m.getWeights().map((t) => t.dataSync()));
    // The groups selected the same variables in both (the loaded model's names carry a suffix: dense_Dense1/bias_1).
    expect(lo.variableNames.some((n) => /bias_\d+$/.test(n))).toBe(true);
    const sizes = (o: AdampTfjsOptimizer<AdamPOptions>) => o.stateDict().paramGroups.map((g) => g.params.length);
    expect(sizes(lo)).toEqual(sizes(m.optimizer as unknown as AdamP));
    expect(sizes(lo)).toEqual([2, 4]);
    loaded.dispose();
    m.dispose();
  });

  test('model.save with the optimizer refuses a function option with the reason; without the optimizer it saves', async () => {
    const m = model(7);
    m.compile({ optimizer: new AdamP({ groups: [{ select: (n) => n.endsWith('bias'), weightDecay: 0 }] }), loss: 'meanSquaredError' });
    const handler = tf.io.withSaveHandler(async () => ({ modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }));
    await expect(m.save(handler, { includeOptimizer: true })).rejects.toThrow(/groups\[0\].select is a function/);
    await expect(m.save(handler, { includeOptimizer: false })).resolves.toBeDefined();
    m.dispose();
  });
});

function registered(name: string): tf.Variable {
  return tf.engine().registeredVariables[name];
}
