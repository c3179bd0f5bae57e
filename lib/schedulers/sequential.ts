/**
 * SequentialLR with `torch.optim.lr_scheduler.SequentialLR`'s semantics (PyTorch 1.13).
 */
import { invalid } from '../errors';
import { describe } from '../core/describe';
import {
  INITIAL_STEP, LRScheduler, PARSE_STATE, REWIND, STEP_AT, checkOptions, groupValue, groupsOf, integerAtLeast, readStateDict,
  type SchedulableOptimizer, type SchedulerStateDict,
} from './base';

export interface SequentialLROptions {
  /** The schedulers to run one after the other, all built on this optimizer (before this one). */
  schedulers: readonly LRScheduler[];
  /** The steps at which the next scheduler takes over: one fewer than `schedulers`, increasing integers >= 1. */
  milestones: readonly number[];
  lastEpoch?: number;
}

function readMilestones(v: unknown, count: number, where: string): number[] {
  if (!Array.isArray(v)) throw invalid(`${where} must be an array of increasing integers >= 1, got ${describe(v)}`);
  if (v.length !== count - 1) {
    throw invalid(`${where} has ${v.length} milestones for ${count} schedulers; give one fewer milestone than schedulers (PyTorch: "expects number of schedulers provided to be one more than the number of milestone points")`);
  }
  return v.map((m, i) => {
    integerAtLeast(m, 1, `${where}[${i}]`);
    if (i > 0 && m <= v[i - 1]) throw invalid(`${where} must be increasing, got ${JSON.stringify(v)}`);
    return m as number;
  });
}

function bisectRight(a: readonly number[], x: number): number {
  let i = 0;
  while (i < a.length && a[i] <= x) i++;
  return i;
}

/**
 * Runs schedulers one after the other: `schedulers[k]` from `milestones[k-1]` on (PyTorch
 * `SequentialLR`). Build the schedulers on the optimizer first, then this one.
 *
 * As in PyTorch: construction puts every group's lr back to its `initialLr` and restarts the
 * first scheduler; at a milestone the next scheduler starts over at its epoch 0 from the groups'
 * initial lr (its closed form at 0, or its lr function at 0 where it has none), not from where
 * the previous one left the lr; each scheduler counts its own epochs from its milestone.
 */
export class SequentialLR extends LRScheduler {
  readonly schedulers: readonly LRScheduler[];
  readonly milestones!: readonly number[];

  constructor(optimizer: SchedulableOptimizer, options: SequentialLROptions) {
    super(optimizer, (options as { lastEpoch?: unknown } | undefined)?.lastEpoch, 'SequentialLR');
    const who = this.who;
    const o = checkOptions(options, ['schedulers', 'milestones', 'lastEpoch'], who);
    if (!Array.isArray(o.schedulers) || o.schedulers.length === 0) throw invalid(`${who}: options.schedulers must be a non-empty array of schedulers, got ${describe(o.schedulers)}`);
    const schedulers = o.schedulers as LRScheduler[];
    schedulers.forEach((s, i) => {
      if (!(s instanceof LRScheduler)) throw invalid(`${who}: options.schedulers[${i}] must be a scheduler (StepLR, CosineAnnealingLR, ...), got ${describe(s)}`);
      if (s instanceof SequentialLR) throw invalid(`${who}: options.schedulers[${i}] is a SequentialLR; list its schedulers instead`);
      if (s.optimizer !== optimizer) {
        throw invalid(`${who}: options.schedulers[${i}] drives another optimizer; every scheduler must be built on the optimizer passed in (PyTorch: "Sequential Schedulers expects all schedulers to belong to the same optimizer")`);
      }
      if (schedulers.indexOf(s) !== i) throw invalid(`${who}: options.schedulers[${i}] is the same scheduler as options.schedulers[${schedulers.indexOf(s)}]`);
    });
    const milestones = readMilestones(o.milestones, schedulers.length, `${who}: options.milestones`);
    const groups = groupsOf(optimizer, who);
    const initial = groups.map((g, i) => groupValue(g, 'initialLr', i, who, 'the schedulers built before SequentialLR set it'));
    this.schedulers = schedulers.slice();
    Object.assign(this, { milestones });
    // PyTorch: lrs back to their initial values, the step every scheduler took undone, the first one restarted.
    groups.forEach((g, i) => { g.lr = initial[i]; });
    for (const s of schedulers) s[REWIND]();
    schedulers[0][INITIAL_STEP]();
    this._lastEpoch += 1;
    this._lastLr = schedulers[0].getLastLr();
  }

  step(): void {
    const epoch = this._lastEpoch + 1;
    const idx = bisectRight(this.milestones, epoch);
    const scheduler = this.schedulers[idx];
    if (idx > 0 && this.milestones[idx - 1] === epoch) scheduler[STEP_AT](0);
    else scheduler.step();
    this._lastEpoch = epoch;
    this._lastLr = scheduler.getLastLr();
  }

  /** `{ milestones, lastEpoch, lastLr, schedulers: [each scheduler's stateDict()] }`. */
  stateDict(): SchedulerStateDict {
    return {
      milestones: this.milestones.slice(),
      lastEpoch: this._lastEpoch,
      lastLr: this._lastLr.slice(),
      schedulers: this.schedulers.map((s) => s.stateDict()),
    };
  }

  /** @internal */
  [PARSE_STATE](sd: unknown, where: string): () => void {
    const n = this.groups().length;
    const count = this.schedulers.length;
    const values = readStateDict(sd, [
      { key: 'milestones', torch: '_milestones', read: (v, w) => readMilestones(v, count, w) },
      { key: 'lastEpoch', torch: 'last_epoch', read: (v, w) => integerAtLeast(v, 0, w) },
      {
        key: 'lastLr', torch: '_last_lr',
        read: (v, w) => {
          if (!Array.isArray(v) || v.length !== n || v.some((x) => typeof x !== 'number' || !Number.isFinite(x))) throw invalid(`${w} must be an array of ${n} finite numbers, got ${describe(v)}`);
          return v.slice();
        },
      },
      {
        key: 'schedulers', torch: '_schedulers',
        read: (v, w) => {
          if (!Array.isArray(v) || v.length !== count) throw invalid(`${w} must hold the states of ${count} schedulers, got ${describe(v)}`);
          return v.map((x, i) => this.schedulers[i][PARSE_STATE](x, `${w}[${i}]`));
        },
      },
    ], where);
    return () => {
      Object.assign(this, { milestones: values.milestones });
      this._lastEpoch = values.lastEpoch as number;
      this._lastLr = (values.lastLr as number[]).slice();
      for (const apply of values.schedulers as Array<() => void>) apply();
    };
  }

  /** @internal */
  [STEP_AT](): void {
    throw invalid('SequentialLR cannot run inside another SequentialLR');
  }

  /** @internal */
  [INITIAL_STEP](): void {
    throw invalid('SequentialLR cannot run inside another SequentialLR');
  }
}
