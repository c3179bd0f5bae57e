/**
 * SGD as `torch.optim.SGD` defines it (PyTorch 1.13, single-tensor path): a registered baseline
 * without projection. docs/numerics.md#adamw-and-sgd; the C++ policy is
 * native/include/adamp/optim/sgd.h.
 */
import { invalid } from '../errors';
import type { OptimizerSpec } from './spec';
import { MOMENTUM_OPTIONS, momentumScalars, type MomentumScalars } from './momentum';

const f = Math.fround;

/** Hyperparameters of SGD, as `torch.optim.SGD`'s. */
export interface SGDOptions {
  /** Learning rate. **Required**, finite and `>= 0`. */
  lr: number;
  /** Momentum factor. Default `0`, `>= 0`. */
  momentum?: number;
  /** Dampening of the gradient in the momentum buffer (not applied at the buffer's first step, as in PyTorch). Default `0`. */
  dampening?: number;
  /** L2 weight decay added to the gradient: `d = g + weightDecay * p`. Default `0`, `>= 0`. */
  weightDecay?: number;
  /** Nesterov momentum: `d = d + momentum * buf`; needs `momentum > 0` and `dampening = 0`. Default `false`. */
  nesterov?: boolean;
}

/** Per-param state of SGD (`momentum_buffer` in PyTorch). */
export interface SGDParamState {
  momentumBuffer: Float32Array;
}

/** The SGD scalars and whether this is the tensor's first step (its buffer is then a copy of d). */
export interface SGDScalars extends MomentumScalars {
  decay: boolean;
  hasMomentum: boolean;
  first: boolean;
}

export const sgdSpec: OptimizerSpec<SGDOptions, SGDParamState, SGDScalars> = {
  kind: 'sgd',
  name: 'SGD',
  options: [
    ...MOMENTUM_OPTIONS,
  ],
  crossCheck(g, where) {
    if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0)) {
      throw invalid(`${where}.nesterov needs momentum > 0 and dampening 0 (as in PyTorch), got momentum ${g.momentum} and dampening ${g.dampening}`);
    }
  },
  slots: [{ key: 'momentumBuffer', torch: 'momentum_buffer' }],
  hasStep: false,
  projects: false,
  wireNames: ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov'],
  wire: (g) => Float64Array.of(g.lr, g.momentum, g.dampening, g.weightDecay, g.nesterov ? 1 : 0),
  scalars: (g, step) => ({
    ...momentumScalars(g.lr, g.momentum, g.dampening, g.weightDecay, g.nesterov),
    decay: g.weightDecay !== 0, hasMomentum: g.momentum !== 0, first: step <= 1,
  }),
  wdFactor: () => 1, // the decay is coupled: it is part of d
  math: {
    update(i0, i1, g, p, st, s, u) {
      const b = st[0];
      const { wd, mom, omd } = s;
      for (let i = i0; i < i1; i++) {
        const d = s.decay ? f(g[i] + wd * p[i]) : g[i]; // d_p = g.add(p, alpha=wd)
        if (!s.hasMomentum) {
          u[i] = d;
          continue;
        }
        const bi = (b[i] = s.first ? d : f(f(b[i] * mom) + omd * d));
        u[i] = s.nesterov ? f(d + mom * bi) : bi;
      }
    },
    stepScale: (s) => s.negLr,
  },
};
