/**
 * LambdaLR, StepLR, MultiStepLR, ExponentialLR, LinearLR and CosineAnnealingLR with
 * `torch.optim.lr_scheduler`'s semantics (PyTorch 1.13), operation for operation: the chainable
 * ones (all but LambdaLR) multiply each group's current lr, as PyTorch does, so their values
 * are PyTorch's to the last bit or two (JS `Math.cos` and `**` are not glibc's), not the closed
 * forms'.
 */
import { invalid } from '../errors';
import { describe } from '../core/describe';
import { isPlainObject } from '../optim/options';
import {
  BaseScheduler, checkOptions, finiteNumber, groupsOf, integerAtLeast, nonNegativeNumber, positiveNumber,
  type SchedulableGroup, type SchedulableOptimizer, type SchedulerStateDict, type StateField, type StepValues,
} from './base';

const lrsOf = (groups: SchedulableGroup[]) => groups.map((g) => g.lr);

// ---------------------------------------------------------------------------------------------

/** A factor of the initial lr as a function of the epoch (`lastEpoch`, an integer >= 0). */
export type LrLambda = (epoch: number) => number;

export interface LambdaLROptions {
  /** One function for every group, or one per group. */
  lrLambda: LrLambda | readonly LrLambda[];
  /** The index of the last epoch; -1 (default) starts a new schedule. */
  lastEpoch?: number;
}

/**
 * Sets each group's lr to its initial lr times `lrLambda(epoch)` (PyTorch `LambdaLR`).
 *
 * Its state dict does not hold the functions (PyTorch saves only callable objects' attributes;
 * here, a function's own enumerable properties, if it has any): pass the same `lrLambda` to the
 * scheduler you load the state into.
 */
export class LambdaLR extends BaseScheduler {
  readonly lrLambdas: readonly LrLambda[];

  constructor(optimizer: SchedulableOptimizer, options: LambdaLROptions) {
    super(optimizer, (options as { lastEpoch?: unknown } | undefined)?.lastEpoch, 'LambdaLR');
    const o = checkOptions(options, ['lrLambda', 'lastEpoch'], this.who);
    const n = groupsOf(optimizer, this.who).length;
    const fn = o.lrLambda;
    if (Array.isArray(fn)) {
      if (fn.length !== n) throw invalid(`LambdaLR: options.lrLambda has ${fn.length} functions, the optimizer has ${n} param groups (PyTorch: "Expected ${n} lr_lambdas, but got ${fn.length}")`);
      fn.forEach((f, i) => {
        if (typeof f !== 'function') throw invalid(`LambdaLR: options.lrLambda[${i}] must be a function (epoch) => factor, got ${describe(f)}`);
      });
      this.lrLambdas = fn.slice();
    } else {
      if (typeof fn !== 'function') throw invalid(`LambdaLR: options.lrLambda must be a function (epoch) => factor, or one per group, got ${describe(fn)}`);
      this.lrLambdas = new Array<LrLambda>(n).fill(fn as LrLambda);
    }
    this.start();
  }

  protected compute(epoch: number): StepValues {
    return {
      lrs: this.lrLambdas.map((f, i) => {
        const factor = f(epoch);
        if (typeof factor !== 'number') throw invalid(`LambdaLR: lrLambda${this.lrLambdas.length > 1 ? `[${i}]` : ''}(${epoch}) returned ${describe(factor)}, not a number`);
        return this._baseLrs[i] * factor;
      }),
    };
  }

  protected ownStateFields(): StateField[] {
    const n = this.lrLambdas.length;
    return [{
      key: 'lrLambdas', torch: 'lr_lambdas',
      read: (v, where) => {
        if (!Array.isArray(v) || v.length !== n) throw invalid(`${where} must be an array of ${n} entries (null, or a function's saved properties), got ${describe(v)}`);
        return v.map((x, i) => {
          if (x !== null && !isPlainObject(x)) throw invalid(`${where}[${i}] must be null or an object of properties, got ${describe(x)}`);
          return x;
        });
      },
    }];
  }

  protected ownState(): SchedulerStateDict {
    return {
      lrLambdas: this.lrLambdas.map((f) => (Object.keys(f).length > 0 ? JSON.parse(JSON.stringify({ ...f })) : null)),
    };
  }

  protected applyOwnState(values: Record<string, unknown>): void {
    (values.lrLambdas as Array<Record<string, unknown> | null>).forEach((props, i) => {
      if (props !== null) Object.assign(this.lrLambdas[i], props);
    });
  }
}

// ---------------------------------------------------------------------------------------------

export interface StepLROptions {
  /** Decay every `stepSize` epochs (an integer >= 1). */
  stepSize: number;
  /** The decay factor. Default `0.1`. */
  gamma?: number;
  lastEpoch?: number;
}

/** Multiplies each group's lr by `gamma` every `stepSize` epochs (PyTorch `StepLR`). */
export class StepLR extends BaseScheduler {
  readonly stepSize!: number;
  readonly gamma!: number;

  constructor(optimizer: SchedulableOptimizer, options: StepLROptions) {
    super(optimizer, (options as { lastEpoch?: unknown } | undefined)?.lastEpoch, 'StepLR');
    const o = checkOptions(options, ['stepSize', 'gamma', 'lastEpoch'], this.who);
    Object.assign(this, {
      stepSize: integerAtLeast(o.stepSize, 1, 'StepLR: options.stepSize'),
      gamma: positiveNumber(o.gamma ?? 0.1, 'StepLR: options.gamma'),
    });
    this.start();
  }

  protected compute(epoch: number, _stepCount: number, groups: SchedulableGroup[]): StepValues {
    if (epoch === 0 || epoch % this.stepSize !== 0) return { lrs: lrsOf(groups) };
    return { lrs: groups.map((g) => g.lr * this.gamma) };
  }

  protected override closedForm(epoch: number): StepValues {
    return { lrs: this._baseLrs.map((b) => b * this.gamma ** Math.floor(epoch / this.stepSize)) };
  }

  protected ownStateFields(): StateField[] {
    return [
      { key: 'stepSize', torch: 'step_size', read: (v, w) => integerAtLeast(v, 1, w) },
      { key: 'gamma', torch: 'gamma', read: positiveNumber },
    ];
  }

  protected ownState(): SchedulerStateDict {
    return { stepSize: this.stepSize, gamma: this.gamma };
  }

  protected applyOwnState(values: Record<string, unknown>): void {
    Object.assign(this, { stepSize: values.stepSize, gamma: values.gamma });
  }
}

// ---------------------------------------------------------------------------------------------

export interface MultiStepLROptions {
  /** The epochs at which to decay (integers >= 0); a milestone listed k times decays by `gamma ** k` there. */
  milestones: readonly number[];
  /** The decay factor. Default `0.1`. */
  gamma?: number;
  lastEpoch?: number;
}

function readMilestones(v: unknown, where: string): number[] {
  // PyTorch's state dict holds a collections.Counter: { "10": 2, "30": 1 } as JSON.
  if (isPlainObject(v)) {
    const out: number[] = [];
    for (const [k, count] of Object.entries(v)) {
      const m = Number(k);
      if (!/^\d+$/.test(k) || !Number.isSafeInteger(m)) throw invalid(`${where} has key ${JSON.stringify(k)}, which is not an epoch (an integer >= 0)`);
      integerAtLeast(count, 1, `${where}[${JSON.stringify(k)}]`);
      for (let c = 0; c < (count as number); c++) out.push(m);
    }
    return out.sort((a, b) => a - b);
  }
  if (!Array.isArray(v)) throw invalid(`${where} must be an array of epochs (integers >= 0), got ${describe(v)}`);
  return v.map((m, i) => integerAtLeast(m, 0, `${where}[${i}]`)).sort((a, b) => a - b);
}

/**
 * Multiplies each group's lr by `gamma` at each milestone (PyTorch `MultiStepLR`). The milestones
 * are a multiset, as PyTorch's `Counter`: their order does not matter and a repeated milestone
 * decays by `gamma` to the power of its count.
 */
export class MultiStepLR extends BaseScheduler {
  /** The milestones, sorted, repeats kept. */
  readonly milestones!: readonly number[];
  readonly gamma!: number;

  constructor(optimizer: SchedulableOptimizer, options: MultiStepLROptions) {
    super(optimizer, (options as { lastEpoch?: unknown } | undefined)?.lastEpoch, 'MultiStepLR');
    const o = checkOptions(options, ['milestones', 'gamma', 'lastEpoch'], this.who);
    if (!Array.isArray(o.milestones)) throw invalid(`MultiStepLR: options.milestones must be an array of epochs (integers >= 0), got ${describe(o.milestones)}`);
    Object.assign(this, {
      milestones: readMilestones(o.milestones, 'MultiStepLR: options.milestones'),
      gamma: positiveNumber(o.gamma ?? 0.1, 'MultiStepLR: options.gamma'),
    });
    this.start();
  }

  protected compute(epoch: number, _stepCount: number, groups: SchedulableGroup[]): StepValues {
    const count = this.milestones.filter((m) => m === epoch).length;
    if (count === 0) return { lrs: lrsOf(groups) };
    return { lrs: groups.map((g) => g.lr * this.gamma ** count) };
  }

  protected override closedForm(epoch: number): StepValues {
    const passed = this.milestones.filter((m) => m <= epoch).length; // bisect_right
    return { lrs: this._baseLrs.map((b) => b * this.gamma ** passed) };
  }

  protected ownStateFields(): StateField[] {
    return [
      { key: 'milestones', torch: 'milestones', read: readMilestones },
      { key: 'gamma', torch: 'gamma', read: positiveNumber },
    ];
  }

  protected ownState(): SchedulerStateDict {
    return { milestones: this.milestones.slice(), gamma: this.gamma };
  }

  protected applyOwnState(values: Record<string, unknown>): void {
    Object.assign(this, { milestones: values.milestones, gamma: values.gamma });
  }
}

// ---------------------------------------------------------------------------------------------

export interface ExponentialLROptions {
  /** The factor applied at every epoch. */
  gamma: number;
  lastEpoch?: number;
}

/** Multiplies each group's lr by `gamma` at every epoch (PyTorch `ExponentialLR`). */
export class ExponentialLR extends BaseScheduler {
  readonly gamma!: number;

  constructor(optimizer: SchedulableOptimizer, options: ExponentialLROptions) {
    super(optimizer, (options as { lastEpoch?: unknown } | undefined)?.lastEpoch, 'ExponentialLR');
    const o = checkOptions(options, ['gamma', 'lastEpoch'], this.who);
    Object.assign(this, { gamma: positiveNumber(o.gamma, 'ExponentialLR: options.gamma') });
    this.start();
  }

  protected compute(epoch: number, _stepCount: number, groups: SchedulableGroup[]): StepValues {
    if (epoch === 0) return { lrs: lrsOf(groups) };
    return { lrs: groups.map((g) => g.lr * this.gamma) };
  }

  protected override closedForm(epoch: number): StepValues {
    return { lrs: this._baseLrs.map((b) => b * this.gamma ** epoch) };
  }

  protected ownStateFields(): StateField[] {
    return [{ key: 'gamma', torch: 'gamma', read: positiveNumber }];
  }

  protected ownState(): SchedulerStateDict {
    return { gamma: this.gamma };
  }

  protected applyOwnState(values: Record<string, unknown>): void {
    Object.assign(this, { gamma: values.gamma });
  }
}

// ---------------------------------------------------------------------------------------------

export interface LinearLROptions {
  /** The factor of the lr at epoch 0, in (0, 1]. Default `1/3`. */
  startFactor?: number;
  /** The factor reached at `totalIters`, in [0, 1]. Default `1`. */
  endFactor?: number;
  /** The epochs over which the factor goes from `startFactor` to `endFactor` (an integer >= 1). Default `5`. */
  totalIters?: number;
  lastEpoch?: number;
}

function startFactor(v: unknown, where: string): number {
  const x = finiteNumber(v, where);
  if (!(x > 0 && x <= 1)) throw invalid(`${where} must be in (0, 1], got ${x} (PyTorch: "Starting multiplicative factor expected to be greater than 0 and less or equal to 1")`);
  return x;
}

function endFactor(v: unknown, where: string): number {
  const x = finiteNumber(v, where);
  if (!(x >= 0 && x <= 1)) throw invalid(`${where} must be in [0, 1], got ${x} (PyTorch: "Ending multiplicative factor expected to be between 0 and 1")`);
  return x;
}

/**
 * Scales each group's lr by a factor going linearly from `startFactor` to `endFactor` over
 * `totalIters` epochs, then keeps it (PyTorch `LinearLR`; a warm-up with the defaults).
 */
export class LinearLR extends BaseScheduler {
  readonly startFactor!: number;
  readonly endFactor!: number;
  readonly totalIters!: number;

  constructor(optimizer: SchedulableOptimizer, options: LinearLROptions = {}) {
    super(optimizer, (options as { lastEpoch?: unknown } | undefined)?.lastEpoch, 'LinearLR');
    const o = checkOptions(options, ['startFactor', 'endFactor', 'totalIters', 'lastEpoch'], this.who);
    Object.assign(this, {
      startFactor: startFactor(o.startFactor ?? 1.0 / 3, 'LinearLR: options.startFactor'),
      endFactor: endFactor(o.endFactor ?? 1.0, 'LinearLR: options.endFactor'),
      totalIters: integerAtLeast(o.totalIters ?? 5, 1, 'LinearLR: options.totalIters'),
    });
    this.start();
  }

  protected compute(epoch: number, _stepCount: number, groups: SchedulableGroup[]): StepValues {
    const { startFactor: s, endFactor: e, totalIters: t } = this;
    if (epoch === 0) return { lrs: groups.map((g) => g.lr * s) };
    if (epoch > t) return { lrs: lrsOf(groups) };
    return { lrs: groups.map((g) => g.lr * (1 + (e - s) / (t * s + (epoch - 1) * (e - s)))) };
  }

  protected override closedForm(epoch: number): StepValues {
    const { startFactor: s, endFactor: e, totalIters: t } = this;
    return { lrs: this._baseLrs.map((b) => b * (s + ((e - s) * Math.min(t, epoch)) / t)) };
  }

  protected ownStateFields(): StateField[] {
    return [
      { key: 'startFactor', torch: 'start_factor', read: startFactor },
      { key: 'endFactor', torch: 'end_factor', read: endFactor },
      { key: 'totalIters', torch: 'total_iters', read: (v, w) => integerAtLeast(v, 1, w) },
    ];
  }

  protected ownState(): SchedulerStateDict {
    return { startFactor: this.startFactor, endFactor: this.endFactor, totalIters: this.totalIters };
  }

  protected applyOwnState(values: Record<string, unknown>): void {
    Object.assign(this, { startFactor: values.startFactor, endFactor: values.endFactor, totalIters: values.totalIters });
  }
}

// ---------------------------------------------------------------------------------------------

export interface CosineAnnealingLROptions {
  /** Half the period of the cosine, in epochs (an integer >= 1): the lr reaches `etaMin` at `tMax`. */
  tMax: number;
  /** The lowest lr (>= 0). Default `0`. */
  etaMin?: number;
  lastEpoch?: number;
}

/**
 * Anneals each group's lr from its initial lr to `etaMin` along a cosine over `tMax` epochs
 * (PyTorch `CosineAnnealingLR`, without restarts). As in PyTorch, stepping past `tMax` does not
 * hold the lr at `etaMin`: it climbs back along the cosine (period `2 * tMax`).
 */
export class CosineAnnealingLR extends BaseScheduler {
  readonly tMax!: number;
  readonly etaMin!: number;

  constructor(optimizer: SchedulableOptimizer, options: CosineAnnealingLROptions) {
    super(optimizer, (options as { lastEpoch?: unknown } | undefined)?.lastEpoch, 'CosineAnnealingLR');
    const o = checkOptions(options, ['tMax', 'etaMin', 'lastEpoch'], this.who);
    Object.assign(this, {
      tMax: integerAtLeast(o.tMax, 1, 'CosineAnnealingLR: options.tMax'),
      etaMin: nonNegativeNumber(o.etaMin ?? 0, 'CosineAnnealingLR: options.etaMin'),
    });
    this.start();
  }

  protected compute(epoch: number, stepCount: number, groups: SchedulableGroup[]): StepValues {
    const { tMax: T, etaMin: eta } = this;
    if (epoch === 0) return { lrs: lrsOf(groups) };
    if (stepCount === 1 && epoch > 0) {
      return { lrs: this._baseLrs.map((b) => eta + ((b - eta) * (1 + Math.cos((epoch * Math.PI) / T))) / 2) };
    }
    if ((epoch - 1 - T) % (2 * T) === 0) {
      return { lrs: groups.map((g, i) => g.lr + ((this._baseLrs[i] - eta) * (1 - Math.cos(Math.PI / T))) / 2) };
    }
    return {
      lrs: groups.map((g) => ((1 + Math.cos((Math.PI * epoch) / T)) / (1 + Math.cos((Math.PI * (epoch - 1)) / T))) * (g.lr - eta) + eta),
    };
  }

  protected override closedForm(epoch: number): StepValues {
    const { tMax: T, etaMin: eta } = this;
    return { lrs: this._baseLrs.map((b) => eta + ((b - eta) * (1 + Math.cos((Math.PI * epoch) / T))) / 2) };
  }

  protected ownStateFields(): StateField[] {
    return [
      { key: 'tMax', torch: 'T_max', read: (v, w) => integerAtLeast(v, 1, w) },
      { key: 'etaMin', torch: 'eta_min', read: nonNegativeNumber },
    ];
  }

  protected ownState(): SchedulerStateDict {
    return { tMax: this.tMax, etaMin: this.etaMin };
  }

  protected applyOwnState(values: Record<string, unknown>): void {
    Object.assign(this, { tMax: values.tMax, etaMin: values.etaMin });
  }
}
