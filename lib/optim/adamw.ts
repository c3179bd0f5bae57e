/**
 * AdamW as `torch.optim.AdamW` defines it (PyTorch 1.13, single-tensor path): a registered
 * baseline without projection. docs/numerics.md#adamw-and-sgd; the C++ policy is
 * native/include/adamp/optim/adamw.h.
 */
import { ADAM_SLOTS, adamDenom, adamMoments, adamOptions, adamScalars, type AdamScalars } from './adam-moments';
import type { OptimizerSpec } from './spec';

const f = Math.fround;

/** Hyperparameters of AdamW, as `torch.optim.AdamW`'s. */
export interface AdamWOptions {
  /** Learning rate. Default `1e-3`, finite and `>= 0`. */
  lr?: number;
  /** Coefficients of the running averages of the gradient and its square. Default `[0.9, 0.999]`, each in `[0, 1)`. */
  betas?: readonly [number, number];
  /** Added to the denominator. Default `1e-8`, `>= 0`. */
  eps?: number;
  /** Decoupled weight decay: `p *= 1 - lr * weightDecay` before every step. Default `1e-2` (PyTorch's), `>= 0`. */
  weightDecay?: number;
}

/** Per-param state of AdamW, as in `torch.optim` (`step`, `exp_avg`, `exp_avg_sq`). */
export interface AdamWParamState {
  step: number;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

export const adamwSpec: OptimizerSpec<AdamWOptions, AdamWParamState, AdamScalars> = {
  kind: 'adamw',
  name: 'AdamW',
  options: adamOptions(1e-2),
  slots: ADAM_SLOTS,
  hasStep: true,
  projects: false,
  wireNames: ['lr', 'beta1', 'beta2', 'eps', 'weightDecay'],
  wire: (g) => Float64Array.of(g.lr, g.betas[0], g.betas[1], g.eps, g.weightDecay),
  scalars: (g, step) => adamScalars(g.lr, g.betas, g.eps, step, false),
  // torch multiplies by 1 - lr * wd at every step (exactly 1 when wd is 0).
  wdFactor: (g) => f(1 - g.lr * g.weightDecay),
  math: {
    // u = f32(f32(-step_size * m) / den): addcdiv's operation order; the step adds it to the decayed p.
    update(i0, i1, g, _p, st, s, u) {
      const m = st[0], v = st[1];
      for (let i = i0; i < i1; i++) {
        const mi = adamMoments(m, v, i, g[i], s);
        u[i] = f(f(s.negStep * mi) / adamDenom(v[i], s));
      }
    },
    stepScale: () => 1,
  },
};
