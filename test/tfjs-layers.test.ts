/**
 * The channel view by layer type: for every tfjs-layers layer type with weights, the adapter
 * must use the rows the official code uses for the same layer in PyTorch (`p.view(p.size(0),
 * -1)`, PyTorch's dim 0). Each test builds the real layer, maps each weight to PyTorch's layout
 * for the same layer (e.g. dense `[in, out]` -> Linear `[out, in]`, depthwise `[kh, kw, in, mult]`
 * -> Conv2d(groups=in) `[in*mult, 1, kh, kw]`), and checks that one AdamP step of the tfjs
 * variable through the adapter equals one step of the core optimizer on the PyTorch layout
 * (channel axis 0): the same decision, the same threshold (so the same row length), the same
 * cosine and the same new weights, with a gradient orthogonal to every PyTorch row (the channel
 * view must fire) and with a random one.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { AdamP, layerChannelView, weightKind } from '../lib/tfjs';
import { AdamP as CoreAdamP } from '../lib/index';
import { rng, randn } from './helpers/random';
import { adampCpuBackends, useTfjsBackend } from './helpers/tfjs';

beforeAll(async () => {
  await useTfjsBackend('cpu');
});

/** How a tfjs weight maps to PyTorch's layout for the same layer: a permutation of its axes, then a reshape. */
interface TorchLayout {
  perm: number[];
  /** PyTorch's shape after the permutation (depthwise: `[in*mult, 1, kh, kw]`; PReLU: 1-D). */
  reshape?: (permuted: number[]) => number[];
}

const T2 = { perm: [1, 0] }; // [in, out] -> [out, in]
const CONV1D = { perm: [2, 1, 0] }; // [k, in, out] -> [out, in, k]
const CONV2D = { perm: [3, 2, 0, 1] }; // [kh, kw, in, out] -> [out, in, kh, kw]; transposed: [kh, kw, out, in] -> [in, out, kh, kw]
const CONV3D = { perm: [4, 3, 0, 1, 2] };
const DEPTHWISE = { perm: [2, 3, 0, 1], reshape: (s: number[]) => [s[0] * s[1], 1, s[2], s[3]] }; // [kh, kw, in, m] -> [in*m, 1, kh, kw]
const SAME = (rank: number) => ({ perm: Array.from({ length: rank }, (_, i) => i) });
const FLAT = (rank: number) => ({ perm: Array.from({ length: rank }, (_, i) => i), reshape: (s: number[]) => [s.reduce((a, b) => a * b, 1)] });

interface Case {
  layer: string;
  make: () => tfl.layers.Layer;
  /** PyTorch layout per weight kind (`kernel`, `recurrent_kernel`, ...), and the adapter's rule expected. */
  weights: Record<string, { torch: TorchLayout; rule: string }>;
  /** The PyTorch layer it stands for (documentation of the test). */
  torch: string;
}

const glorot = 'glorotNormal' as const;
const CASES: Case[] = [
  { layer: 'dense', torch: 'Linear', make: () => tfl.layers.dense({ units: 5, inputShape: [7] }), weights: { kernel: { torch: T2, rule: 'kernel' }, bias: { torch: SAME(1), rule: '1d' } } },
  { layer: 'conv1d', torch: 'Conv1d', make: () => tfl.layers.conv1d({ filters: 4, kernelSize: 3, inputShape: [8, 3] }), weights: { kernel: { torch: CONV1D, rule: 'kernel' }, bias: { torch: SAME(1), rule: '1d' } } },
  { layer: 'conv2d', torch: 'Conv2d', make: () => tfl.layers.conv2d({ filters: 4, kernelSize: 3, inputShape: [6, 6, 3] }), weights: { kernel: { torch: CONV2D, rule: 'kernel' } } },
  { layer: 'conv3d', torch: 'Conv3d', make: () => tfl.layers.conv3d({ filters: 3, kernelSize: 2, inputShape: [4, 4, 4, 2] }), weights: { kernel: { torch: CONV3D, rule: 'kernel' } } },
  { layer: 'conv2dTranspose', torch: 'ConvTranspose2d (weight [in, out, kh, kw])', make: () => tfl.layers.conv2dTranspose({ filters: 3, kernelSize: 3, inputShape: [5, 5, 4] }), weights: { kernel: { torch: CONV2D, rule: 'kernel' } } },
  { layer: 'conv3dTranspose', torch: 'ConvTranspose3d', make: () => tfl.layers.conv3dTranspose({ filters: 3, kernelSize: 2, inputShape: [3, 3, 3, 4] }), weights: { kernel: { torch: CONV3D, rule: 'kernel' } } },
  { layer: 'depthwiseConv2d', torch: 'Conv2d(groups=in) [in*mult, 1, kh, kw]', make: () => tfl.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, inputShape: [6, 6, 4] }), weights: { depthwise_kernel: { torch: DEPTHWISE, rule: 'depthwise' }, bias: { torch: SAME(1), rule: '1d' } } },
  {
    layer: 'separableConv2d', torch: 'Conv2d(groups=in) then a 1x1 Conv2d', make: () => tfl.layers.separableConv2d({ filters: 5, kernelSize: 3, depthMultiplier: 2, inputShape: [6, 6, 3] }),
    weights: { depthwise_kernel: { torch: DEPTHWISE, rule: 'depthwise' }, pointwise_kernel: { torch: CONV2D, rule: 'kernel' } },
  },
  { layer: 'embedding', torch: 'Embedding [vocab, dim]', make: () => tfl.layers.embedding({ inputDim: 30, outputDim: 6, inputLength: 4 }), weights: { embeddings: { torch: SAME(2), rule: 'embeddings' } } },
  {
    layer: 'simpleRNN', torch: 'RNN (weight_ih [h, in], weight_hh [h, h])', make: () => tfl.layers.simpleRNN({ units: 4, inputShape: [5, 3], recurrentInitializer: glorot }),
    weights: { kernel: { torch: T2, rule: 'kernel' }, recurrent_kernel: { torch: T2, rule: 'kernel' } },
  },
  {
    layer: 'lstm', torch: 'LSTM (weight_ih [4h, in], weight_hh [4h, h])', make: () => tfl.layers.lstm({ units: 4, inputShape: [5, 3], recurrentInitializer: glorot }),
    weights: { kernel: { torch: T2, rule: 'kernel' }, recurrent_kernel: { torch: T2, rule: 'kernel' } },
  },
  {
    layer: 'gru', torch: 'GRU (weight_ih [3h, in], weight_hh [3h, h])', make: () => tfl.layers.gru({ units: 4, inputShape: [5, 3], recurrentInitializer: glorot }),
    weights: { kernel: { torch: T2, rule: 'kernel' }, recurrent_kernel: { torch: T2, rule: 'kernel' } },
  },
  {
    layer: 'convLstm2d', torch: 'none (a conv per gate: [4f, in, kh, kw])', make: () => tfl.layers.convLstm2d({ filters: 2, kernelSize: 3, inputShape: [2, 5, 5, 3], recurrentInitializer: glorot }),
    weights: { kernel: { torch: CONV2D, rule: 'kernel' }, recurrent_kernel: { torch: CONV2D, rule: 'kernel' } },
  },
  {
    layer: 'bidirectional(lstm)', torch: 'LSTM(bidirectional=True)', make: () => tfl.layers.bidirectional({ layer: tfl.layers.lstm({ units: 3, recurrentInitializer: glorot }) as tfl.RNN, inputShape: [5, 4] }),
    weights: { kernel: { torch: T2, rule: 'kernel' }, recurrent_kernel: { torch: T2, rule: 'kernel' } },
  },
  { layer: 'timeDistributed(dense)', torch: 'Linear', make: () => tfl.layers.timeDistributed({ layer: tfl.layers.dense({ units: 3 }), inputShape: [5, 4] }), weights: { kernel: { torch: T2, rule: 'kernel' } } },
  { layer: 'prelu', torch: 'PReLU (1-D weight: not projected)', make: () => tfl.layers.prelu({ inputShape: [4, 3] }), weights: { alpha: { torch: FLAT(2), rule: 'elementwise' } } },
  { layer: 'prelu (shared axes)', torch: 'PReLU(num_parameters=c)', make: () => tfl.layers.prelu({ inputShape: [4, 4, 3], sharedAxes: [1, 2] }), weights: { alpha: { torch: FLAT(3), rule: 'elementwise' } } },
  { layer: 'batchNormalization', torch: 'BatchNorm (1-D)', make: () => tfl.layers.batchNormalization({ inputShape: [5, 3] }), weights: { gamma: { torch: SAME(1), rule: '1d' }, beta: { torch: SAME(1), rule: '1d' } } },
  { layer: 'layerNormalization', torch: 'LayerNorm (1-D)', make: () => tfl.layers.layerNormalization({ inputShape: [5, 3] }), weights: { gamma: { torch: SAME(1), rule: '1d' }, beta: { torch: SAME(1), rule: '1d' } } },
];

/** `data` of `shape` with its axes permuted: out axis i is in axis perm[i]. */
function permute(data: Float32Array, shape: number[], perm: number[]): { data: Float32Array; shape: number[] } {
  const outShape = perm.map((p) => shape[p]);
  const inStrides = strides(shape);
  const out = new Float32Array(data.length);
  const idx = new Array(shape.length).fill(0);
  for (let o = 0; o < data.length; o++) {
    let src = 0;
    for (let i = 0; i < perm.length; i++) src += idx[i] * inStrides[perm[i]];
    out[o] = data[src];
    for (let i = perm.length - 1; i >= 0; i--) {
      if (++idx[i] < outShape[i]) break;
      idx[i] = 0;
    }
  }
  return { data: out, shape: outShape };
}

function strides(shape: number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

function toTorch(data: Float32Array, shape: number[], t: TorchLayout): { data: Float32Array; shape: number[] } {
  const p = permute(data, shape, t.perm);
  return { data: p.data, shape: t.reshape ? t.reshape(p.shape) : p.shape };
}

function fromTorch(data: Float32Array, tfShape: number[], t: TorchLayout): Float32Array {
  const permuted = t.perm.map((p) => tfShape[p]);
  const inverse = t.perm.map((_, i) => t.perm.indexOf(i));
  return permute(data, permuted, inverse).data;
}

/** g with, per PyTorch row (dim 0) of w, its component along that row removed. */
function orthogonalRows(g: Float32Array, w: Float32Array, rows: number): Float32Array {
  const out = Float64Array.from(g);
  const len = g.length / rows;
  for (let r = 0; r < rows; r++) {
    let gw = 0, ww = 0;
    for (let i = r * len; i < (r + 1) * len; i++) { gw += out[i] * w[i]; ww += w[i] * w[i]; }
    for (let i = r * len; i < (r + 1) * len; i++) out[i] -= (gw / ww) * w[i];
  }
  return Float32Array.from(out);
}

describe.each(adampCpuBackends())('channel view by layer type, adamp %s', (backend) => {
  test.each(CASES.map((c) => [c.layer, c] as const))('%s: the rows of PyTorch\'s layout for the same layer', (_label, c) => {
    const model = tfl.sequential();
    model.add(c.make());
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const checked = new Set<string>();
    vars.forEach((v, vi) => {
      const kind = weightKind(v.name);
      const spec = c.weights[kind];
      if (spec === undefined) return; // a weight the case does not list (e.g. a bias)
      checked.add(kind);
      const shape = v.shape.slice();
      const w0 = (v.dataSync() as Float32Array).slice();
      const wt = toTorch(w0, shape, spec.torch);
      const rows = wt.shape[0];
      for (const mode of ['fire', 'random'] as const) {
        const r = rng(100 + vi);
        let gt = randn(r, w0.length, 0.1);
        if (mode === 'fire' && wt.shape.length > 1) gt = orthogonalRows(gt, wt.data, rows);
        const g = fromTorch(gt, shape, spec.torch);
        // The adapter, on the real layer's variable (its name says the layer type).
        v.assign(tf.tensor(w0, shape));
        const opt = new AdamP({ lr: 0.01, weightDecay: 0.1, backend });
        const gradTensor = tf.tensor(g, shape);
        opt.applyGradients([{ name: v.name, tensor: gradTensor }]);
        gradTensor.dispose();
        // The core, on PyTorch's layout (channel axis 0, the official code's view).
        const p = { data: wt.data.slice(), grad: gt, shape: wt.shape };
        const core = new CoreAdamP([p], { lr: 0.01, weightDecay: 0.1 }, { backend });
        core.step();
        const a = opt.lastStepInfo[0];
        const b = core.lastStepInfo[0];
        const where = `${c.layer} ${kind} [${shape}] -> torch [${wt.shape}], ${mode}`;
        expect([where, opt.channelViews[0].view.rule]).toEqual([where, spec.rule]);
        expect([where, a.projection]).toEqual([where, b.projection]);
        if (mode === 'fire' && wt.shape.length > 1) expect([where, a.projection]).toEqual([where, 'channel']);
        if (wt.shape.length <= 1) expect([where, a.projection]).toEqual([where, 'not_eligible']);
        expect([where, a.channelThreshold]).toEqual([where, b.channelThreshold]); // same row length (fan-in)
        if (b.channelMaxCos !== null) expect(Math.abs(a.channelMaxCos! - b.channelMaxCos)).toBeLessThan(1e-6);
        const after = toTorch((v.dataSync() as Float32Array).slice(), shape, spec.torch).data;
        let maxDiff = 0;
        for (let i = 0; i < after.length; i++) maxDiff = Math.max(maxDiff, Math.abs(after[i] - p.data[i]));
        expect([where, maxDiff < 1e-6]).toEqual([where, true]);
        opt.dispose();
        core.dispose();
      }
    });
    expect([...checked].sort()).toEqual(Object.keys(c.weights).sort());
    model.dispose();
  });
});

describe('the layer rule and the channelAxis option', () => {
  test('layerChannelView by name: the last segment without the uniquifying suffix', () => {
    expect(weightKind('dense_Dense1/kernel_1')).toBe('kernel');
    expect(weightKind('sep/depthwise_kernel_12')).toBe('depthwise_kernel');
    expect(weightKind('embeddings')).toBe('embeddings');
    expect(layerChannelView('e_E1/embeddings_2', [30, 6])).toEqual({ shape: [30, 6], channelAxis: 0, rule: 'embeddings' });
    expect(layerChannelView('d_D1/depthwise_kernel', [3, 3, 4, 2])).toEqual({ shape: [9, 8], channelAxis: -1, rule: 'depthwise' });
    expect(layerChannelView('p_P1/alpha', [4, 4, 3])).toEqual({ shape: [48], rule: 'elementwise' });
    expect(layerChannelView('my_layer/w', [4, 3])).toEqual({ shape: [4, 3], channelAxis: -1, rule: 'other' });
    expect(layerChannelView('x/bias', [3])).toEqual({ shape: [3], rule: '1d' });
  });

  test('a number overrides the layer rule for every variable; a function may defer to it with \'auto\'', () => {
    const model = tfl.sequential();
    model.add(tfl.layers.embedding({ inputDim: 10, outputDim: 4, inputLength: 2 }));
    model.add(tfl.layers.flatten());
    model.add(tfl.layers.dense({ units: 3 }));
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const step = (opt: AdamP) => {
      opt.applyGradients(vars.map((v) => ({ name: v.name, tensor: tf.onesLike(v) })));
      return opt.channelViews.map((x) => [weightKind(x.name), x.view.rule, x.view.channelAxis ?? null]);
    };
    expect(step(new AdamP())).toEqual([['embeddings', 'embeddings', 0], ['kernel', 'kernel', -1], ['bias', '1d', null]]);
    expect(step(new AdamP({ channelAxis: -1 }))).toEqual([['embeddings', 'option', -1], ['kernel', 'option', -1], ['bias', '1d', null]]);
    expect(step(new AdamP({ channelAxis: (name) => (/embeddings/.test(name) ? 1 : 'auto') }))).toEqual(
      [['embeddings', 'option', 1], ['kernel', 'kernel', -1], ['bias', '1d', null]]);
    expect(() => new AdamP({ channelAxis: 'last' as 'auto' })).toThrow(/channelAxis must be 'auto', an integer or a function/);
    model.dispose();
  });
});
