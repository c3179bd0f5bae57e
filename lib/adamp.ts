/**
 * AdamP: Adam with decoupled weight decay whose update loses its radial component on
 * scale-invariant weights (Heo et al., ICLR 2021, "AdamP: Slowing Down the Slowdown for
 * Momentum Optimizers on Scale-invariant Weights").
 */
import { invalid } from './errors';
import type { AdamPScalars } from './backends/engine';
import { Optimizer, type Algorithm } from './optimizer';
import { pick, rejectUnknown } from './options';
import { bool, describe, inUnitInterval, nonNegative } from './validate';
import type { AdamPOptions, AdamPParamState, AnyParam, OptimizerConfig, Param, ParamGroupInput } from './types';

const DEFAULTS: Required<AdamPOptions> = {
  lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: false,
};
const KEYS = ['lr', 'betas', 'eps', 'weightDecay', 'delta', 'wdRatio', 'nesterov'] as const;

const algorithm: Algorithm<AdamPOptions, AdamPParamState, AdamPScalars> = {
  kind: 'adamp',
  optionKeys: KEYS,
  resolve(options, defaults, where) {
    rejectUnknown(options, KEYS, where);
    const o = options as Record<string, unknown>;
    const d = defaults as Record<string, unknown> | null;
    const fb = DEFAULTS as unknown as Record<string, unknown>;
    const betas = pick<unknown>(o, d, fb, 'betas');
    if (!Array.isArray(betas) || betas.length !== 2) throw invalid(`${where}.betas must be a pair [beta1, beta2], got ${describe(betas)}`);
    return {
      lr: nonNegative(pick(o, d, fb, 'lr'), `${where}.lr`),
      betas: [inUnitInterval(betas[0], `${where}.betas[0]`), inUnitInterval(betas[1], `${where}.betas[1]`)],
      eps: nonNegative(pick(o, d, fb, 'eps'), `${where}.eps`),
      weightDecay: nonNegative(pick(o, d, fb, 'weightDecay'), `${where}.weightDecay`),
      delta: nonNegative(pick(o, d, fb, 'delta'), `${where}.delta`),
      wdRatio: nonNegative(pick(o, d, fb, 'wdRatio'), `${where}.wdRatio`),
      nesterov: bool(pick(o, d, fb, 'nesterov'), `${where}.nesterov`),
    };
  },
  scalars: (g) => ({
    lr: g.lr, beta1: g.betas[0], beta2: g.betas[1], eps: g.eps, weightDecay: g.weightDecay,
    delta: g.delta, wdRatio: g.wdRatio, nesterov: g.nesterov,
  }),
  newState: (n) => ({ step: 0, expAvg: new Float32Array(n), expAvgSq: new Float32Array(n) }),
  slotArrays: (s) => ({ m: s.expAvg, v: s.expAvgSq, step: s.step + 1 }),
  commit: (s) => { s.step += 1; },
  copyState: (s) => ({ step: s.step, expAvg: s.expAvg.slice(), expAvgSq: s.expAvgSq.slice() }),
  stateWith: (s, m, v) => ({ step: s.step, expAvg: m, expAvgSq: v }),
  readState(raw, numel, where) {
    if (raw === null || typeof raw !== 'object') throw invalid(`${where} must be an object { step, expAvg, expAvgSq }, got ${describe(raw)}`);
    const r = raw as Record<string, unknown>;
    if (!Number.isSafeInteger(r.step) || (r.step as number) < 0) throw invalid(`${where}.step must be a non-negative integer, got ${describe(r.step)}`);
    return { step: r.step as number, expAvg: stateArray(r.expAvg, numel, `${where}.expAvg`), expAvgSq: stateArray(r.expAvgSq, numel, `${where}.expAvgSq`) };
  },
};

export function stateArray(x: unknown, numel: number, where: string): Float32Array {
  if (!(x instanceof Float32Array) && !(ArrayBuffer.isView(x) && (x as { constructor: { name: string } }).constructor.name === 'Float32Array')) {
    throw invalid(`${where} must be a Float32Array, got ${describe(x)}`);
  }
  const a = x as Float32Array;
  if (a.length !== numel) throw invalid(`${where} has length ${a.length}, the param has ${numel} elements`);
  return new Float32Array(a);
}

/**
 * The AdamP optimizer.
 *
 * ```ts
 * const opt = new AdamP(params, { lr: 1e-3, weightDecay: 1e-2 });
 * opt.step();
 * ```
 */
export class AdamP<P extends AnyParam = Param> extends Optimizer<AdamPOptions, AdamPParamState, AdamPScalars, P> {
  /**
   * @param params the params to optimize, or param groups `{ params, ...overrides }`.
   * @param options hyperparameters (defaults: lr 1e-3, betas [0.9, 0.999], eps 1e-8, weightDecay 0, delta 0.1, wdRatio 0.1, nesterov false).
   * @param config backend selection (`{ backend: 'auto' | 'js' | 'native' | 'cuda', threads }`).
   */
  constructor(params: readonly P[], options?: AdamPOptions, config?: OptimizerConfig);
  constructor(params: readonly ParamGroupInput<AdamPOptions, P>[], options?: AdamPOptions, config?: OptimizerConfig);
  constructor(params: readonly P[] | readonly ParamGroupInput<AdamPOptions, P>[], options: AdamPOptions = {}, config?: OptimizerConfig) {
    super(algorithm, params, options, config);
  }
}
