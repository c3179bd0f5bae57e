/**
 * The machinery every learning-rate scheduler shares, with `torch.optim.lr_scheduler`'s semantics
 * (PyTorch 1.13): `lastEpoch`, the initial step at construction, `initialLr` kept per group,
 * `getLastLr()`, and state dicts (camelCase; PyTorch's snake_case keys are accepted on load).
 *
 * A scheduler drives anything with param groups: the optimizers of `adamp`
 * (`optimizer.paramGroups`) and those of `adamp/tfjs` (one group: `optimizer.hyperparameters`).
 *
 * Where PyTorch keeps scheduler values in the optimizer's groups (`initial_lr`, and OneCycleLR's
 * `max_lr`, `min_lr`, `max_momentum`, `base_momentum`), they live on the group objects as
 * **non-enumerable** properties (`group.initialLr`, ...): readable and writable like PyTorch's,
 * shared by every scheduler of the optimizer (so chained and sequential schedulers see the first
 * one's `initialLr`), and invisible to the optimizer's option checks, its `stateDict()` and
 * checkpoints, which list the optimizer's own options only. A plain (enumerable) `initialLr`
 * you set yourself before resuming is taken and made non-enumerable by the next scheduler built.
 */
import { invalid } from '../errors';
import { describe } from '../core/describe';
import { isPlainObject, suggest } from '../optim/options';

/**
 * One param group as a scheduler sees it: `lr` (written at every step), and `momentum` or
 * `betas` (written by OneCycleLR when it cycles momentum). The other keys are the scheduler
 * values PyTorch keeps in the group; here they are non-enumerable (see the module comment).
 */
export interface SchedulableGroup {
  lr: number;
  momentum?: number;
  betas?: readonly number[];
  /** The lr the schedule starts from (PyTorch `initial_lr`): set by the first scheduler built when `lastEpoch` is -1. */
  initialLr?: number;
  /** OneCycleLR (PyTorch `max_lr`). */
  maxLr?: number;
  /** OneCycleLR (PyTorch `min_lr`). */
  minLr?: number;
  /** OneCycleLR with `cycleMomentum` (PyTorch `max_momentum`). */
  maxMomentum?: number;
  /** OneCycleLR with `cycleMomentum` (PyTorch `base_momentum`). */
  baseMomentum?: number;
}

/**
 * What a scheduler drives: an optimizer of `adamp` (`AdamP`, `SGDP`, `AdamW`, `SGD`: its
 * `paramGroups`), an optimizer of `adamp/tfjs` (its `hyperparameters`, one group), or any object
 * with `paramGroups` of that shape.
 */
export type SchedulableOptimizer =
  | { readonly paramGroups: readonly SchedulableGroup[] }
  | { readonly hyperparameters: SchedulableGroup };

/** The scheduler values PyTorch keeps in the optimizer's param groups. */
export type GroupValueKey = 'initialLr' | 'maxLr' | 'minLr' | 'maxMomentum' | 'baseMomentum';

/** A scheduler's state: a plain JSON-able object (`JSON.stringify` / `JSON.parse` round-trip it). */
export type SchedulerStateDict = Record<string, unknown>;

/** What one step computes: every group's lr, and (OneCycleLR) its momentum. */
export interface StepValues {
  lrs: number[];
  momenta?: number[];
  /** Which key `momenta` go to: `'betas'` (beta1) or `'momentum'`. */
  momentumKey?: 'betas' | 'momentum';
}

// Hooks SequentialLR uses on the schedulers it runs (module-private names).
/** `step(epoch)`: PyTorch's deprecated epoch form: the closed form at `epoch` where there is one. */
export const STEP_AT: unique symbol = Symbol('adamp.scheduler.stepAt');
/** `last_epoch -= 1`. */
export const REWIND: unique symbol = Symbol('adamp.scheduler.rewind');
/** `_initial_step()`: the step count back to 0, then a step. */
export const INITIAL_STEP: unique symbol = Symbol('adamp.scheduler.initialStep');
/** Checks a state dict whole and returns what applies it (so SequentialLR checks every sub-state before applying any). */
export const PARSE_STATE: unique symbol = Symbol('adamp.scheduler.parseState');

/** The groups of a schedulable optimizer (checked; `who` names the scheduler in messages). */
export function groupsOf(optimizer: unknown, who: string): SchedulableGroup[] {
  let groups: unknown[] | null = null;
  if (optimizer !== null && typeof optimizer === 'object') {
    const o = optimizer as { paramGroups?: unknown; hyperparameters?: unknown };
    if (Array.isArray(o.paramGroups)) groups = o.paramGroups;
    else if (o.hyperparameters !== null && typeof o.hyperparameters === 'object') groups = [o.hyperparameters];
  }
  if (groups === null) {
    throw invalid(`${who}: optimizer must be an optimizer of adamp (its paramGroups) or of adamp/tfjs (its hyperparameters), got ${describe(optimizer)}`);
  }
  if (groups.length === 0) throw invalid(`${who}: the optimizer has no param groups`);
  groups.forEach((g, i) => {
    if (g === null || typeof g !== 'object' || Object.isFrozen(g)) {
      throw invalid(`${who}: paramGroups[${i}] must be a (writable) object with an lr, got ${describe(g)}`);
    }
    const lr = (g as SchedulableGroup).lr;
    if (typeof lr !== 'number' || !Number.isFinite(lr)) throw invalid(`${who}: paramGroups[${i}].lr must be a finite number, got ${describe(lr)}`);
  });
  return groups as SchedulableGroup[];
}

/** Writes a scheduler value into a group as a non-enumerable property (the optimizer's option checks and state dicts skip it). */
export function setGroupValue(group: SchedulableGroup, key: GroupValueKey, value: number): void {
  const d = Object.getOwnPropertyDescriptor(group, key);
  if (d !== undefined && !d.enumerable && d.writable) (group as unknown as Record<string, unknown>)[key] = value;
  else Object.defineProperty(group, key, { value, writable: true, enumerable: false, configurable: true });
}

/** Reads a scheduler value of group `i`, which must be a finite number. */
export function groupValue(group: SchedulableGroup, key: GroupValueKey, i: number, who: string, why: string): number {
  const v = (group as unknown as Record<string, unknown>)[key];
  if (v === undefined) throw invalid(`${who}: paramGroups[${i}].${key} is not set; ${why}`);
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(`${who}: paramGroups[${i}].${key} must be a finite number, got ${describe(v)}`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Option checks (`where` names the option in messages).

export function checkOptions(options: unknown, known: readonly string[], who: string): Record<string, unknown> {
  if (!isPlainObject(options)) throw invalid(`${who}: options must be a plain object, got ${describe(options)}`);
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const hint = suggest(key, known);
    throw invalid(`${who}: options.${key} is not an option${hint ? `; did you mean '${hint}'?` : ''} (options: ${known.join(', ')})`);
  }
  return options;
}

export function finiteNumber(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(`${where} must be a finite number, got ${describe(v)}`);
  return v;
}

export function positiveNumber(v: unknown, where: string): number {
  const x = finiteNumber(v, where);
  if (!(x > 0)) throw invalid(`${where} must be > 0, got ${x}`);
  return x;
}

export function nonNegativeNumber(v: unknown, where: string): number {
  const x = finiteNumber(v, where);
  if (x < 0) throw invalid(`${where} must be >= 0, got ${x}`);
  return x;
}

export function integerAtLeast(v: unknown, min: number, where: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw invalid(`${where} must be an integer >= ${min}, got ${describe(v)}`);
  return v;
}

export function booleanValue(v: unknown, where: string): boolean {
  if (typeof v !== 'boolean') throw invalid(`${where} must be a boolean, got ${describe(v)}`);
  return v;
}

/** A number, or one number per group (PyTorch's `_format_param`). */
export function perGroup(v: unknown, n: number, where: string, check: (x: unknown, where: string) => number): number[] {
  if (Array.isArray(v)) {
    if (v.length !== n) throw invalid(`${where} has ${v.length} values, the optimizer has ${n} param groups (give one number, or one per group)`);
    return v.map((x, i) => check(x, `${where}[${i}]`));
  }
  const x = check(v, where);
  return new Array<number>(n).fill(x);
}

function finiteArray(v: unknown, n: number, where: string): number[] {
  if (!Array.isArray(v) || v.length !== n) throw invalid(`${where} must be an array of ${n} numbers (one per param group), got ${describe(v)}`);
  return v.map((x, i) => finiteNumber(x, `${where}[${i}]`));
}

// ---------------------------------------------------------------------------------------------
// State dicts: camelCase keys; PyTorch's keys are accepted on load.

/** One entry of a scheduler's state dict. */
export interface StateField {
  /** The key `stateDict()` writes. */
  key: string;
  /** PyTorch's key (accepted by `loadStateDict`). */
  torch: string;
  /** Checks a loaded value (either spelling) and returns it normalised. */
  read(value: unknown, where: string): unknown;
  /** Only some state dicts have it (OneCycleLR's `useBeta1`). */
  optional?: boolean;
}

/** PyTorch keys with nothing to restore here. */
const TORCH_IGNORED = ['verbose', '_get_lr_called_within_step'];

/** Checks `sd` against `fields` (either spelling, each once, none unknown); returns the values by camelCase key. */
export function readStateDict(sd: unknown, fields: readonly StateField[], where: string): Record<string, unknown> {
  if (!isPlainObject(sd)) throw invalid(`${where} must be a plain object (what stateDict() returned), got ${describe(sd)}`);
  const out: Record<string, unknown> = {};
  const seen = new Map<string, string>();
  for (const k of Object.keys(sd)) {
    if (TORCH_IGNORED.includes(k)) continue;
    const f = fields.find((x) => x.key === k || x.torch === k);
    if (f === undefined) {
      const known = fields.map((x) => x.key);
      const hint = suggest(k, known);
      throw invalid(`${where}.${k} is not a key of this scheduler's state${hint ? `; did you mean '${hint}'?` : ''} (keys: ${known.join(', ')}); is it another scheduler's state?`);
    }
    if (seen.has(f.key)) throw invalid(`${where} has both '${seen.get(f.key)}' and '${k}', which are the same entry`);
    seen.set(f.key, k);
    out[f.key] = f.read(sd[k], `${where}.${k}`);
  }
  for (const f of fields) {
    if (!f.optional && !seen.has(f.key)) throw invalid(`${where}.${f.key} is missing (PyTorch: '${f.torch}'); pass what stateDict() returned`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

/**
 * What every scheduler has: `step()`, `getLastLr()`, `lastEpoch`, `stateDict()`,
 * `loadStateDict()`, and the optimizer it drives.
 */
export abstract class LRScheduler {
  /** The optimizer this scheduler drives. */
  readonly optimizer: SchedulableOptimizer;
  /** The class name, for messages. */
  protected readonly who: string;
  protected _lastEpoch: number;
  protected _lastLr: number[] = [];

  protected constructor(optimizer: SchedulableOptimizer, lastEpoch: unknown, who: string) {
    this.who = who;
    groupsOf(optimizer, who);
    this._lastEpoch = lastEpoch === undefined ? -1 : integerAtLeast(lastEpoch, -1, `${who}: options.lastEpoch`);
    this.optimizer = optimizer;
  }

  /** The index of the last step taken (PyTorch `last_epoch`): 0 right after construction (with the default `lastEpoch: -1`), +1 per `step()`. */
  get lastEpoch(): number {
    return this._lastEpoch;
  }

  /** The lr of every group after the last step (PyTorch `get_last_lr()`), a copy. */
  getLastLr(): number[] {
    return this._lastLr.slice();
  }

  /**
   * Advances the schedule by one step and writes the new lr (and, for OneCycleLR, momentum) into
   * the optimizer's groups. Call it after `optimizer.step()`, as in PyTorch. A step that throws
   * changes nothing.
   */
  abstract step(): void;

  /**
   * The scheduler's state as a plain JSON-able object, PyTorch's `state_dict()` with camelCase
   * keys. Functions (LambdaLR's lambdas) are not saved. As in PyTorch, save the optimizer's
   * state too: chainable schedulers continue from the groups' current lr.
   */
  abstract stateDict(): SchedulerStateDict;

  /**
   * Restores a state from `stateDict()` (or PyTorch's `state_dict()` as JSON, with its
   * snake_case keys). The dict is checked whole first; on any problem it throws and nothing
   * changes. The optimizer's groups are not touched: restore the optimizer's state as well.
   */
  loadStateDict(stateDict: SchedulerStateDict): void {
    this[PARSE_STATE](stateDict, 'stateDict')();
  }

  /** @internal */
  abstract [PARSE_STATE](stateDict: unknown, where: string): () => void;
  /** @internal */
  abstract [STEP_AT](epoch: number): void;
  /** @internal */
  [REWIND](): void {
    this._lastEpoch -= 1;
  }
  /** @internal */
  abstract [INITIAL_STEP](): void;

  /** The optimizer's groups now; their number must not have changed since this scheduler was built. */
  protected groups(): SchedulableGroup[] {
    const groups = groupsOf(this.optimizer, this.who);
    if (groups.length !== this._lastLr.length) {
      throw invalid(`${this.who}: the optimizer has ${groups.length} param groups, this scheduler was built for ${this._lastLr.length}; build a new scheduler after addParamGroup()`);
    }
    return groups;
  }
}

/**
 * The base of the schedulers that compute each group's lr from `baseLrs` (PyTorch's
 * `_LRScheduler`): everything but SequentialLR.
 */
export abstract class BaseScheduler extends LRScheduler {
  protected _baseLrs: number[] = [];
  /** PyTorch `_step_count`: 1 after construction, +1 per step. */
  protected _stepCount = 0;
  /** Scheduler values to write into the groups at the initial step (once it has been computed). */
  private staged: Array<{ group: SchedulableGroup; key: GroupValueKey; value: number }> = [];
  private stagedWrites: Array<() => void> = [];

  /** Each group's lr at the start of the schedule (PyTorch `base_lrs`), a copy. */
  get baseLrs(): number[] {
    return this._baseLrs.slice();
  }

  /** The lrs (and momenta) of the step to `epoch`, PyTorch's chainable `get_lr()`; pure (the step writes them). */
  protected abstract compute(epoch: number, stepCount: number, groups: SchedulableGroup[]): StepValues;

  /** PyTorch's `_get_closed_form_lr()`, where the scheduler has one (used by SequentialLR at a milestone). */
  protected closedForm?(epoch: number): StepValues;

  /** The fields of the subclass in the state dict (before the common ones). */
  protected abstract ownStateFields(): StateField[];
  /** The subclass's entries of `stateDict()`. */
  protected abstract ownState(): SchedulerStateDict;
  /** Checks across the subclass's entries of a state dict (`where` names it). */
  protected checkOwnState?(values: Record<string, unknown>, where: string): void;
  /** Applies the subclass's entries of a checked state dict. */
  protected abstract applyOwnState(values: Record<string, unknown>): void;

  /** Reads a group value, seeing values staged for the initial step. */
  protected readValue(group: SchedulableGroup, key: GroupValueKey, i: number, why: string): number {
    for (let k = this.staged.length - 1; k >= 0; k--) {
      const s = this.staged[k];
      if (s.group === group && s.key === key) return s.value;
    }
    return groupValue(group, key, i, this.who, why);
  }

  /** A group value to write when the construction succeeds. */
  protected stage(group: SchedulableGroup, key: GroupValueKey, value: number): void {
    this.staged.push({ group, key, value });
  }

  /** Any other write to do when the construction succeeds (OneCycleLR's momentum). */
  protected stageWrite(write: () => void): void {
    this.stagedWrites.push(write);
  }

  /**
   * The end of construction (PyTorch `_LRScheduler.__init__`): `initialLr` set in every group that
   * has none (or required when resuming), `baseLrs`, then the initial step. Computed before
   * anything is written: when it throws, the groups are as they were.
   */
  protected start(): void {
    const groups = groupsOf(this.optimizer, this.who);
    const resuming = this._lastEpoch !== -1;
    const base = groups.map((g, i) => {
      if (!resuming) {
        const staged = this.staged.some((s) => s.group === g && s.key === 'initialLr');
        if (!staged && !Object.prototype.hasOwnProperty.call(g, 'initialLr')) this.stage(g, 'initialLr', g.lr);
      }
      return this.readValue(g, 'initialLr', i,
        `resuming with lastEpoch ${this._lastEpoch} needs every group's initial lr (PyTorch's KeyError "param 'initial_lr' is not specified"): build the schedulers before loading the optimizer's state, or set paramGroups[${i}].initialLr`);
    });
    // Take over a plain initialLr the user set (and the other values) as non-enumerable properties.
    for (const g of groups) {
      for (const key of ['initialLr', 'maxLr', 'minLr', 'maxMomentum', 'baseMomentum'] as const) {
        const d = Object.getOwnPropertyDescriptor(g, key);
        if (d !== undefined && d.enumerable && !this.staged.some((s) => s.group === g && s.key === key)) this.stage(g, key, d.value as number);
      }
    }
    this._baseLrs = base;
    const epoch = this._lastEpoch + 1;
    const values = this.compute(epoch, 1, groups);
    this.checkValues(values, epoch);
    for (const s of this.staged) setGroupValue(s.group, s.key, s.value);
    for (const w of this.stagedWrites) w();
    this.staged = [];
    this.stagedWrites = [];
    this._lastLr = new Array<number>(groups.length).fill(0);
    this.commit(values, epoch, 1, groups);
  }

  step(): void {
    const groups = this.groups();
    const epoch = this._lastEpoch + 1;
    const values = this.compute(epoch, this._stepCount + 1, groups);
    this.checkValues(values, epoch);
    this.commit(values, epoch, this._stepCount + 1, groups);
  }

  /** @internal */
  [STEP_AT](epoch: number): void {
    const groups = this.groups();
    const values = this.closedForm ? this.closedForm(epoch) : this.compute(epoch, this._stepCount + 1, groups);
    this.checkValues(values, epoch);
    this.commit(values, epoch, this._stepCount + 1, groups);
  }

  /** @internal */
  [INITIAL_STEP](): void {
    const groups = this.groups();
    const epoch = this._lastEpoch + 1;
    const values = this.compute(epoch, 1, groups);
    this.checkValues(values, epoch);
    this.commit(values, epoch, 1, groups);
  }

  stateDict(): SchedulerStateDict {
    return {
      ...this.ownState(),
      baseLrs: this._baseLrs.slice(),
      lastEpoch: this._lastEpoch,
      stepCount: this._stepCount,
      lastLr: this._lastLr.slice(),
    };
  }

  /** @internal */
  [PARSE_STATE](sd: unknown, where: string): () => void {
    const n = this.groups().length;
    const fields: StateField[] = [
      ...this.ownStateFields(),
      { key: 'baseLrs', torch: 'base_lrs', read: (v, w) => finiteArray(v, n, w) },
      { key: 'lastEpoch', torch: 'last_epoch', read: (v, w) => integerAtLeast(v, -1, w) },
      { key: 'stepCount', torch: '_step_count', read: (v, w) => integerAtLeast(v, 0, w) },
      { key: 'lastLr', torch: '_last_lr', read: (v, w) => finiteArray(v, n, w) },
    ];
    const values = readStateDict(sd, fields, where);
    this.checkOwnState?.(values, where);
    return () => {
      this.applyOwnState(values);
      this._baseLrs = (values.baseLrs as number[]).slice();
      this._lastEpoch = values.lastEpoch as number;
      this._stepCount = values.stepCount as number;
      this._lastLr = (values.lastLr as number[]).slice();
    };
  }

  private checkValues(values: StepValues, epoch: number): void {
    values.lrs.forEach((lr, i) => {
      if (typeof lr !== 'number' || !Number.isFinite(lr)) {
        throw invalid(`${this.who}: the lr of paramGroups[${i}] at step ${epoch} would be ${describe(lr)}; nothing was changed`);
      }
    });
    values.momenta?.forEach((m, i) => {
      if (!Number.isFinite(m)) throw invalid(`${this.who}: the momentum of paramGroups[${i}] at step ${epoch} would be ${m}; nothing was changed`);
    });
  }

  /** PyTorch `step()` after `get_lr()`: the values into the groups, `lastLr` read back from them. */
  private commit(values: StepValues, epoch: number, stepCount: number, groups: SchedulableGroup[]): void {
    this._stepCount = stepCount;
    this._lastEpoch = epoch;
    groups.forEach((g, i) => {
      if (values.momenta !== undefined) {
        if (values.momentumKey === 'betas') g.betas = [values.momenta[i], ...(g.betas ?? []).slice(1)];
        else g.momentum = values.momenta[i];
      }
      g.lr = values.lrs[i];
    });
    this._lastLr = groups.map((g) => g.lr);
  }
}
