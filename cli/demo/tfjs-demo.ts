/**
 * The training demo (`adamp demo --tfjs`): a small network whose hidden dense layers are
 * followed by batch normalization (so their kernels are scale-invariant), trained with
 * TensorFlow.js (tfjs-core + the pure-JS CPU backend + layers) through `adamp/tfjs`, comparing
 * SGD vs SGDP and AdamW vs AdamP from the same initial weights and the same batches.
 *
 * The default data is an embedded, procedurally drawn dataset (lib/demo/shapes-data.ts); with
 * `data` it reads MNIST or Fashion-MNIST IDX files (plain or .gz).
 *
 * TensorFlow.js is an optional peer of this package: the demo loads it lazily and says what to
 * install when it is missing.
 */
import * as fs from 'fs';
import * as path from 'path';
import type * as TfCore from '@tensorflow/tfjs-core';
import type * as TfLayers from '@tensorflow/tfjs-layers';
import type { ParamStepInfo } from '../../lib/types';
import { renderFigure, type ChartSpec } from '../svg/chart';
import { ProgressBar, type ProgressStream } from './progress';
import { fmt, formatTable, pct } from './table';
import { Rng } from '../rng';
import { makeShapes, type ImageSet } from './shapes-data';
import { loadIdxSplit } from './idx';
import { cosineLr } from './toy-demo';

export type TfjsRunName = 'sgd' | 'sgdp' | 'adamw' | 'adamp';

/** The embedded defaults of `adamp demo --tfjs`. */
export const TFJS_DEFAULTS = {
  seed: 1,
  out: 'adamp-demo',
  /** Embedded dataset: 16x16 images, 10 classes. */
  embedded: { train: 3000, test: 1000, size: 16, epochs: 6 },
  /** IDX data (MNIST/Fashion-MNIST): the first 10k training images unless `trainSize`, all test images. */
  idx: { epochs: 3, trainSize: 10000 },
  batchSize: 32,
  sgd: { lr: 0.2, momentum: 0.9, weightDecay: 1e-4 },
  adam: { lr: 5e-3, weightDecay: 1e-2 },
  optimizers: ['sgd', 'sgdp', 'adamw', 'adamp'] as TfjsRunName[],
} as const;

export interface TfjsDemoOptions {
  epochs?: number;
  seed?: number;
  out?: string;
  /** Folder with MNIST-style IDX files; default: the embedded dataset. */
  data?: string;
  /** Training images: the embedded set's size (default 3000), or the first N of the IDX files (default 10000). */
  trainSize?: number;
  optimizers?: string[];
  backend?: 'auto' | 'js' | 'native';
  progress?: ProgressStream | null;
  log?: (line: string) => void;
}

export interface TfjsRunSummary {
  name: TfjsRunName;
  label: string;
  backend: string | null;
  testAccuracy: number;
  testLoss: number;
  trainLoss: number;
  weightNorm: number;
  initialWeightNorm: number;
  meanEffectiveStepSize: number;
  projectionShare: { channel: number; layer: number };
  seconds: number;
}

export interface TfjsDemoResult {
  dataset: string;
  runs: TfjsRunSummary[];
  table: string;
  findings: string[];
  files: string[];
}

const RUN_SPECS: Record<TfjsRunName, { label: string; family: 'sgd' | 'adam'; projection: boolean; color: string }> = {
  sgd: { label: 'SGD', family: 'sgd', projection: false, color: '#1f77b4' },
  sgdp: { label: 'SGDP', family: 'sgd', projection: true, color: '#1f77b4' },
  adamw: { label: 'AdamW', family: 'adam', projection: false, color: '#d62728' },
  adamp: { label: 'AdamP', family: 'adam', projection: true, color: '#d62728' },
};

/** Layers whose kernel is followed by batch norm: their kernels are scale-invariant. */
const INVARIANT_LAYERS = ['fc1', 'fc2'];

interface Tf {
  tf: typeof TfCore;
  tfl: typeof TfLayers;
  adapter: typeof import('../../lib/tfjs');
}

/** Loads TensorFlow.js and the adapter, or explains what to install. */
export function loadTf(): Tf {
  const missing: string[] = [];
  const need = ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-layers'];
  for (const m of need) {
    try {
      require.resolve(m);
    } catch {
      missing.push(m);
    }
  }
  if (missing.length) {
    throw new Error(`the TensorFlow.js demo needs ${missing.join(', ')}: npm install ${need.join(' ')}`);
  }
  /* eslint-disable @typescript-eslint/no-require-imports */
  const tf = require('@tensorflow/tfjs-core') as typeof TfCore;
  require('@tensorflow/tfjs-backend-cpu');
  const tfl = require('@tensorflow/tfjs-layers') as typeof TfLayers;
  const adapter = require('../../lib/tfjs') as typeof import('../../lib/tfjs');
  /* eslint-enable @typescript-eslint/no-require-imports */
  return { tf, tfl, adapter };
}

async function quietCpuBackend(tf: typeof TfCore): Promise<void> {
  await tf.setBackend('cpu');
  // The CPU backend greets its first tensor with a banner recommending tfjs-node: not useful here.
  const warn = console.warn;
  console.warn = () => undefined;
  try {
    tf.tensor([0]).dispose();
  } finally {
    console.warn = warn;
  }
}

/**
 * Dense layers followed by batch normalization (their kernels are scale-invariant per output
 * unit), then a plain dense classifier. note: dense rather than conv layers because the pure-JS
 * CPU backend's Conv2DBackpropFilter is about 60x slower than its forward convolution, which
 * would make the default run take many minutes; the effect on scale-invariant weights is the same.
 */
function buildModel(tfl: typeof TfLayers, height: number, width: number, classes: number, seed: number): TfLayers.LayersModel {
  const init = (k: number) => tfl.initializers.heNormal({ seed: seed * 101 + k });
  const model = tfl.sequential();
  model.add(tfl.layers.flatten({ inputShape: [height, width, 1] }));
  model.add(tfl.layers.dense({ name: 'fc1', units: 128, useBias: false, kernelInitializer: init(1) }));
  model.add(tfl.layers.batchNormalization({ name: 'bn1' }));
  model.add(tfl.layers.activation({ activation: 'relu' }));
  model.add(tfl.layers.dense({ name: 'fc2', units: 64, useBias: false, kernelInitializer: init(2) }));
  model.add(tfl.layers.batchNormalization({ name: 'bn2' }));
  model.add(tfl.layers.activation({ activation: 'relu' }));
  model.add(tfl.layers.dense({ name: 'out', units: classes, kernelInitializer: tfl.initializers.glorotUniform({ seed: seed * 101 + 3 }), activation: 'softmax' }));
  return model;
}

function isInvariant(name: string): boolean {
  return INVARIANT_LAYERS.some((l) => new RegExp(`^${l}/kernel(_\\d+)?$`).test(name));
}

/** Series over steps (per batch) and epochs of one run. */
interface RunSeries {
  stepLoss: number[];
  weightNorm: number[];
  effectiveStepSize: number[];
  epochTestAccuracy: number[];
  epochTestLoss: number[];
  epochTrainLoss: number[];
}

function checkInt(name: string, v: number | undefined, min: number, max: number): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new RangeError(`${name} must be an integer in [${min}, ${max}], got ${String(v)}`);
}

/** Trains the selected runs and writes `tfjs-demo.svg` and `tfjs-demo.json` into `out`. */
export async function runTfjsDemo(o: TfjsDemoOptions = {}): Promise<TfjsDemoResult> {
  checkInt('epochs', o.epochs, 1, 1000);
  checkInt('seed', o.seed, 0, 2 ** 31 - 1);
  checkInt('trainSize', o.trainSize, 1, 10_000_000);
  const names = (o.optimizers ?? TFJS_DEFAULTS.optimizers) as string[];
  for (const n of names) if (!(n in RUN_SPECS)) throw new RangeError(`unknown optimizer '${n}': choose from ${Object.keys(RUN_SPECS).join(', ')}`);
  const runs = [...new Set(names)] as TfjsRunName[];
  const seed = o.seed ?? TFJS_DEFAULTS.seed;
  const out = o.out ?? TFJS_DEFAULTS.out;
  const log = o.log ?? ((s: string) => process.stdout.write(s + '\n'));
  const progress = o.progress === undefined ? process.stderr : o.progress;

  let train: ImageSet, test: ImageSet, dataset: string;
  if (o.data) {
    train = loadIdxSplit(o.data, 'train', o.trainSize ?? TFJS_DEFAULTS.idx.trainSize);
    test = loadIdxSplit(o.data, 'test');
    dataset = `${o.data} (IDX): ${train.count} train / ${test.count} test images, ${train.height}x${train.width}`;
  } else {
    const e = TFJS_DEFAULTS.embedded;
    train = makeShapes(o.trainSize ?? e.train, seed * 2 + 1, e.size);
    test = makeShapes(e.test, seed * 2 + 2, e.size);
    dataset = `embedded shapes (10 classes, drawn from seed ${seed}): ${train.count} train / ${test.count} test images, ${e.size}x${e.size}`;
  }
  const epochs = o.epochs ?? (o.data ? TFJS_DEFAULTS.idx.epochs : TFJS_DEFAULTS.embedded.epochs);
  const { tf, tfl, adapter } = loadTf();
  fs.mkdirSync(out, { recursive: true }); // fail before training, not after, when `out` cannot be created
  await quietCpuBackend(tf);
  log(`Data: ${dataset}; ${epochs} epochs, batch ${TFJS_DEFAULTS.batchSize}, cosine lr.`);

  const xTest = tf.tensor4d(test.images, [test.count, test.height, test.width, 1]);
  const yTest = tf.oneHot(tf.tensor1d(test.labels, 'int32'), train.classes);
  const summaries: TfjsRunSummary[] = [];
  const series: RunSeries[] = [];
  try {
    for (const name of runs) {
      const r = await trainOne(name, { tf, tfl, adapter }, train, xTest, yTest, epochs, seed, o.backend ?? 'auto', progress);
      summaries.push(r.summary);
      series.push(r.series);
    }
  } finally {
    xTest.dispose();
    yTest.dispose();
  }

  const table = formatTable(
    ['optimizer', 'test acc', 'test loss', 'train loss', 'weight norm', 'x init', 'mean eff. step', 'proj. channel', 'proj. layer', 'time'],
    summaries.map((s) => [
      s.label, pct(s.testAccuracy), fmt(s.testLoss), fmt(s.trainLoss), fmt(s.weightNorm), `${(s.weightNorm / s.initialWeightNorm).toFixed(2)}x`,
      fmt(s.meanEffectiveStepSize), pct(s.projectionShare.channel), pct(s.projectionShare.layer), `${s.seconds.toFixed(0)}s`,
    ]),
  );
  const findings: string[] = [];
  for (const [b, p] of [['sgd', 'sgdp'], ['adamw', 'adamp']] as const) {
    const base = summaries.find((s) => s.name === b), proj = summaries.find((s) => s.name === p);
    if (!base || !proj) continue;
    findings.push(`${proj.label} vs ${base.label}: test accuracy ${pct(proj.testAccuracy)} vs ${pct(base.testAccuracy)}; ` +
      `weight norm of the BN-followed kernels x${(proj.weightNorm / proj.initialWeightNorm).toFixed(2)} vs x${(base.weightNorm / base.initialWeightNorm).toFixed(2)}; ` +
      `mean effective step size ${fmt(proj.meanEffectiveStepSize, 4)} vs ${fmt(base.meanEffectiveStepSize, 4)}.`);
  }

  const svgPath = path.join(out, 'tfjs-demo.svg');
  const jsonPath = path.join(out, 'tfjs-demo.json');
  const specs = runs.map((n) => RUN_SPECS[n]);
  const stepX = (k: number) => Array.from({ length: series[k].weightNorm.length }, (_, i) => (i + 1) / (series[k].weightNorm.length / epochs));
  const charts: ChartSpec[] = [
    { title: 'Test accuracy', xLabel: 'epoch', yLabel: 'accuracy', series: specs.map((s, k) => ({ name: s.label, color: s.color, dashed: !s.projection, x: series[k].epochTestAccuracy.map((_, i) => i + 1), y: series[k].epochTestAccuracy })) },
    { title: 'Weight norm of BN-followed kernels', xLabel: 'epoch', yLabel: '||w||', series: specs.map((s, k) => ({ name: s.label, color: s.color, dashed: !s.projection, x: stepX(k), y: series[k].weightNorm })) },
    { title: 'Effective step size ||dw|| / ||w||', xLabel: 'epoch', yLabel: 'effective step size', logY: true, logDecades: 4, series: specs.map((s, k) => ({ name: s.label, color: s.color, dashed: !s.projection, x: stepX(k), y: series[k].effectiveStepSize })) },
  ];
  fs.writeFileSync(svgPath, renderFigure(charts, {
    title: 'Training a small dense + batch-norm network with TensorFlow.js',
    subtitle: `${dataset}; dashed = baseline (SGD, AdamW), solid = projected (SGDP, AdamP)`,
  }));
  fs.writeFileSync(jsonPath, JSON.stringify({
    dataset, epochs, seed, batchSize: TFJS_DEFAULTS.batchSize, sgd: TFJS_DEFAULTS.sgd, adam: TFJS_DEFAULTS.adam, schedule: 'cosine to 0 over all steps',
    runs: summaries, findings,
    series: runs.map((n, k) => ({ name: n, ...series[k] })),
  }) + '\n');
  return { dataset, runs: summaries, table, findings, files: [svgPath, jsonPath] };
}

async function trainOne(
  name: TfjsRunName, { tf, tfl, adapter }: Tf, train: ImageSet, xTest: TfCore.Tensor, yTest: TfCore.Tensor,
  epochs: number, seed: number, backend: 'auto' | 'js' | 'native', progress: ProgressStream | null,
): Promise<{ summary: TfjsRunSummary; series: RunSeries }> {
  const spec = RUN_SPECS[name];
  const started = Date.now();
  const baseLr = spec.family === 'sgd' ? TFJS_DEFAULTS.sgd.lr : TFJS_DEFAULTS.adam.lr;
  const config = { backend, diagnostics: 'full' as const };
  const sgd = { lr: baseLr, momentum: TFJS_DEFAULTS.sgd.momentum, weightDecay: TFJS_DEFAULTS.sgd.weightDecay, ...config };
  const adam = { lr: baseLr, weightDecay: TFJS_DEFAULTS.adam.weightDecay, ...config };
  // The baselines are the registered SGD and AdamW (torch.optim's semantics), the paper's baselines.
  const opt = spec.family === 'sgd'
    ? spec.projection ? new adapter.SGDP(sgd) : new adapter.SGD(sgd)
    : spec.projection ? new adapter.AdamP(adam) : new adapter.AdamW(adam);
  const model = buildModel(tfl, train.height, train.width, train.classes, seed);
  model.compile({ optimizer: opt, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const invariantVars = model.trainableWeights.filter((w) => INVARIANT_LAYERS.some((l) => w.originalName === `${l}/kernel`));
  const initialWeightNorm = Math.sqrt(invariantVars.reduce((a, w) => a + tf.tidy(() => tf.sum(tf.square(w.read())).dataSync()[0]), 0));

  const bs = TFJS_DEFAULTS.batchSize;
  const stepsPerEpoch = Math.ceil(train.count / bs);
  const totalSteps = stepsPerEpoch * epochs;
  const s: RunSeries = { stepLoss: [], weightNorm: [], effectiveStepSize: [], epochTestAccuracy: [], epochTestLoss: [], epochTrainLoss: [] };
  let channel = 0, layer = 0, eligibleSteps = 0, essSum = 0, step = 0;
  const order = new Rng(seed * 31 + 7);
  const px = train.height * train.width;
  try {
    for (let epoch = 1; epoch <= epochs; epoch++) {
      // The same shuffled order for every optimizer (seeded by run seed and epoch only).
      const perm = Array.from({ length: train.count }, (_, i) => i);
      order.shuffle(perm);
      const xs = new Float32Array(train.count * px);
      const ys = new Int32Array(train.count);
      perm.forEach((src, dst) => {
        xs.set(train.images.subarray(src * px, (src + 1) * px), dst * px);
        ys[dst] = train.labels[src];
      });
      const x = tf.tensor4d(xs, [train.count, train.height, train.width, 1]);
      const y = tf.tidy(() => tf.oneHot(tf.tensor1d(ys, 'int32'), train.classes));
      const bar = new ProgressBar(`${spec.label.padEnd(5)} epoch ${epoch}/${epochs}`, stepsPerEpoch, progress);
      let lossSum = 0, batches = 0;
      try {
        await model.fit(x, y, {
          batchSize: bs, epochs: 1, shuffle: false, verbose: 0, yieldEvery: 'never',
          callbacks: {
            onBatchBegin: async () => {
              opt.learningRate = cosineLr(baseLr, step + 1, totalSteps);
            },
            onBatchEnd: async (_batch, logs) => {
              step++;
              const loss = Number(logs?.loss ?? NaN);
              lossSum += loss;
              batches++;
              let nsq = 0, ess = 0, nInv = 0;
              for (const info of opt.lastStepInfo as readonly ParamStepInfo[]) {
                if (info.projection === 'channel') channel++;
                else if (info.projection === 'layer') layer++;
                if (info.projection !== 'not_eligible' && info.projection !== 'no_grad') eligibleSteps++;
                if (info.name !== undefined && isInvariant(info.name)) {
                  nsq += (info.weightNorm ?? 0) ** 2;
                  ess += info.effectiveStepSize ?? 0;
                  nInv++;
                }
              }
              s.stepLoss.push(loss);
              s.weightNorm.push(Math.sqrt(nsq));
              s.effectiveStepSize.push(nInv ? ess / nInv : NaN);
              essSum += nInv ? ess / nInv : 0;
              bar.update(batches, `loss ${fmt(loss, 3)}`);
            },
          },
        });
      } finally {
        x.dispose();
        y.dispose();
      }
      const [tl, ta] = model.evaluate(xTest, yTest, { batchSize: 256 }) as TfCore.Scalar[];
      const testLoss = tl.dataSync()[0], testAcc = ta.dataSync()[0];
      tl.dispose();
      ta.dispose();
      s.epochTrainLoss.push(lossSum / Math.max(1, batches));
      s.epochTestLoss.push(testLoss);
      s.epochTestAccuracy.push(testAcc);
      bar.finish(`train loss ${fmt(lossSum / Math.max(1, batches), 3)}  test acc ${pct(testAcc)}`);
    }
  } finally {
    model.dispose();
  }
  const summary: TfjsRunSummary = {
    name, label: spec.label, backend: opt.backend,
    testAccuracy: s.epochTestAccuracy[s.epochTestAccuracy.length - 1],
    testLoss: s.epochTestLoss[s.epochTestLoss.length - 1],
    trainLoss: s.epochTrainLoss[s.epochTrainLoss.length - 1],
    weightNorm: s.weightNorm[s.weightNorm.length - 1],
    initialWeightNorm,
    meanEffectiveStepSize: essSum / Math.max(1, step),
    projectionShare: { channel: eligibleSteps ? channel / eligibleSteps : 0, layer: eligibleSteps ? layer / eligibleSteps : 0 },
    seconds: (Date.now() - started) / 1000,
  };
  opt.dispose();
  return { summary, series: s };
}
