/**
 * Every optimizer the package has, one line each: its spec in `SPECS` (what checkpoints, the
 * TF.js adapter and the tests iterate over) and its public class. The native registry
 * (native/include/adamp/optim/registry.h) lists the same kinds; test/registry.test.ts checks
 * that the two agree.
 */
import { Optimizer } from '../optimizer';
import type { AnyParam, OptimizerConfig, Param, ParamGroupInput } from '../types';
import type { AnySpec, OptimizerSpec } from './spec';
import { adampSpec, type AdamPOptions, type AdamPParamState } from './adamp';
import { sgdpSpec, type SGDPOptions, type SGDPParamState } from './sgdp';
import { adamwSpec, type AdamWOptions, type AdamWParamState } from './adamw';
import { sgdSpec, type SGDOptions, type SGDParamState } from './sgd';

/** The specs, by kind. */
export const SPECS: readonly AnySpec[] = [adampSpec, sgdpSpec, adamwSpec, sgdSpec];

/** The spec of a kind (`'adamp'`) or class name (`'AdamP'`), or undefined. */
export function specOf(kindOrName: string): AnySpec | undefined {
  return SPECS.find((s) => s.kind === kindOrName || s.name === kindOrName);
}

type RequiredKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? never : K }[keyof T];
/** `(params, options?, config?)`, or `(params, options, config?)` when an option is required (SGDP's and SGD's `lr`). */
type CtorArgs<O> = [RequiredKeys<O>] extends [never] ? [options?: O, config?: OptimizerConfig] : [options: O, config?: OptimizerConfig];

/** The class of a registered optimizer: `new AdamW(params, { lr: 1e-3 })`. */
export interface OptimizerClass<O extends object, S extends object> {
  /** @param params the params to optimize; `options` its hyperparameters; `config` the backend (`{ backend, threads, diagnostics }`). */
  new <P extends AnyParam = Param>(params: readonly P[], ...args: CtorArgs<O>): Optimizer<O, S, P>;
  /** @param params param groups `{ params, ...overrides }`; `options` the defaults of every group; `config` the backend. */
  new <P extends AnyParam = Param>(params: readonly ParamGroupInput<O, P>[], ...args: CtorArgs<O>): Optimizer<O, S, P>;
  readonly spec: OptimizerSpec<O, S>;
}

/** A public class for a spec. */
function optimizerClass<O extends object, S extends object>(spec: OptimizerSpec<O, S>): OptimizerClass<O, S> {
  const cls = class extends Optimizer<O, S, AnyParam> {
    static readonly spec = spec;
    constructor(params: readonly AnyParam[] | readonly ParamGroupInput<O, AnyParam>[], options?: O, config?: OptimizerConfig) {
      super(spec, params, options, config);
    }
  };
  Object.defineProperty(cls, 'name', { value: spec.name });
  return cls as unknown as OptimizerClass<O, S>;
}

/**
 * AdamP (Heo et al., ICLR 2021): Adam whose update loses its radial component on
 * scale-invariant weights. Defaults: lr 1e-3, betas [0.9, 0.999], eps 1e-8, weightDecay 0,
 * delta 0.1, wdRatio 0.1, nesterov false.
 *
 * ```ts
 * const opt = new AdamP(params, { lr: 1e-3, weightDecay: 1e-2 });
 * opt.step();
 * ```
 */
export const AdamP = optimizerClass(adampSpec);
export type AdamP<P extends AnyParam = Param> = Optimizer<AdamPOptions, AdamPParamState, P>;

/**
 * SGDP (Heo et al., ICLR 2021): SGD with momentum whose update loses its radial component on
 * scale-invariant weights. `lr` is required; defaults: momentum 0, dampening 0, weightDecay 0,
 * nesterov false, eps 1e-8, delta 0.1, wdRatio 0.1.
 *
 * ```ts
 * const opt = new SGDP(params, { lr: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: true });
 * ```
 */
export const SGDP = optimizerClass(sgdpSpec);
export type SGDP<P extends AnyParam = Param> = Optimizer<SGDPOptions, SGDPParamState, P>;

/** AdamW with `torch.optim.AdamW`'s semantics and defaults (lr 1e-3, betas [0.9, 0.999], eps 1e-8, weightDecay 1e-2). */
export const AdamW = optimizerClass(adamwSpec);
export type AdamW<P extends AnyParam = Param> = Optimizer<AdamWOptions, AdamWParamState, P>;

/** SGD with `torch.optim.SGD`'s semantics: `lr` required; momentum 0, dampening 0, weightDecay 0 (L2, added to the gradient), nesterov false. */
export const SGD = optimizerClass(sgdSpec);
export type SGD<P extends AnyParam = Param> = Optimizer<SGDOptions, SGDParamState, P>;

const CLASSES: readonly OptimizerClass<object, object>[] = [
  AdamP as unknown as OptimizerClass<object, object>,
  SGDP as unknown as OptimizerClass<object, object>,
  AdamW as unknown as OptimizerClass<object, object>,
  SGD as unknown as OptimizerClass<object, object>,
];

/** The public class of a registered spec. */
export function classOf(spec: AnySpec): OptimizerClass<object, object> {
  const cls = CLASSES.find((c) => c.spec === spec);
  if (cls === undefined) throw new Error(`${spec.name} is not in the registry`);
  return cls;
}
