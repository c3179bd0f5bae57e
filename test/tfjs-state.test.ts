/**
 * The adapter's state across saves: getWeights() writes the state setWeights() restored for
 * variables not stepped since (load -> save -> load keeps every moment bit for bit, through real
 * tfjs-layers model.save / tf.loadLayersModel), and checkpoints (saveCheckpoint /
 * loadCheckpoint through `adampCore()`, into a fresh optimizer after `attach`).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { AdamP, SGDP, AdamW, SGD, type AdampTfjsOptimizer, type NamedTensor } from '../lib/tfjs';
import { loadCheckpoint, saveCheckpoint, saveCheckpointSync } from '../lib/index';
import { parseSafetensors, readF32 } from '../lib/checkpoint/safetensors';
import { rng, randn } from './helpers/random';
import { adampCpuBackends, artifactsOf, useTfjsBackend } from './helpers/tfjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-tfjs-state-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  await useTfjsBackend('cpu');
});

function model(seed: number): tfl.Sequential {
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [5, 5, 2], filters: 3, kernelSize: 2, activation: 'relu', kernelInitializer: tfl.initializers.heNormal({ seed }) }));
  m.add(tfl.layers.depthwiseConv2d({ kernelSize: 2, depthMultiplier: 2, depthwiseInitializer: tfl.initializers.heNormal({ seed: seed + 1 }) }));
  m.add(tfl.layers.flatten());
  m.add(tfl.layers.batchNormalization({}));
  m.add(tfl.layers.dense({ units: 2, kernelInitializer: tfl.initializers.glorotNormal({ seed: seed + 2 }) }));
  return m;
}

function data(seed: number) {
  const r = rng(seed);
  return { xs: tf.tensor4d(randn(r, 16 * 50), [16, 5, 5, 2]), ys: tf.tensor2d(randn(r, 32), [16, 2]) };
}

function bytesOf(a: tf.io.ModelArtifacts): Uint8Array {
  const d = a.weightData!;
  const parts = Array.isArray(d) ? d : [d];
  const out = new Uint8Array(parts.reduce((n, b) => n + b.byteLength, 0));
  let o = 0;
  for (const b of parts) { out.set(new Uint8Array(b), o); o += b.byteLength; }
  return out;
}

type Make = () => AdampTfjsOptimizer<object>;
const KINDS: Array<[string, Make]> = [
  ['AdamP', () => new AdamP({ lr: 0.01, weightDecay: 0.1, groups: [{ select: /bias|gamma|beta/, weightDecay: 0 }] }) as never],
  ['SGDP', () => new SGDP({ lr: 0.05, momentum: 0.9, nesterov: true }) as never],
  ['AdamW', () => new AdamW({ lr: 0.01 }) as never],
  ['SGD', () => new SGD({ lr: 0.05, momentum: 0.9 }) as never],
];

describe('getWeights writes restored state not yet claimed', () => {
  test.each(KINDS)('%s: load -> save -> load keeps every moment bit for bit (real model.save / tf.loadLayersModel); training then resumes identically', async (_kind, make) => {
    const { xs, ys } = data(1);
    const a = model(3);
    a.compile({ optimizer: make(), loss: 'meanSquaredError' });
    await a.fit(xs, ys, { epochs: 2, batchSize: 8, verbose: 0, shuffle: false });
    const first = await artifactsOf(a);
    const b = await tfl.loadLayersModel(tf.io.fromMemory(first));
    const second = await artifactsOf(b); // before any training of b: its optimizer holds only restored state
    expect(second.weightSpecs).toEqual(first.weightSpecs);
    const optimizerSpecs = first.weightSpecs!.filter((s) => s.group === 'optimizer');
    expect(optimizerSpecs.length).toBeGreaterThan(1);
    expect(Buffer.from(bytesOf(second)).equals(Buffer.from(bytesOf(first)))).toBe(true);
    const c = await tfl.loadLayersModel(tf.io.fromMemory(second));
    expect((c.optimizer as unknown as AdampTfjsOptimizer<object>).iterations).toBe(4);
    await a.fit(xs, ys, { epochs: 2, batchSize: 8, verbose: 0, shuffle: false });
    await c.fit(xs, ys, { epochs: 2, batchSize: 8, verbose: 0, shuffle: false });
    expect(c.getWeights().map((t) => t.dataSync())).toEqual(a.getWeights().map((t) => t.dataSync()));
    for (const m of [a, b, c]) m.dispose();
  });

  test('state for variables not stepped yet stays in getWeights, after the stepped ones, until they appear', async () => {
    const [u, v] = [[3, 2], [4]].map((s, i) => tf.variable(tf.zeros(s), true, `pend_${i}_${Math.random()}`));
    const src = new AdamP({ lr: 0.1 });
    const g = (x: tf.Variable, seed: number): NamedTensor => ({ name: x.name, tensor: tf.tensor(randn(rng(seed), x.size), x.shape) });
    src.applyGradients([g(u, 1), g(v, 2)]);
    src.applyGradients([g(u, 3), g(v, 4)]);
    const saved = await src.getWeights();
    const values = saved.map((w) => (w.tensor.dataSync() as Float32Array).slice());
    const dst = new AdamP({ lr: 0.1 });
    await dst.setWeights(saved);
    const same = await dst.getWeights();
    expect(same.map((w) => w.name)).toEqual(saved.map((w) => w.name));
    same.forEach((w, i) => expect(Buffer.from((w.tensor.dataSync() as Float32Array).buffer).equals(Buffer.from(values[i].buffer))).toBe(true));
    dst.applyGradients([g(v, 5)]); // v claims its state; u's stays pending
    const after = await dst.getWeights();
    expect(after.map((w) => w.name)).toEqual(['iter', ...[v, u].flatMap((x) => ['step', 'exp_avg', 'exp_avg_sq'].map((s) => `${x.name}/${s}`))]);
    expect(after.find((w) => w.name === `${v.name}/step`)!.tensor.dataSync()[0]).toBe(3);
    expect(after.find((w) => w.name === `${u.name}/exp_avg`)!.tensor.dataSync()).toEqual(values[saved.findIndex((w) => w.name === `${u.name}/exp_avg`)]);
    u.dispose();
    v.dispose();
  });
});

describe.each(adampCpuBackends())('checkpoints through adampCore(), adamp %s', (backend) => {
  test('saveCheckpoint / loadCheckpoint into a fresh optimizer after attach(model.trainableWeights): the same state, training resumes identically', async () => {
    const { xs, ys } = data(2);
    const make = () => new AdamP({ lr: 0.01, weightDecay: 0.1, backend, groups: [{ select: /bias|gamma|beta/, weightDecay: 0 }] });
    const a = model(11);
    const oa = make();
    a.compile({ optimizer: oa, loss: 'meanSquaredError' });
    await a.fit(xs, ys, { epochs: 2, batchSize: 8, verbose: 0, shuffle: false });
    const file = path.join(tmp, `ckpt-${backend}.safetensors`);
    await saveCheckpoint(file, oa as never, { params: true });

    const b = model(99);
    b.setWeights(a.getWeights().map((w) => tf.tensor((w.dataSync() as Float32Array).slice(), w.shape)));
    const ob = make();
    await expect(loadCheckpoint(file, ob as never)).rejects.toThrow(/knows no variables yet: step once, or call attach\(model.trainableWeights\)/);
    ob.attach(b.trainableWeights);
    const info = await loadCheckpoint(file, ob as never);
    expect(info.optimizer).toBe('AdamP');
    expect(ob.stateDict()).toEqual(oa.stateDict());
    b.compile({ optimizer: ob, loss: 'meanSquaredError' });
    await a.fit(xs, ys, { epochs: 2, batchSize: 8, verbose: 0, shuffle: false });
    await b.fit(xs, ys, { epochs: 2, batchSize: 8, verbose: 0, shuffle: false });
    expect(b.getWeights().map((t) => t.dataSync())).toEqual(a.getWeights().map((t) => t.dataSync()));
    a.dispose();
    b.dispose();
  });

  test('{ params: true } saves the variables\' current values, in the core\'s order and channel-view shapes', () => {
    const m = model(21);
    const vars = m.trainableWeights.map((w) => w.read() as tf.Variable);
    const opt = new AdamP({ lr: 0.1, backend });
    opt.applyGradients(vars.map((v) => ({ name: v.name, tensor: tf.onesLike(v) })));
    const file = path.join(tmp, `params-${backend}.safetensors`);
    saveCheckpointSync(file, opt as never, { params: true });
    const parsed = parseSafetensors(fs.readFileSync(file), file);
    const names = JSON.parse(parsed.metadata.param_names) as string[];
    expect(names).toEqual(opt.variableNames);
    const views = new Map(opt.channelViews.map((x) => [x.name, x.view.shape]));
    names.forEach((n, i) => {
      const t = parsed.tensors.find((x) => x.name === `params.${i}`)!;
      expect([n, t.shape]).toEqual([n, views.get(n)]);
      expect([n, readF32(t)]).toEqual([n, tf.engine().registeredVariables[n].dataSync()]);
    });
    expect(views.get(vars.find((v) => /depthwise_kernel/.test(v.name))!.name)).toEqual([4, 6]); // [2, 2, 3, 2] as [kh*kw, in*mult]
    m.dispose();
  });
});

describe('attach', () => {
  test('refuses what is not a registered float32 variable, naming it; skips variables already known', async () => {
    const opt = new AdamP();
    expect(() => opt.attach({} as never)).toThrow(/must be an array/);
    expect(() => opt.attach([{ name: 'no_such_variable_abc' }])).toThrow(/'no_such_variable_abc' is not a registered tf.Variable/);
    const iv = tf.variable(tf.zeros([2], 'int32'), true, `att_int_${Math.random()}`);
    expect(() => opt.attach([iv])).toThrow(/int32/);
    const v = tf.variable(tf.zeros([2, 2]), true, `att_${Math.random()}`);
    opt.attach([v, v]);
    opt.attach([v]);
    expect(opt.variableNames).toEqual([v.name]);
    opt.dispose();
    expect(() => opt.attach([v])).toThrow(/disposed/);
    await expect(opt.getWeights()).rejects.toThrow(/disposed/);
    iv.dispose();
    v.dispose();
  });
});
