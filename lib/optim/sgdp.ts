/**
 * SGDP (Heo et al., ICLR 2021): SGD with momentum whose update loses its radial component on
 * scale-invariant weights. docs/numerics.md#sgdp is the specification; the C++ policy is
 * native/include/adamp/optim/sgdp.h.
 */
import { invalid } from '../errors';
import { nonNegative, opt, type OptimizerSpec } from './spec';
import { MOMENTUM_OPTIONS, momentumScalars, type MomentumScalars } from './momentum';

const f = Math.fround;

/** Hyperparameters of SGDP. */
export interface SGDPOptions {
  /** Learning rate. **Required** (no default, as in the official code). Finite and `>= 0`. */
  lr: number;
  /** Momentum factor. Default `0`, finite and `>= 0`. `momentum >= 1` together with weight decay is rejected. */
  momentum?: number;
  /** Dampening of the gradient in the momentum buffer: `buf = momentum * buf + (1 - dampening) * g`, from the first step on. Default `0`. */
  dampening?: number;
  /** Weight decay, divided by `1 - momentum`: `p *= 1 - lr * weightDecay * ratio / (1 - momentum)`. Default `0`, `>= 0`. */
  weightDecay?: number;
  /** Nesterov momentum: `d = g + momentum * buf`. Default `false`. */
  nesterov?: boolean;
  /** Added inside the cosine similarity and to the weight norm of the projection. Default `1e-8`, `>= 0`. */
  eps?: number;
  /** Threshold of the projection test: project when `max|cos| < delta / sqrt(fan-in)`. Default `0.1`, `>= 0`. `0` turns the projection off (SGDP becomes SGD with momentum). */
  delta?: number;
  /** Weight-decay multiplier applied to params whose update was projected. Default `0.1`, `>= 0`. */
  wdRatio?: number;
}

/** Per-param state of SGDP (`momentum` is the official code's name for the buffer). */
export interface SGDPParamState {
  momentum: Float32Array;
}

export const sgdpSpec: OptimizerSpec<SGDPOptions, SGDPParamState, MomentumScalars> = {
  kind: 'sgdp',
  name: 'SGDP',
  options: [
    ...MOMENTUM_OPTIONS,
    opt('eps', nonNegative, 1e-8),
    opt('delta', nonNegative, 0.1),
    opt('wdRatio', nonNegative, 0.1, 'wd_ratio'),
  ],
  crossCheck(g, where) {
    if (g.weightDecay > 0 && g.momentum >= 1) {
      throw invalid(`${where}.momentum must be < 1 when weightDecay > 0 (SGDP divides the decay by 1 - momentum), got momentum ${g.momentum}`);
    }
  },
  slots: [{ key: 'momentum', torch: 'momentum' }],
  hasStep: false,
  projects: true,
  wireNames: ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov', 'eps', 'delta', 'wdRatio'],
  wire: (g) => Float64Array.of(g.lr, g.momentum, g.dampening, g.weightDecay, g.nesterov ? 1 : 0, g.eps, g.delta, g.wdRatio),
  scalars: (g) => momentumScalars(g.lr, g.momentum, g.dampening, 0, g.nesterov),
  wdFactor: (g, ratio) => (g.weightDecay > 0 ? f(1 - (g.lr * g.weightDecay * ratio) / (1 - g.momentum)) : 1),
  decisionParams: (g) => ({ delta: g.delta, wdRatio: g.wdRatio, eps: g.eps }),
  math: {
    update(i0, i1, g, _p, st, s, u) {
      const b = st[0];
      const { mom, omd } = s;
      for (let i = i0; i < i1; i++) b[i] = f(f(b[i] * mom) + omd * g[i]);
      sgdpStored(i0, i1, g, st, s, u);
    },
    stored: sgdpStored,
    // note: without Nesterov the official `d` IS the momentum buffer and the projection runs in
    // place on it, so the projected update is written back into the buffer (docs/numerics.md#sgdp).
    writesBack: (s) => !s.nesterov,
    stepScale: (s) => s.negLr,
  },
};

/** d = the buffer (Nesterov: `g + momentum * buf`). */
function sgdpStored(i0: number, i1: number, g: Float32Array, st: readonly Float32Array[], s: MomentumScalars, u: Float32Array): void {
  const b = st[0];
  if (s.nesterov) {
    const mom = s.mom;
    for (let i = i0; i < i1; i++) u[i] = f(g[i] + f(mom * b[i]));
  } else {
    for (let i = i0; i < i1; i++) u[i] = b[i];
  }
}
