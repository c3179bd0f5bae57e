/**
 * The optimizer facade shared by AdamP and SGDP: param groups, validation, lazy state,
 * step orchestration, diagnostics and state dicts. The arithmetic runs in an Engine.
 *
 * Order of a step: validate every group and every param (nothing is mutated before this
 * passes), create missing state, hand one batch of slots per group to the engine, then commit
 * step counts and diagnostics.
 */
import { AdampError, invalid } from './errors';
import { Decision, INFO_STRIDE, Info } from './backends/engine';
import type { AsyncJob, Engine, Slot } from './backends/engine';
import { createEngine } from './backends/select';
import { checkGrad, checkParamStatic, describe, label } from './validate';
import type {
  BackendName, OptimizerConfig, Param, ParamGroup, ParamGroupInput, ParamStepInfo, Projection, StateDict,
} from './types';

/** What differs between AdamP and SGDP; the facade calls nothing else. */
export interface Algorithm<O extends object, S, H> {
  readonly kind: 'adamp' | 'sgdp';
  /** Validates and completes one group's options (`where` prefixes messages). */
  resolve(options: Partial<O>, defaults: Required<O> | null, where: string): Required<O>;
  /** The engine's scalars for a resolved group. */
  scalars(group: Required<O>): H;
  newState(numel: number): S;
  /** The engine's `m`, `v` for a state, and its step count after this step (AdamP) or 0. */
  slotArrays(state: S): { m: Float32Array; v: Float32Array; step: number };
  /** Called after a successful step. */
  commit(state: S): void;
  copyState(state: S): S;
  /** Validates a state dict entry and returns an owned copy. */
  readState(raw: unknown, numel: number, where: string): S;
  /** Keys of a resolved group's options, in display order. */
  readonly optionKeys: readonly (keyof O & string)[];
}

const EMPTY = new Float32Array(0);
const PROJECTION: readonly Projection[] = ['none', 'channel', 'layer', 'not_eligible'];

interface GroupRun {
  /** Flat index of each slot's param. */
  indices: number[];
  info: Float64Array;
}

interface Plan<H> {
  jobs: Array<{ group: number; slots: Slot[]; hp: H; states: unknown[] }>;
  runs: GroupRun[];
  /** Flat index -> param, for every param of every group. */
  params: Param[];
}

export abstract class Optimizer<O extends object, S, H> {
  /** The param groups with every hyperparameter resolved. Change them between steps (schedulers); they are validated at each step. */
  readonly paramGroups: ParamGroup<O>[] = [];
  /** The defaults new groups inherit. */
  readonly defaults: Required<O>;
  /** The backend running the step: `'js'`, `'native'` or `'cuda'`. */
  readonly backend: BackendName;

  private readonly algo: Algorithm<O, S, H>;
  private readonly engine: Engine;
  private readonly state = new Map<Param, S>();
  private lastRuns: GroupRun[] = [];
  private lastParams: Param[] = [];
  private lastInfo: ParamStepInfo[] | null = [];
  private busy = false;
  private disposed = false;

  protected constructor(
    algo: Algorithm<O, S, H>,
    params: readonly Param[] | readonly ParamGroupInput<O>[],
    options: Partial<O>,
    config: OptimizerConfig | undefined,
  ) {
    this.algo = algo;
    if (config !== undefined && (config === null || typeof config !== 'object')) {
      throw invalid(`config must be an object like { backend: 'auto' }, got ${describe(config)}`);
    }
    if (options === null || typeof options !== 'object') {
      throw invalid(`options must be an object, got ${describe(options)}`);
    }
    this.defaults = algo.resolve(options, null, 'options');
    if (!Array.isArray(params)) throw invalid(`params must be an array of params or of param groups, got ${describe(params)}`);
    if (params.length === 0) throw invalid('params is an empty list: the optimizer has nothing to update');
    const groups: ParamGroupInput<O>[] = isGroupList(params)
      ? (params as readonly ParamGroupInput<O>[]).slice()
      : [{ params: (params as readonly Param[]).slice() } as ParamGroupInput<O>];
    for (const g of groups) this.addParamGroupUnchecked(g);
    this.checkStructure();
    this.engine = createEngine(config?.backend ?? 'auto', { threads: config?.threads, kind: algo.kind });
    this.backend = this.engine.name;
  }

  /** Adds a param group (PyTorch `add_param_group`); missing options come from `defaults`. */
  addParamGroup(group: ParamGroupInput<O>): void {
    this.assertUsable();
    const before = this.paramGroups.length;
    this.addParamGroupUnchecked(group);
    try {
      this.checkStructure();
    } catch (e) {
      this.paramGroups.length = before;
      throw e;
    }
  }

  /**
   * Performs one optimization step: every param with a gradient is updated in place.
   * Throws before changing anything when an input is invalid.
   */
  step(): void {
    this.assertUsable();
    const plan = this.plan();
    for (const job of plan.jobs) this.runSync(job.slots, job.hp, plan.runs[job.group].info);
    this.finish(plan);
  }

  /**
   * Performs one step off the JavaScript thread (native backends) and resolves when it is done.
   * Until then, `step()`, `stepAsync()`, `zeroGrad()`, `stateDict()` and `loadStateDict()` throw
   * `ERR_ADAMP_STEP_IN_FLIGHT`, and the params' and state's buffers must not be modified.
   * Validation errors reject the promise before anything is changed.
   */
  async stepAsync(): Promise<void> {
    this.assertUsable();
    const plan = this.plan();
    if (!this.engine.stepAsync) {
      for (const job of plan.jobs) this.runSync(job.slots, job.hp, plan.runs[job.group].info);
      this.finish(plan);
      return;
    }
    const jobs = plan.jobs.map((j) => ({
      kind: this.algo.kind, slots: j.slots, hp: j.hp, info: plan.runs[j.group].info,
    })) as unknown as AsyncJob[];
    this.busy = true;
    try {
      await this.engine.stepAsync(jobs);
    } finally {
      this.busy = false;
    }
    this.finish(plan);
  }

  /**
   * Clears gradients. By default fills each gradient with zeros (the arrays stay, so code that
   * accumulates into them keeps working); `setToNull = true` sets them to `null` instead, which
   * skips those params at the next step, as PyTorch's `set_to_none`.
   */
  zeroGrad(setToNull = false): void {
    this.assertIdle();
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        if (setToNull) p.grad = null;
        else if (p.grad) p.grad.fill(0);
      }
    }
  }

  /** Per-param diagnostics of the last step, in order over all groups (empty before the first step). */
  get lastStepInfo(): readonly ParamStepInfo[] {
    if (this.lastInfo === null) {
      this.assertIdle();
      this.engine.flushInfo?.();
      this.lastInfo = this.materializeInfo();
    }
    return this.lastInfo;
  }

  /** A copy of the optimizer's state and hyperparameters, PyTorch-style (indices over all groups, in order). */
  stateDict(): StateDict<S, O> {
    this.assertIdle();
    this.engine.flush?.();
    const state: { [i: number]: S } = {};
    const paramGroups: StateDict<S, O>['paramGroups'] = [];
    let index = 0;
    for (const group of this.paramGroups) {
      const indices: number[] = [];
      for (const p of group.params) {
        const s = this.state.get(p);
        if (s !== undefined) state[index] = this.algo.copyState(s);
        indices.push(index++);
      }
      const entry = { params: indices } as { params: number[] } & Required<O>;
      for (const k of this.algo.optionKeys) (entry as Record<string, unknown>)[k] = copyOption(group[k]);
      paramGroups.push(entry);
    }
    return { state, paramGroups };
  }

  /**
   * Restores a state dict from `stateDict()` (or a checkpoint): hyperparameters and state.
   * The dict is checked whole against this optimizer's groups and params first; on any mismatch
   * it throws and nothing changes. Resuming gives bit-identical results to never having stopped.
   */
  loadStateDict(sd: StateDict<S, O>): void {
    this.assertIdle();
    if (sd === null || typeof sd !== 'object') throw invalid(`stateDict must be an object { state, paramGroups }, got ${describe(sd)}`);
    const { state, paramGroups } = sd as StateDict<S, O>;
    if (!Array.isArray(paramGroups)) throw invalid(`stateDict.paramGroups must be an array, got ${describe(paramGroups)}`);
    if (state === null || typeof state !== 'object') throw invalid(`stateDict.state must be an object, got ${describe(state)}`);
    if (paramGroups.length !== this.paramGroups.length) {
      throw invalid(`stateDict has ${paramGroups.length} param groups, this optimizer has ${this.paramGroups.length}`);
    }
    const resolved: Required<O>[] = [];
    const flat: Param[] = [];
    const seen = new Set<number>();
    for (let gi = 0; gi < paramGroups.length; gi++) {
      const g = paramGroups[gi];
      const where = `stateDict.paramGroups[${gi}]`;
      if (g === null || typeof g !== 'object' || !Array.isArray(g.params)) throw invalid(`${where}.params must be an array of param indices`);
      const mine = this.paramGroups[gi].params;
      if (g.params.length !== mine.length) {
        throw invalid(`${where} has ${g.params.length} params, this optimizer's group ${gi} has ${mine.length}`);
      }
      for (let j = 0; j < g.params.length; j++) {
        const idx = g.params[j];
        if (!Number.isSafeInteger(idx) || idx < 0 || seen.has(idx)) throw invalid(`${where}.params[${j}] must be a unique non-negative integer index, got ${describe(idx)}`);
        seen.add(idx);
      }
      const opts: Partial<O> = {};
      for (const k of this.algo.optionKeys) (opts as Record<string, unknown>)[k] = (g as Record<string, unknown>)[k];
      resolved.push(this.algo.resolve(opts, null, where));
      flat.push(...mine);
    }
    // Indices map to this optimizer's params in order over groups, as in PyTorch.
    const indexToParam = new Map<number, Param>();
    let k = 0;
    for (const g of paramGroups) for (const idx of g.params) indexToParam.set(idx, flat[k++]);
    const newState = new Map<Param, S>();
    for (const key of Object.keys(state)) {
      const idx = Number(key);
      const p = indexToParam.get(idx);
      if (p === undefined) throw invalid(`stateDict.state has an entry for param index ${key}, which no group lists`);
      newState.set(p, this.algo.readState((state as Record<string, unknown>)[key], p.data.length, `stateDict.state[${key}] (${label(p, idx)})`));
    }
    // Everything checked: apply.
    for (let gi = 0; gi < resolved.length; gi++) Object.assign(this.paramGroups[gi], resolved[gi]);
    this.state.clear();
    for (const [p, s] of newState) this.state.set(p, s);
    this.engine.invalidate?.(); // engines holding copies (cuda) re-read state at the next step
  }

  /** Writes back params and state held by the engine elsewhere (the CUDA backend keeps them on the device). No-op on CPU backends. */
  synchronize(): void {
    this.assertIdle();
    this.engine.flush?.();
  }

  /** Releases what the backend holds for this optimizer. The optimizer cannot step afterwards. */
  dispose(): void {
    if (this.disposed) return;
    if (this.busy) throw new AdampError('ERR_ADAMP_STEP_IN_FLIGHT', 'cannot dispose while stepAsync() is in flight; await it first');
    this.engine.flush?.();
    this.engine.dispose?.();
    this.disposed = true;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  // ---------------------------------------------------------------------------------------

  private addParamGroupUnchecked(group: ParamGroupInput<O>): void {
    const gi = this.paramGroups.length;
    if (group === null || typeof group !== 'object' || !Array.isArray(group.params)) {
      throw invalid(`paramGroups[${gi}] must be an object { params: Param[], ...options }, got ${describe(group)}`);
    }
    const { params, ...opts } = group;
    const resolved = this.algo.resolve(opts as unknown as Partial<O>, this.defaults, `paramGroups[${gi}]`);
    this.paramGroups.push({ ...resolved, params: params.slice() } as ParamGroup<O>);
  }

  /** Params are well formed and none appears twice. */
  private checkStructure(): void {
    const seen = new Set<Param>();
    let index = 0;
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        checkParamStatic(p, index);
        if (seen.has(p)) throw invalid(`${label(p, index)} appears more than once across param groups`);
        seen.add(p);
        index++;
      }
    }
  }

  private assertUsable(): void {
    if (this.disposed) throw new AdampError('ERR_ADAMP_DISPOSED', 'this optimizer was disposed; create a new one');
    this.assertIdle();
  }

  private assertIdle(): void {
    if (this.busy) {
      throw new AdampError('ERR_ADAMP_STEP_IN_FLIGHT', 'a stepAsync() of this optimizer is still running; await it before stepping, reading or changing state');
    }
  }

  /** Validates everything, then creates missing state and builds the engine's slots. */
  private plan(): Plan<H> {
    const hps: H[] = [];
    const params: Param[] = [];
    const datas = new Set<Float32Array>();
    for (let gi = 0; gi < this.paramGroups.length; gi++) {
      const group = this.paramGroups[gi];
      const resolved = this.algo.resolve(group as unknown as Partial<O>, null, `paramGroups[${gi}]`);
      hps.push(this.algo.scalars(resolved));
      for (const p of group.params) {
        const index = params.length;
        checkParamStatic(p, index);
        checkGrad(p, index);
        if (datas.has(p.data)) throw invalid(`data of ${label(p, index)} is the same Float32Array as another param's`);
        datas.add(p.data);
        const s = this.state.get(p);
        if (s !== undefined) {
          const { m, v } = this.algo.slotArrays(s);
          if (m.length !== p.data.length || (v.length !== 0 && v.length !== p.data.length)) {
            throw invalid(`data length of ${label(p, index)} changed from ${m.length} to ${p.data.length} since its state was created`);
          }
        }
        params.push(p);
      }
    }
    // Nothing below throws on user input.
    const jobs: Plan<H>['jobs'] = [];
    const runs: GroupRun[] = [];
    let index = 0;
    for (let gi = 0; gi < this.paramGroups.length; gi++) {
      const slots: Slot[] = [];
      const states: unknown[] = [];
      const indices: number[] = [];
      for (const p of this.paramGroups[gi].params) {
        if (p.grad) {
          let s = this.state.get(p);
          if (s === undefined) {
            s = this.algo.newState(p.data.length);
            this.state.set(p, s);
          }
          const { m, v, step } = this.algo.slotArrays(s);
          slots.push({ p: p.data, g: p.grad, m, v: v ?? EMPTY, step, ...geometry(p) });
          states.push(s);
          indices.push(index);
        }
        index++;
      }
      runs.push({ indices, info: new Float64Array(slots.length * INFO_STRIDE) });
      if (slots.length > 0) jobs.push({ group: gi, slots, hp: hps[gi], states });
    }
    return { jobs, runs, params };
  }

  private runSync(slots: Slot[], hp: H, info: Float64Array): void {
    if (this.algo.kind === 'adamp') this.engine.stepAdamP(slots, hp as never, info);
    else this.engine.stepSGDP(slots, hp as never, info);
  }

  private finish(plan: Plan<H>): void {
    for (const job of plan.jobs) for (const s of job.states) this.algo.commit(s as S);
    this.lastRuns = plan.runs;
    this.lastParams = plan.params;
    this.lastInfo = null; // built on first read: the step itself stays cheap
  }

  private materializeInfo(): ParamStepInfo[] {
    const out: ParamStepInfo[] = this.lastParams.map((p, index) => ({
      index, ...(p.name !== undefined ? { name: p.name } : {}), projection: 'no_grad' as Projection,
      channelMaxCos: null, channelThreshold: null, layerCos: null, layerThreshold: null,
      wdRatio: null, weightNorm: null, updateNorm: null, effectiveStepSize: null,
    }));
    for (let gi = 0; gi < this.lastRuns.length; gi++) {
      const { indices, info } = this.lastRuns[gi];
      const wdRatio = (this.paramGroups[gi] as unknown as { wdRatio: number }).wdRatio;
      for (let k = 0; k < indices.length; k++) {
        const o = k * INFO_STRIDE;
        const e = out[indices[k]];
        const code = info[o + Info.decision];
        e.projection = PROJECTION[code];
        e.channelMaxCos = nanToNull(info[o + Info.channelMaxCos]);
        e.channelThreshold = nanToNull(info[o + Info.channelThreshold]);
        e.layerCos = nanToNull(info[o + Info.layerCos]);
        e.layerThreshold = nanToNull(info[o + Info.layerThreshold]);
        e.wdRatio = code === Decision.channel || code === Decision.layer ? wdRatio : 1;
        const before = Math.sqrt(info[o + Info.normSqBefore]);
        e.weightNorm = Math.sqrt(info[o + Info.normSqAfter]);
        e.updateNorm = Math.sqrt(info[o + Info.deltaSq]);
        e.effectiveStepSize = before > 0 ? e.updateNorm / before : e.updateNorm > 0 ? Infinity : 0;
      }
    }
    return out;
  }
}

/** The channel view of a param as outer x channels x inner (see `Slot`). */
export function geometry(p: Param): Pick<Slot, 'outer' | 'channels' | 'inner' | 'eligible'> {
  const shape = p.shape;
  const numel = p.data.length;
  const r = shape.length;
  if (r <= 1 || numel === 0) return { outer: 1, channels: 1, inner: numel, eligible: false };
  const axis = p.channelAxis === undefined ? 0 : p.channelAxis < 0 ? p.channelAxis + r : p.channelAxis;
  let outer = 1;
  for (let d = 0; d < axis; d++) outer *= shape[d];
  const channels = shape[axis];
  return { outer, channels, inner: numel / outer / channels, eligible: true };
}

function isGroupList(list: readonly unknown[]): boolean {
  const first = list[0];
  return first !== null && typeof first === 'object' && 'params' in (first as object) && !('data' in (first as object));
}

function nanToNull(x: number): number | null {
  return Number.isNaN(x) ? null : x;
}

function copyOption(v: unknown): unknown {
  return Array.isArray(v) ? v.slice() : v;
}
