/**
 * AdamP (Heo et al., ICLR 2021, "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
 * Scale-invariant Weights"): Adam with decoupled weight decay whose update loses its radial
 * component on scale-invariant weights. docs/numerics.md#adamp is the specification; the C++
 * policy is native/include/adamp/optim/adamp.h.
 */
import { ADAM_SLOTS, adamDenom, adamMoments, adamOptions, adamScalars, type AdamScalars } from './adam-moments';
import { bool, nonNegative, opt, type OptimizerSpec } from './spec';

const f = Math.fround;

/** Hyperparameters of AdamP. */
export interface AdamPOptions {
  /** Learning rate. Default `1e-3`. Must be finite and `>= 0`. */
  lr?: number;
  /** Coefficients of the running averages of the gradient and its square. Default `[0.9, 0.999]`, each in `[0, 1)`. */
  betas?: readonly [number, number];
  /** Added to the denominator (Adam) and inside the cosine similarity and the weight norm of the projection. Default `1e-8`, `>= 0`. */
  eps?: number;
  /** Decoupled (AdamW-style) weight decay: `p *= 1 - lr * weightDecay * ratio`. Default `0`, `>= 0`. */
  weightDecay?: number;
  /** Threshold of the projection test: project when `max|cos| < delta / sqrt(fan-in)`. Default `0.1`, `>= 0`. `0` turns the projection off (AdamP becomes AdamW). */
  delta?: number;
  /** Weight-decay multiplier applied to params whose update was projected. Default `0.1`, `>= 0`. */
  wdRatio?: number;
  /** Nesterov momentum: `u = (beta1 * m + (1 - beta1) * g) / denom`. Default `false`. */
  nesterov?: boolean;
}

/** Per-param state of AdamP, as in `torch.optim` (`step`, `exp_avg`, `exp_avg_sq`). */
export interface AdamPParamState {
  step: number;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

export const adampSpec: OptimizerSpec<AdamPOptions, AdamPParamState, AdamScalars> = {
  kind: 'adamp',
  name: 'AdamP',
  options: [
    ...adamOptions(0),
    opt('delta', nonNegative, 0.1),
    opt('wdRatio', nonNegative, 0.1, 'wd_ratio'),
    opt('nesterov', bool, false),
  ],
  slots: ADAM_SLOTS,
  hasStep: true,
  projects: true,
  wireNames: ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'delta', 'wdRatio', 'nesterov'],
  wire: (g) => Float64Array.of(g.lr, g.betas[0], g.betas[1], g.eps, g.weightDecay, g.delta, g.wdRatio, g.nesterov ? 1 : 0),
  scalars: (g, step) => adamScalars(g.lr, g.betas, g.eps, step, g.nesterov),
  // The official code decays only when weight_decay > 0.
  wdFactor: (g, ratio) => (g.weightDecay > 0 ? f(1 - g.lr * g.weightDecay * ratio) : 1),
  decisionParams: (g) => ({ delta: g.delta, wdRatio: g.wdRatio, eps: g.eps }),
  math: {
    update(i0, i1, g, _p, st, s, u) {
      const m = st[0], v = st[1];
      for (let i = i0; i < i1; i++) adamMoments(m, v, i, g[i], s);
      adampStored(i0, i1, g, st, s, u);
    },
    stored: adampStored,
    stepScale: (s) => s.negStep,
  },
};

/** u from the updated moments: `m / den` (Nesterov: `(b1 m + (1-b1) g) / den`). */
function adampStored(i0: number, i1: number, g: Float32Array, st: readonly Float32Array[], s: AdamScalars, u: Float32Array): void {
  const m = st[0], v = st[1];
  const { b1, omb1 } = s;
  if (s.nesterov) {
    for (let i = i0; i < i1; i++) u[i] = f(f(f(b1 * m[i]) + f(omb1 * g[i])) / adamDenom(v[i], s));
  } else {
    for (let i = i0; i < i1; i++) u[i] = f(m[i] / adamDenom(v[i], s));
  }
}
