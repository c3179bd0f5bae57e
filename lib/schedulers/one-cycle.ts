/**
 * OneCycleLR with `torch.optim.lr_scheduler.OneCycleLR`'s semantics (PyTorch 1.13).
 */
import { invalid } from '../errors';
import { describe } from '../core/describe';
import { isPlainObject } from '../optim/options';
import {
  BaseScheduler, booleanValue, checkOptions, finiteNumber, groupsOf, integerAtLeast, perGroup, positiveNumber,
  type GroupValueKey, type SchedulableGroup, type SchedulableOptimizer, type SchedulerStateDict, type StateField, type StepValues,
} from './base';

export interface OneCycleLROptions {
  /** The peak lr: one number, or one per group. */
  maxLr: number | readonly number[];
  /** The number of steps in the cycle (an integer >= 1); or give `epochs` and `stepsPerEpoch`. */
  totalSteps?: number;
  /** With `stepsPerEpoch`, instead of `totalSteps`: `totalSteps = epochs * stepsPerEpoch`. */
  epochs?: number;
  stepsPerEpoch?: number;
  /** The fraction of the cycle spent raising the lr, in [0, 1]. Default `0.3`. */
  pctStart?: number;
  /** How the lr and momentum move within a phase. Default `'cos'`. */
  annealStrategy?: 'cos' | 'linear';
  /**
   * Cycle the momentum inversely to the lr, between `maxMomentum` and `baseMomentum`: SGD's and
   * SGDP's `momentum`, AdamW's and AdamP's `betas[0]` (`betas[1]` is kept). Default `true`.
   */
  cycleMomentum?: boolean;
  /** The lowest momentum (at the peak lr): one number, or one per group. Default `0.85`. */
  baseMomentum?: number | readonly number[];
  /** The highest momentum (at the start and the end): one number, or one per group. Default `0.95`. */
  maxMomentum?: number | readonly number[];
  /** The initial lr is `maxLr / divFactor`. Default `25`. */
  divFactor?: number;
  /** The final lr is `initial lr / finalDivFactor`. Default `1e4`. */
  finalDivFactor?: number;
  /** Three phases (up, down to the initial lr, down to the final lr) instead of two. Default `false`. */
  threePhase?: boolean;
  /** The index of the last step; -1 (default) starts a new cycle (then the groups' values are set). */
  lastEpoch?: number;
}

/** One phase of the cycle: where it ends, and which group values it anneals between. */
export interface OneCyclePhase {
  endStep: number;
  startLr: GroupValueKey;
  endLr: GroupValueKey;
  startMomentum: GroupValueKey;
  endMomentum: GroupValueKey;
}

const TORCH_VALUE: Record<GroupValueKey, string> = {
  initialLr: 'initial_lr', maxLr: 'max_lr', minLr: 'min_lr', maxMomentum: 'max_momentum', baseMomentum: 'base_momentum',
};
const LR_KEYS: readonly GroupValueKey[] = ['initialLr', 'maxLr', 'minLr'];
const MOMENTUM_KEYS: readonly GroupValueKey[] = ['maxMomentum', 'baseMomentum'];
const PHASE_KEYS = [
  ['endStep', 'end_step'], ['startLr', 'start_lr'], ['endLr', 'end_lr'], ['startMomentum', 'start_momentum'], ['endMomentum', 'end_momentum'],
] as const;

function phasesFor(totalSteps: number, pctStart: number, threePhase: boolean): OneCyclePhase[] {
  if (threePhase) {
    return [
      { endStep: pctStart * totalSteps - 1, startLr: 'initialLr', endLr: 'maxLr', startMomentum: 'maxMomentum', endMomentum: 'baseMomentum' },
      { endStep: 2 * pctStart * totalSteps - 2, startLr: 'maxLr', endLr: 'initialLr', startMomentum: 'baseMomentum', endMomentum: 'maxMomentum' },
      { endStep: totalSteps - 1, startLr: 'initialLr', endLr: 'minLr', startMomentum: 'maxMomentum', endMomentum: 'maxMomentum' },
    ];
  }
  return [
    { endStep: pctStart * totalSteps - 1, startLr: 'initialLr', endLr: 'maxLr', startMomentum: 'maxMomentum', endMomentum: 'baseMomentum' },
    { endStep: totalSteps - 1, startLr: 'maxLr', endLr: 'minLr', startMomentum: 'baseMomentum', endMomentum: 'maxMomentum' },
  ];
}

function annealCos(start: number, end: number, pct: number): number {
  const cosOut = Math.cos(Math.PI * pct) + 1;
  return end + ((start - end) / 2.0) * cosOut;
}

function annealLinear(start: number, end: number, pct: number): number {
  return (end - start) * pct + start;
}

function groupKey(v: unknown, keys: readonly GroupValueKey[], where: string): GroupValueKey {
  const k = keys.find((x) => x === v || TORCH_VALUE[x] === v);
  if (k === undefined) throw invalid(`${where} must be one of ${keys.map((x) => `'${x}'`).join(', ')}, got ${describe(v)}`);
  return k;
}

function readPhases(v: unknown, where: string): OneCyclePhase[] {
  if (!Array.isArray(v) || (v.length !== 2 && v.length !== 3)) throw invalid(`${where} must be an array of 2 or 3 phases, got ${describe(v)}`);
  return v.map((p, i) => {
    const w = `${where}[${i}]`;
    if (!isPlainObject(p)) throw invalid(`${w} must be an object { endStep, startLr, endLr, startMomentum, endMomentum }, got ${describe(p)}`);
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(p)) {
      const pair = PHASE_KEYS.find(([a, b]) => a === k || b === k);
      if (pair === undefined) throw invalid(`${w}.${k} is not a key of a phase (keys: ${PHASE_KEYS.map(([a]) => a).join(', ')})`);
      if (out[pair[0]] !== undefined) throw invalid(`${w} has '${pair[0]}' twice (as '${pair[0]}' and '${pair[1]}')`);
      const x = p[k];
      out[pair[0]] = pair[0] === 'endStep' ? finiteNumber(x, `${w}.${k}`)
        : groupKey(x, pair[0].endsWith('Lr') ? LR_KEYS : MOMENTUM_KEYS, `${w}.${k}`);
    }
    for (const [a, b] of PHASE_KEYS) if (out[a] === undefined) throw invalid(`${w}.${a} is missing (PyTorch: '${b}')`);
    return out as unknown as OneCyclePhase;
  });
}

function readAnneal(v: unknown, where: string): 'cos' | 'linear' {
  if (v === 'cos' || v === '_annealing_cos') return 'cos';
  if (v === 'linear' || v === '_annealing_linear') return 'linear';
  throw invalid(`${where} must be 'cos' or 'linear', got ${describe(v)}`);
}

/**
 * The 1cycle policy (Smith & Topin, 2017; PyTorch `OneCycleLR`): the lr rises from
 * `maxLr / divFactor` to `maxLr` over the first `pctStart` of the steps, then falls to
 * `maxLr / divFactor / finalDivFactor`; the momentum moves the other way. Step it after every
 * batch. The optimizer's lr is ignored: the cycle is set by the options.
 *
 * As in PyTorch: `step()` may be called `totalSteps` times; the last call (step `totalSteps`)
 * extrapolates one step past the end of the last phase (with `'linear'` the lr goes below the
 * final lr, negative for the defaults; an optimizer of adamp refuses a negative lr at its next
 * step, where PyTorch's SGD would step uphill), and one more call throws.
 * Group values: `initialLr`, `maxLr`, `minLr` (and `maxMomentum`, `baseMomentum` when cycling
 * momentum) are set in every group, non-enumerable (see `SchedulableGroup`).
 */
export class OneCycleLR extends BaseScheduler {
  readonly totalSteps!: number;
  readonly schedulePhases!: readonly OneCyclePhase[];
  readonly annealStrategy!: 'cos' | 'linear';
  readonly cycleMomentum!: boolean;
  /** Whether momentum is `betas[0]` (Adam-like optimizers) rather than `momentum`; `undefined` without `cycleMomentum`. */
  readonly useBeta1?: boolean;

  constructor(optimizer: SchedulableOptimizer, options: OneCycleLROptions) {
    super(optimizer, (options as { lastEpoch?: unknown } | undefined)?.lastEpoch, 'OneCycleLR');
    const who = this.who;
    const o = checkOptions(options, [
      'maxLr', 'totalSteps', 'epochs', 'stepsPerEpoch', 'pctStart', 'annealStrategy', 'cycleMomentum', 'baseMomentum',
      'maxMomentum', 'divFactor', 'finalDivFactor', 'threePhase', 'lastEpoch',
    ], who);
    const groups = groupsOf(optimizer, who);
    const n = groups.length;

    let totalSteps: number;
    if (o.totalSteps !== undefined) {
      if (o.epochs !== undefined || o.stepsPerEpoch !== undefined) throw invalid(`${who}: give either options.totalSteps or options.epochs and options.stepsPerEpoch, not both`);
      totalSteps = integerAtLeast(o.totalSteps, 1, `${who}: options.totalSteps`);
    } else if (o.epochs === undefined && o.stepsPerEpoch === undefined) {
      throw invalid(`${who}: options.totalSteps is required, or options.epochs and options.stepsPerEpoch (PyTorch: "You must define either total_steps OR (epochs AND steps_per_epoch)")`);
    } else {
      totalSteps = integerAtLeast(o.epochs, 1, `${who}: options.epochs`) * integerAtLeast(o.stepsPerEpoch, 1, `${who}: options.stepsPerEpoch`);
    }
    const pctStart = finiteNumber(o.pctStart ?? 0.3, `${who}: options.pctStart`);
    if (pctStart < 0 || pctStart > 1) throw invalid(`${who}: options.pctStart must be in [0, 1], got ${pctStart}`);
    const annealStrategy = o.annealStrategy ?? 'cos';
    if (annealStrategy !== 'cos' && annealStrategy !== 'linear') throw invalid(`${who}: options.annealStrategy must be 'cos' or 'linear', got ${describe(annealStrategy)}`);
    const maxLrs = perGroup(o.maxLr, n, `${who}: options.maxLr`, positiveNumber);
    const divFactor = positiveNumber(o.divFactor ?? 25, `${who}: options.divFactor`);
    const finalDivFactor = positiveNumber(o.finalDivFactor ?? 1e4, `${who}: options.finalDivFactor`);
    const threePhase = booleanValue(o.threePhase ?? false, `${who}: options.threePhase`);
    const cycleMomentum = booleanValue(o.cycleMomentum ?? true, `${who}: options.cycleMomentum`);

    let useBeta1: boolean | undefined;
    let maxMomenta: number[] = [];
    let baseMomenta: number[] = [];
    if (cycleMomentum) {
      useBeta1 = momentumKeyOf(groups, who) === 'betas';
      const check = (v: unknown, where: string) => {
        const x = finiteNumber(v, where);
        if (x < 0 || (useBeta1 && x >= 1)) throw invalid(`${where} must be in [0, ${useBeta1 ? '1)' : 'inf)'}${useBeta1 ? ' (it becomes betas[0])' : ''}, got ${x}`);
        return x;
      };
      maxMomenta = perGroup(o.maxMomentum ?? 0.95, n, `${who}: options.maxMomentum`, check);
      baseMomenta = perGroup(o.baseMomentum ?? 0.85, n, `${who}: options.baseMomentum`, check);
    }

    Object.assign(this, {
      totalSteps, annealStrategy, cycleMomentum, schedulePhases: phasesFor(totalSteps, pctStart, threePhase),
      ...(cycleMomentum ? { useBeta1 } : {}),
    });
    if (this._lastEpoch === -1) {
      groups.forEach((g, i) => {
        const initialLr = maxLrs[i] / divFactor;
        this.stage(g, 'initialLr', initialLr);
        this.stage(g, 'maxLr', maxLrs[i]);
        this.stage(g, 'minLr', initialLr / finalDivFactor);
        if (cycleMomentum) {
          const m = maxMomenta[i];
          this.stageWrite(useBeta1 ? () => { g.betas = [m, ...(g.betas ?? []).slice(1)]; } : () => { g.momentum = m; });
          this.stage(g, 'maxMomentum', m);
          this.stage(g, 'baseMomentum', baseMomenta[i]);
        }
      });
    }
    this.start();
  }

  protected compute(epoch: number, _stepCount: number, groups: SchedulableGroup[]): StepValues {
    if (epoch > this.totalSteps) {
      throw invalid(`OneCycleLR: Tried to step ${epoch + 1} times. The specified number of total steps is ${this.totalSteps} ` +
        `(step() may be called totalSteps times after construction; nothing was changed)`);
    }
    const anneal = this.annealStrategy === 'cos' ? annealCos : annealLinear;
    const phases = this.schedulePhases;
    const why = 'OneCycleLR sets it when built with lastEpoch -1; when resuming, restore the optimizer groups too';
    const lrs: number[] = [];
    const momenta: number[] = [];
    groups.forEach((g, i) => {
      let startStep = 0;
      for (let k = 0; k < phases.length; k++) {
        const phase = phases[k];
        const endStep = phase.endStep;
        if (epoch <= endStep || k === phases.length - 1) {
          const pct = (epoch - startStep) / (endStep - startStep);
          lrs.push(anneal(this.readValue(g, phase.startLr, i, why), this.readValue(g, phase.endLr, i, why), pct));
          if (this.cycleMomentum) momenta.push(anneal(this.readValue(g, phase.startMomentum, i, why), this.readValue(g, phase.endMomentum, i, why), pct));
          break;
        }
        startStep = phase.endStep;
      }
    });
    return this.cycleMomentum ? { lrs, momenta, momentumKey: this.useBeta1 ? 'betas' : 'momentum' } : { lrs };
  }

  protected ownStateFields(): StateField[] {
    return [
      { key: 'totalSteps', torch: 'total_steps', read: (v, w) => integerAtLeast(v, 1, w) },
      { key: 'schedulePhases', torch: '_schedule_phases', read: readPhases },
      { key: 'annealStrategy', torch: 'anneal_func', read: readAnneal },
      { key: 'cycleMomentum', torch: 'cycle_momentum', read: booleanValue },
      { key: 'useBeta1', torch: 'use_beta1', read: booleanValue, optional: true },
    ];
  }

  protected override checkOwnState(values: Record<string, unknown>, where: string): void {
    if (values.cycleMomentum !== true) return;
    if (values.useBeta1 === undefined) throw invalid(`${where}.useBeta1 is missing (PyTorch: 'use_beta1'); a state with cycleMomentum has it`);
    const key = momentumKeyOf(groupsOf(this.optimizer, this.who), this.who);
    if ((key === 'betas') !== values.useBeta1) {
      throw invalid(`${where}.useBeta1 is ${values.useBeta1}, but this optimizer's momentum is ${key === 'betas' ? 'betas[0]' : 'momentum'}; is it the state of another optimizer's scheduler?`);
    }
  }

  protected ownState(): SchedulerStateDict {
    return {
      totalSteps: this.totalSteps,
      schedulePhases: this.schedulePhases.map((p) => ({ ...p })),
      annealStrategy: this.annealStrategy,
      cycleMomentum: this.cycleMomentum,
      ...(this.cycleMomentum ? { useBeta1: this.useBeta1 } : {}),
    };
  }

  protected applyOwnState(values: Record<string, unknown>): void {
    const self = this as unknown as Record<string, unknown>;
    for (const k of ['totalSteps', 'schedulePhases', 'annealStrategy', 'cycleMomentum']) self[k] = values[k];
    self.useBeta1 = values.cycleMomentum === true ? values.useBeta1 : undefined;
  }
}

/** Which key holds the momentum of every group: `betas` (beta1) or `momentum`; the optimizer must have one. */
function momentumKeyOf(groups: SchedulableGroup[], who: string): 'betas' | 'momentum' {
  const key = Array.isArray(groups[0].betas) ? 'betas' : 'momentum';
  groups.forEach((g, i) => {
    const ok = key === 'betas' ? Array.isArray(g.betas) && g.betas.length >= 1 : typeof g.momentum === 'number';
    if (!ok) {
      throw invalid(`${who}: cycleMomentum needs an optimizer with momentum (SGD, SGDP: momentum; AdamW, AdamP: betas), but paramGroups[${i}] has no ${key}; pass cycleMomentum: false`);
    }
  });
  return key;
}
