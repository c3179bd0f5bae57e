/** The float32 constants of the SGD family (SGDP, SGD); the C++ twin is `MomentumScalars` in native/include/adamp/optim/sgdp.h. */
import { bool, finite, nonNegative, opt, type OptionDef } from './spec';

const f = Math.fround;

/** The options SGDP and SGD share, in this order (torch.optim.SGD's, with PyTorch's names). */
export const MOMENTUM_OPTIONS: readonly OptionDef[] = [
  opt('lr', nonNegative),
  opt('momentum', nonNegative, 0),
  opt('dampening', finite, 0),
  opt('weightDecay', nonNegative, 0, 'weight_decay'),
  opt('nesterov', bool, false),
];

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
