/** The float32 constants of the SGD family (SGDP, SGD); the C++ twin is `MomentumScalars` in native/include/adamp/optim/sgdp.h. */
const f = Math.fround;

export interface MomentumScalars {
  mom: number;
  /** f32(1 - dampening). */
  omd: number;
  /** f32(-lr). */
  negLr: number;
  /** f32(weightDecay) of a coupled decay (SGD); 0 for SGDP. */
  wd: number;
  nesterov: boolean;
}

export function momentumScalars(lr: number, momentum: number, dampening: number, weightDecay: number, nesterov: boolean): MomentumScalars {
  return { mom: f(momentum), omd: f(1 - dampening), negLr: f(-lr), wd: f(weightDecay), nesterov };
}
