/**
 * The toy problem of the demo: a scale-invariant objective in the spirit of the paper's toy
 * experiment (Heo et al., ICLR 2021, section 2), with no framework.
 *
 * A few weight tensors play the roles of a small network's layers:
 * - `channel`: a conv/linear weight followed by a per-output-channel normalization (batch norm):
 *   the loss depends only on each output channel's direction w_c / |w_c|;
 * - `layer`: a weight normalized as a whole (weight standardization / layer-wise norm): the loss
 *   depends only on w / |w|;
 * - `plain`: a weight with no normalization after it (a classifier head): not scale-invariant;
 * - `gain`: a 1-D gain vector (never eligible for projection).
 *
 * Each unit direction u is pulled towards a fixed random target direction t through an
 * ill-conditioned quadratic `1/2 sum_j lambda_j (u_j - t_j)^2` (lambda log-spaced over
 * `[1, condition]`), so progress depends on the effective step size for many steps. Optional
 * gradient noise (added to dL/du before the chain rule, so it stays tangent to the sphere, as
 * minibatch gradients of a scale-invariant loss are) keeps the gradients alive, as in training.
 *
 * The gradient of a scale-invariant term is orthogonal to its weight: that is exactly why
 * momentum inflates the weight norm and shrinks the effective step size, and what the
 * projection of AdamP/SGDP removes.
 */
import type { Param } from '../../lib/types';
import { Rng } from '../rng';

/** How a tensor enters the objective. */
export type ToyKind = 'channel' | 'layer' | 'plain' | 'gain';

/** One tensor of the toy problem. */
export interface ToyTensorSpec {
  name: string;
  kind: ToyKind;
  shape: readonly number[];
}

/** The toy problem's configuration. */
export interface ToyConfig {
  tensors: readonly ToyTensorSpec[];
  /** Ratio of the largest to the smallest curvature of each quadratic. */
  condition: number;
  /** Standard deviation of the gradient noise, relative to the curvature scale. */
  noise: number;
}

/** The default problem: a small "network" with every kind of tensor. */
export const DEFAULT_TOY: ToyConfig = {
  tensors: [
    { name: 'conv1.weight', kind: 'channel', shape: [16, 8, 3, 3] },
    { name: 'conv2.weight', kind: 'channel', shape: [32, 16, 3, 3] },
    { name: 'proj.weight', kind: 'layer', shape: [32, 64] },
    { name: 'bn.weight', kind: 'gain', shape: [32] },
    { name: 'head.weight', kind: 'plain', shape: [10, 32] },
  ],
  condition: 1000,
  noise: 0.05,
};

interface TensorData {
  spec: ToyTensorSpec;
  numel: number;
  /** Rows of the unit-direction view: channels for `channel`, 1 for `layer`; 1 for plain/gain (unused). */
  rows: number;
  cols: number;
  lambda: Float64Array;
  target: Float64Array;
  init: Float32Array;
  /** Per-element standard deviation of the gradient noise: `noise / sqrt(fan-in)`. */
  noiseStd: number;
}

/** Whether a kind's loss depends only on the direction of (rows of) the weight. */
export function isScaleInvariant(kind: ToyKind): boolean {
  return kind === 'channel' || kind === 'layer';
}

/** The toy objective: fixed curvatures, targets and initial weights drawn from one seed. */
export class ToyProblem {
  readonly tensors: readonly TensorData[];
  private noiseRng: Rng;

  constructor(seed: number, config: ToyConfig = DEFAULT_TOY) {
    const rng = new Rng(seed);
    this.noiseRng = new Rng(seed * 7919 + 1);
    const logK = Math.log(config.condition);
    this.tensors = config.tensors.map((spec) => {
      const numel = spec.shape.reduce((a, b) => a * b, 1);
      const rows = spec.kind === 'channel' ? spec.shape[0] : 1;
      const cols = numel / rows;
      const lambda = new Float64Array(numel);
      for (let i = 0; i < numel; i++) lambda[i] = Math.exp(rng.uniform() * logK);
      // Normalize the curvatures to mean 1 so every kind has losses of the same order.
      let mean = 0;
      for (let i = 0; i < numel; i++) mean += lambda[i];
      mean /= numel;
      for (let i = 0; i < numel; i++) lambda[i] /= mean;
      const target = new Float64Array(numel);
      for (let i = 0; i < numel; i++) target[i] = rng.normal();
      if (isScaleInvariant(spec.kind)) {
        for (let r = 0; r < rows; r++) normalizeRow(target, r * cols, cols);
      } else {
        for (let i = 0; i < numel; i++) target[i] *= 0.5;
      }
      // He-like init: rows of norm ~1 (the scale of a freshly initialized layer).
      const init = new Float32Array(numel);
      const std = spec.kind === 'gain' ? 0 : 1 / Math.sqrt(cols);
      for (let i = 0; i < numel; i++) init[i] = spec.kind === 'gain' ? 1 : rng.normal() * std;
      const fanIn = spec.shape.length > 1 ? numel / spec.shape[0] : 1;
      const noiseStd = config.noise / Math.sqrt(fanIn);
      return { spec, numel, rows, cols, lambda, target, init, noiseStd };
    });
  }

  /** Restarts the gradient noise from `seed` (the data-parallel demo: one noise stream per sample of a batch). */
  setNoiseSeed(seed: number): void {
    this.noiseRng = new Rng(seed);
  }

  /** Fresh params at the initial point (the same for every optimizer), gradients allocated. */
  makeParams(): Param[] {
    return this.tensors.map((t) => ({
      name: t.spec.name,
      shape: t.spec.shape,
      data: Float32Array.from(t.init),
      grad: new Float32Array(t.numel),
    }));
  }

  /** The noiseless objective at `params`. */
  loss(params: readonly Param[]): number {
    let total = 0;
    this.tensors.forEach((t, k) => {
      total += tensorLoss(t, params[k].data, null, this.noiseRng);
    });
    return total;
  }

  /** Writes the (noisy) gradient into each `param.grad` and returns the noiseless loss. */
  lossAndGrad(params: readonly Param[]): number {
    let total = 0;
    this.tensors.forEach((t, k) => {
      const grad = params[k].grad;
      if (!grad) throw new Error(`param '${t.spec.name}' has no grad buffer`);
      total += tensorLoss(t, params[k].data, grad, this.noiseRng);
    });
    return total;
  }
}

function normalizeRow(x: Float64Array, off: number, n: number): void {
  let s = 0;
  for (let j = 0; j < n; j++) s += x[off + j] * x[off + j];
  const inv = 1 / Math.sqrt(s);
  for (let j = 0; j < n; j++) x[off + j] *= inv;
}

/** Loss of one tensor; when `grad` is given, writes dL/dw (plus tangent noise) into it. */
function tensorLoss(t: TensorData, w: Float32Array, grad: Float32Array | null, rng: Rng): number {
  const { lambda, target, rows, cols } = t;
  const noise = grad ? t.noiseStd : 0;
  let loss = 0;
  if (!isScaleInvariant(t.spec.kind)) {
    for (let i = 0; i < t.numel; i++) {
      const d = w[i] - target[i];
      loss += 0.5 * lambda[i] * d * d;
      if (grad) grad[i] = lambda[i] * d + (noise > 0 ? noise * rng.normal() : 0);
    }
    return loss;
  }
  const a = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const off = r * cols;
    let nn = 0;
    for (let j = 0; j < cols; j++) nn += w[off + j] * w[off + j];
    const norm = Math.sqrt(nn);
    // dL/du, then the chain rule through u = w/|w|: dL/dw = (a - (a.u) u) / |w|.
    let au = 0;
    for (let j = 0; j < cols; j++) {
      const u = w[off + j] / norm;
      const d = u - target[off + j];
      loss += 0.5 * lambda[off + j] * d * d;
      a[j] = lambda[off + j] * d + (noise > 0 ? noise * rng.normal() : 0);
      au += a[j] * u;
    }
    if (grad) {
      for (let j = 0; j < cols; j++) grad[off + j] = (a[j] - au * (w[off + j] / norm)) / norm;
    }
  }
  return loss;
}
