/**
 * The float32 constants of an Adam-family step, shared by the AdamP and AdamW specs
 * (docs/numerics.md#adamp; the C++ twin is native/include/adamp/optim/adam_moments.h). The specs'
 * loops divide by `sqrt(bc2)` as a multiplication by its double reciprocal, then rounding: the same
 * float32 result (the double error is far below float32's rounding boundaries).
 */
const f = Math.fround;

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
