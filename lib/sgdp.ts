/**
 * SGDP: SGD with momentum whose update loses its radial component on scale-invariant weights
 * (Heo et al., ICLR 2021).
 */
import { invalid } from './errors';
import type { SGDPScalars } from './backends/engine';
import { Optimizer, type Algorithm } from './optimizer';
import { pick, rejectUnknown } from './options';
import { stateArray } from './adamp';
import { bool, describe, finite, nonNegative } from './validate';
import type { AnyParam, OptimizerConfig, Param, ParamGroupInput, SGDPOptions, SGDPParamState } from './types';

const DEFAULTS: Omit<Required<SGDPOptions>, 'lr'> = {
  momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, eps: 1e-8, delta: 0.1, wdRatio: 0.1,
};
const NO_SECOND_MOMENT = new Float32Array(0);
const KEYS = ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov', 'eps', 'delta', 'wdRatio'] as const;

const algorithm: Algorithm<SGDPOptions, SGDPParamState, SGDPScalars> = {
  kind: 'sgdp',
  optionKeys: KEYS,
  resolve(options, defaults, where) {
    rejectUnknown(options, KEYS, where);
    const o = options as Record<string, unknown>;
    const d = defaults as Record<string, unknown> | null;
    const fb = DEFAULTS as unknown as Record<string, unknown>;
    const lr = pick<unknown>(o, d, fb, 'lr');
    if (lr === undefined) throw invalid(`${where}.lr is required for SGDP (it has no default, as in the official code)`);
    const g: Required<SGDPOptions> = {
      lr: nonNegative(lr, `${where}.lr`),
      momentum: nonNegative(pick(o, d, fb, 'momentum'), `${where}.momentum`),
      dampening: finite(pick(o, d, fb, 'dampening'), `${where}.dampening`),
      weightDecay: nonNegative(pick(o, d, fb, 'weightDecay'), `${where}.weightDecay`),
      nesterov: bool(pick(o, d, fb, 'nesterov'), `${where}.nesterov`),
      eps: nonNegative(pick(o, d, fb, 'eps'), `${where}.eps`),
      delta: nonNegative(pick(o, d, fb, 'delta'), `${where}.delta`),
      wdRatio: nonNegative(pick(o, d, fb, 'wdRatio'), `${where}.wdRatio`),
    };
    if (g.weightDecay > 0 && g.momentum >= 1) {
      throw invalid(`${where}.momentum must be < 1 when weightDecay > 0 (SGDP divides the decay by 1 - momentum), got momentum ${g.momentum}`);
    }
    return g;
  },
  scalars: (g) => ({ ...g }),
  newState: (n) => ({ momentum: new Float32Array(n) }),
  slotArrays: (s) => ({ m: s.momentum, v: NO_SECOND_MOMENT, step: 0 }),
  commit: () => {},
  copyState: (s) => ({ momentum: s.momentum.slice() }),
  stateWith: (_s, m) => ({ momentum: m }),
  readState(raw, numel, where) {
    if (raw === null || typeof raw !== 'object') throw invalid(`${where} must be an object { momentum }, got ${describe(raw)}`);
    return { momentum: stateArray((raw as Record<string, unknown>).momentum, numel, `${where}.momentum`) };
  },
};

/**
 * The SGDP optimizer. `lr` is required.
 *
 * ```ts
 * const opt = new SGDP(params, { lr: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: true });
 * opt.step();
 * ```
 */
export class SGDP<P extends AnyParam = Param> extends Optimizer<SGDPOptions, SGDPParamState, SGDPScalars, P> {
  /**
   * @param params the params to optimize, or param groups `{ params, ...overrides }`.
   * @param options hyperparameters; `lr` is required (defaults: momentum 0, dampening 0, weightDecay 0, nesterov false, eps 1e-8, delta 0.1, wdRatio 0.1).
   * @param config backend selection (`{ backend: 'auto' | 'js' | 'native' | 'cuda', threads }`).
   */
  constructor(params: readonly P[], options: SGDPOptions, config?: OptimizerConfig);
  constructor(params: readonly ParamGroupInput<SGDPOptions, P>[], options: SGDPOptions, config?: OptimizerConfig);
  constructor(params: readonly P[] | readonly ParamGroupInput<SGDPOptions, P>[], options: SGDPOptions, config?: OptimizerConfig) {
    super(algorithm, params, options ?? ({} as SGDPOptions), config);
  }
}
