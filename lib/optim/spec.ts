/**
 * What an optimizer is, to every TS layer: a spec. One file per optimizer under lib/optim/ holds
 * its spec (options with defaults, ranges and validation; state slots with their PyTorch names;
 * the wire order of its hyperparameters for the native engines; its per-step float32 scalars and
 * element math for the js engine), and lib/optim/registry.ts lists them. The facade, the engines,
 * checkpoints and the TF.js adapter read everything optimizer-specific from here.
 *
 * The C++ side of the same optimizer is its element policy (native/include/adamp/optim/).
 */
import { invalid } from '../errors';
import { describe } from '../core/describe';

/** One hyperparameter: how it is named, defaulted and checked. */
export interface OptionDef {
  /** The camelCase name users pass (`weightDecay`). */
  key: string;
  /** The name in PyTorch's `param_groups` (`weight_decay`). */
  torch: string;
  /** The default; absent means the option is required (SGDP's and SGD's `lr`). */
  default?: unknown;
  /** Validates a value (`where` names it in messages, e.g. `paramGroups[1].lr`) and returns it normalised. */
  check(value: unknown, where: string): unknown;
}

/** One state tensor per param, as PyTorch names it. */
export interface StateSlotDef {
  /** The camelCase key of the public state (`expAvg`). */
  key: string;
  /** PyTorch's state key (`exp_avg`). */
  torch: string;
}

/**
 * The js engine's element math of one optimizer: the TS twin of the C++ policy's `update`,
 * `stored` and `apply` (native/include/adamp/optim/policy.h). `update` and `stored` run over a
 * range of elements (a loop per optimizer keeps V8's loops monomorphic); `s` is what `scalars()`
 * returned for the tensor. The step itself is the same for every optimizer:
 * `p = f32(f32(p * wdf) + stepScale(s) * u)` (with `wdf` 1 and `stepScale` 1 where an optimizer
 * has no such factor, both exact).
 */
export interface ElementMath<Sc> {
  /** Pass 1 (or the one pass) of elements [i0, i1): updates the state in place and writes the update before projection to `u`. */
  update(i0: number, i1: number, g: Float32Array, p: Float32Array, st: readonly Float32Array[], s: Sc, u: Float32Array): void;
  /** Projecting optimizers: the update of [i0, i1) again, from the state pass 1 stored (bit-identical), into `u`. */
  stored?(i0: number, i1: number, g: Float32Array, st: readonly Float32Array[], s: Sc, u: Float32Array): void;
  /** Projecting optimizers: whether a projected update is stored into state slot 0 (SGDP without Nesterov). */
  writesBack?(s: Sc): boolean;
  /** The factor of u in the step: `-lr / bc1` (AdamP), `-lr` (SGDP, SGD), 1 (AdamW, whose u already holds it). */
  stepScale(s: Sc): number;
}

/** The projection test's hyperparameters. */
export interface DecisionParams {
  delta: number;
  wdRatio: number;
  eps: number;
}

/**
 * An optimizer. `O` is its options type, `S` its public per-param state (`stateDict().state[i]`),
 * `Sc` its per-step scalars.
 */
export interface OptimizerSpec<O extends object, S extends object, Sc = unknown> {
  /** The registry kind, as the native registry names it: `'adamp'`. */
  readonly kind: string;
  /** The class users construct: `'AdamP'`. */
  readonly name: string;
  /** Options in display order (state dicts, messages, getConfig). */
  readonly options: readonly OptionDef[];
  /** Checks across options of a resolved group (`where` prefixes messages). */
  crossCheck?(group: Required<O>, where: string): void;
  /** State slots in wire order. */
  readonly slots: readonly StateSlotDef[];
  /** Whether the public state has `step` (AdamP, AdamW: PyTorch keeps it). */
  readonly hasStep: boolean;
  /** Whether the step tests a projection (stats, decide), or is one pass. */
  readonly projects: boolean;
  /** Hyperparameter names in the C++ policy's wire order (`kinds()` must list the same). */
  readonly wireNames: readonly string[];
  /** A resolved group on the wire (booleans as 0 and 1), in `wireNames` order. */
  wire(group: Required<O>): Float64Array;
  /** The js engine's float32 constants of one tensor's step (`step`: its count after the increment). */
  scalars(group: Required<O>, step: number): Sc;
  /** The weight-decay factor of a step whose decision gave `ratio` (1 when none applies). */
  wdFactor(group: Required<O>, ratio: number): number;
  /** Projecting optimizers: the projection test's hyperparameters. */
  decisionParams?(group: Required<O>): DecisionParams;
  readonly math: ElementMath<Sc>;
}

/** Any registered spec (what engines and the facade pass around). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnySpec = OptimizerSpec<any, any, any>;

// ---------------------------------------------------------------------------------------------
// Option checks shared by the specs. `where` names the option in messages.

export function finite(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw invalid(`${where} must be a finite number, got ${describe(value)}`);
  }
  return value;
}

export function nonNegative(value: unknown, where: string): number {
  const v = finite(value, where);
  if (v < 0) throw invalid(`${where} must be >= 0, got ${v}`);
  return v;
}

export function inUnitInterval(value: unknown, where: string): number {
  const v = finite(value, where);
  if (v < 0 || v >= 1) throw invalid(`${where} must be in [0, 1), got ${v}`);
  return v;
}

export function bool(value: unknown, where: string): boolean {
  if (typeof value !== 'boolean') throw invalid(`${where} must be a boolean, got ${describe(value)}`);
  return value;
}

/** A pair `[beta1, beta2]`, each in [0, 1). */
export function betas(value: unknown, where: string): [number, number] {
  if (!Array.isArray(value) || value.length !== 2) throw invalid(`${where} must be a pair [beta1, beta2], got ${describe(value)}`);
  return [inUnitInterval(value[0], `${where}[0]`), inUnitInterval(value[1], `${where}[1]`)];
}

/** Shorthand for an option whose PyTorch name is its own. */
export function opt(key: string, check: OptionDef['check'], dflt?: unknown, torch = key): OptionDef {
  return dflt === undefined ? { key, torch, check } : { key, torch, default: dflt, check };
}
