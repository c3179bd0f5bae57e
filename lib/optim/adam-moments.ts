/**
 * The float32 constants of an Adam-family step, shared by the AdamP and AdamW specs
 * (docs/numerics.md#adamp; the C++ twin is native/include/adamp/optim/adam_moments.h). The specs'
 * loops divide by `sqrt(bc2)` as a multiplication by its double reciprocal, then rounding: the same
 * float32 result (the double error is far below float32's rounding boundaries).
 */
import { betas, nonNegative, opt, type OptionDef, type StateSlotDef } from './spec';

const f = Math.fround;

/** The options AdamP and AdamW share, in this order (torch.optim.AdamW's, with PyTorch's names); only weight decay's default differs. */
export function adamOptions(weightDecayDefault: number): OptionDef[] {
  return [
    opt('lr', nonNegative, 1e-3),
    opt('betas', betas, [0.9, 0.999]),
    opt('eps', nonNegative, 1e-8),
    opt('weightDecay', nonNegative, weightDecayDefault, 'weight_decay'),
  ];
}

/** The state slots of the Adam family, with PyTorch's names. */
export const ADAM_SLOTS: readonly StateSlotDef[] = [{ key: 'expAvg', torch: 'exp_avg' }, { key: 'expAvgSq', torch: 'exp_avg_sq' }];

/** Both moments of element i updated in place; returns the new m (`m*b1 + (1-b1)*g`, `v*b2 + ((1-b2)*g)*g`). */
export function adamMoments(m: Float32Array, v: Float32Array, i: number, gi: number, s: AdamScalars): number {
  v[i] = f(f(v[i] * s.b2) + f(s.omb2 * gi) * gi);
  return (m[i] = f(f(m[i] * s.b1) + s.omb1 * gi));
}

/** The denominator `f32(f32(sqrt(v)) / sqrt(bc2)) + eps` of one element. */
export function adamDenom(vi: number, s: AdamScalars): number {
  return f(f(f(Math.sqrt(vi)) * s.rSqrtBc2) + s.eps);
}

/** The float32 constants of one Adam-family tensor step. */
export interface AdamScalars {
  b1: number;
  omb1: number;
  b2: number;
  omb2: number;
  /** 1 / f32(sqrt(1 - beta2^step)), a double. */
  rSqrtBc2: number;
  eps: number;
  /** f32(-(lr / (1 - beta1^step))). */
  negStep: number;
  nesterov: boolean;
}

/** Scalars are doubles until they meet a tensor (docs/numerics.md#conventions). */
export function adamScalars(lr: number, betas: readonly [number, number], eps: number, step: number, nesterov: boolean): AdamScalars {
  const [beta1, beta2] = betas;
  return {
    b1: f(beta1), omb1: f(1 - beta1), b2: f(beta2), omb2: f(1 - beta2),
    rSqrtBc2: 1 / f(Math.sqrt(1 - Math.pow(beta2, step))),
    eps: f(eps),
    negStep: f(-(lr / (1 - Math.pow(beta1, step)))),
    nesterov,
  };
}
