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
import { checkGrad, checkParamStatic, describe, isDeviceParam, label, numelOf, shapeOf } from './validate';
import { DeviceTensor, type DeviceView } from './device/tensor';
import type {
  AnyParam, BackendName, OptimizerConfig, Param, ParamGroup, ParamGroupInput, ParamStepInfo, Projection, StateDict,
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
  /** A state with this state's step count and the given arrays (device state read back to the host). */
  stateWith(state: S, m: Float32Array, v: Float32Array): S;
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
  params: AnyParam[];
}

export abstract class Optimizer<O extends object, S, H, P extends AnyParam = Param> {
  /** The param groups with every hyperparameter resolved. Change them between steps (schedulers); they are validated at each step. */
  readonly paramGroups: ParamGroup<O, P>[] = [];
  /** The defaults new groups inherit. */
  readonly defaults: Required<O>;
  /** The backend running the step: `'js'`, `'native'` or `'cuda'`. */
  readonly backend: BackendName;

  private readonly algo: Algorithm<O, S, H>;
  private readonly engine: Engine;
  private readonly state = new Map<AnyParam, S>();
  /** Device params whose state lives on the device: the element count it was created for. */
  private readonly deviceNumel = new Map<AnyParam, number>();
  /** CUDA device of the device params (all share one), or of the context for host params. */
  private readonly device: number;
  private lastRuns: GroupRun[] = [];
  private lastParams: AnyParam[] = [];
  private lastInfo: ParamStepInfo[] | null = [];
  private busy = false;
  private disposed = false;

  protected constructor(
    algo: Algorithm<O, S, H>,
    params: readonly P[] | readonly ParamGroupInput<O, P>[],
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
    const groups: ParamGroupInput<O, P>[] = isGroupList(params)
      ? (params as readonly ParamGroupInput<O, P>[]).slice()
      : [{ params: (params as readonly P[]).slice() } as ParamGroupInput<O, P>];
    for (const g of groups) this.addParamGroupUnchecked(g);
    this.checkStructure();
    const onDevice = this.allParams().filter(isDeviceParam);
    const requested = config?.backend ?? 'auto';
    if (onDevice.length > 0 && requested !== 'auto' && requested !== 'cuda') {
      const i = this.allParams().indexOf(onDevice[0]);
      throw invalid(`${label(onDevice[0], i)} lives on the GPU (its data is a DeviceTensor), which backend '${requested}' cannot step; use backend 'cuda' or 'auto'`);
    }
    if (config?.stream !== undefined && typeof config.stream !== 'bigint') {
      throw invalid(`config.stream must be a cudaStream_t as a bigint, got ${describe(config.stream)}`);
    }
    if (config?.device !== undefined && (!Number.isSafeInteger(config.device) || config.device < 0)) {
      throw invalid(`config.device must be a non-negative integer, got ${describe(config.device)}`);
    }
    this.device = onDevice.length > 0 ? onDevice[0].data.device : config?.device ?? 0;
    if (onDevice.length > 0 && config?.device !== undefined && config.device !== this.device) {
      throw invalid(`config.device is ${config.device}, but the device params live on device ${this.device}`);
    }
    this.engine = createEngine(onDevice.length > 0 && requested === 'auto' ? 'cuda' : requested, {
      threads: config?.threads, kind: algo.kind, device: this.device, stream: config?.stream,
    });
    this.backend = this.engine.name;
    if (config?.stream !== undefined && this.backend !== 'cuda') {
      throw invalid(`config.stream is a CUDA stream, but this optimizer runs on the '${this.backend}' backend`);
    }
    this.checkPlacement();
  }

  /** Adds a param group (PyTorch `add_param_group`); missing options come from `defaults`. */
  addParamGroup(group: ParamGroupInput<O, P>): void {
    this.assertUsable();
    const before = this.paramGroups.length;
    this.addParamGroupUnchecked(group);
    try {
      this.checkStructure();
      this.checkPlacement();
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
        if (s !== undefined) state[index] = this.exportState(p, s);
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
    const flat: AnyParam[] = [];
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
    const indexToParam = new Map<number, AnyParam>();
    let k = 0;
    for (const g of paramGroups) for (const idx of g.params) indexToParam.set(idx, flat[k++]);
    const newState = new Map<AnyParam, S>();
    for (const key of Object.keys(state)) {
      const idx = Number(key);
      const p = indexToParam.get(idx);
      if (p === undefined) throw invalid(`stateDict.state has an entry for param index ${key}, which no group lists`);
      newState.set(p, this.algo.readState((state as Record<string, unknown>)[key], numelOf(p), `stateDict.state[${key}] (${label(p, idx)})`));
    }
    // Everything checked: apply.
    for (let gi = 0; gi < resolved.length; gi++) Object.assign(this.paramGroups[gi], resolved[gi]);
    this.state.clear();
    this.deviceNumel.clear();
    for (const [p, s] of newState) this.state.set(p, s);
    this.engine.invalidate?.(); // engines holding copies (cuda) re-read state at the next step
  }

  /**
   * CUDA: waits until every queued step has completed, and writes host params and their state
   * back into their Float32Arrays (the device holds them between steps). No-op on CPU backends.
   */
  synchronize(): void {
    this.assertIdle();
    this.engine.flush?.();
  }

  /**
   * CUDA: the stream steps are queued on (a `cudaStream_t` as a bigint): the optimizer's own, or
   * the one given in `config.stream` / `setStream()`. `null` on CPU backends.
   */
  get stream(): bigint | null {
    return this.engine.currentStream?.() ?? null;
  }

  /**
   * CUDA: queue the following steps on `stream` (a `cudaStream_t` as a bigint you own and keep
   * alive), e.g. the stream your backward pass runs on; `null` returns to the optimizer's own
   * stream. Steps queued before stay ordered before steps queued after.
   */
  setStream(stream: bigint | null): void {
    this.assertUsable();
    if (stream !== null && typeof stream !== 'bigint') throw invalid(`stream must be a cudaStream_t as a bigint, or null, got ${describe(stream)}`);
    if (!this.engine.setStream) throw invalid(`setStream() needs the CUDA backend; this optimizer runs on '${this.backend}'`);
    this.engine.setStream(stream);
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

  private addParamGroupUnchecked(group: ParamGroupInput<O, P>): void {
    const gi = this.paramGroups.length;
    if (group === null || typeof group !== 'object' || !Array.isArray(group.params)) {
      throw invalid(`paramGroups[${gi}] must be an object { params: Param[], ...options }, got ${describe(group)}`);
    }
    const { params, ...opts } = group;
    const resolved = this.algo.resolve(opts as unknown as Partial<O>, this.defaults, `paramGroups[${gi}]`);
    this.paramGroups.push({ ...resolved, params: params.slice() } as ParamGroup<O, P>);
  }

  private allParams(): AnyParam[] {
    const out: AnyParam[] = [];
    for (const g of this.paramGroups) out.push(...g.params);
    return out;
  }

  /** Device params need the CUDA backend, on the optimizer's device. */
  private checkPlacement(): void {
    let index = 0;
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        if (isDeviceParam(p)) {
          if (this.backend !== 'cuda') {
            throw invalid(`${label(p, index)} lives on the GPU (its data is a DeviceTensor), but this optimizer runs on the '${this.backend}' backend; create it with device params to get 'cuda'`);
          }
          if (p.data.device !== this.device) {
            throw invalid(`${label(p, index)} lives on device ${p.data.device}, but this optimizer steps device ${this.device}; one optimizer per device`);
          }
        }
        index++;
      }
    }
  }

  /** A copy of a param's state for stateDict(); device params' state comes from the device. */
  private exportState(p: AnyParam, s: S): S {
    if (!isDeviceParam(p)) return this.algo.copyState(s);
    const onDevice = this.engine.readDeviceState?.(p);
    if (onDevice) return this.algo.stateWith(s, onDevice.m, onDevice.v);
    const { m } = this.algo.slotArrays(s);
    if (m.length === p.data.numel) return this.algo.copyState(s); // loaded from a dict, not stepped since
    return this.algo.stateWith(s, new Float32Array(p.data.numel), new Float32Array(p.data.numel));
  }

  /** Params are well formed and none appears twice. */
  private checkStructure(): void {
    const seen = new Set<AnyParam>();
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
    const params: AnyParam[] = [];
    const datas = new Set<Float32Array | DeviceTensor>();
    const views: Array<{ view: DeviceView; index: number }> = [];
    for (let gi = 0; gi < this.paramGroups.length; gi++) {
      const group = this.paramGroups[gi];
      const resolved = this.algo.resolve(group as unknown as Partial<O>, null, `paramGroups[${gi}]`);
      hps.push(this.algo.scalars(resolved));
      for (const p of group.params) {
        const index = params.length;
        checkParamStatic(p, index);
        checkGrad(p, index);
        if (datas.has(p.data)) throw invalid(`data of ${label(p, index)} is the same ${p.data instanceof DeviceTensor ? 'DeviceTensor' : 'Float32Array'} as another param's`);
        datas.add(p.data);
        const numel = numelOf(p);
        if (isDeviceParam(p)) {
          if (this.backend !== 'cuda' || p.data.device !== this.device) this.checkPlacement();
          views.push({ view: p.data.view(), index });
        }
        const s = this.state.get(p);
        if (s !== undefined) {
          const { m, v } = this.algo.slotArrays(s);
          const onDevice = isDeviceParam(p) && m.length === 0; // state lives on the device
          if (!onDevice && (m.length !== numel || (v.length !== 0 && v.length !== numel))) {
            throw invalid(`data length of ${label(p, index)} changed from ${m.length} to ${numel} since its state was created`);
          }
          if (onDevice && this.deviceNumel.get(p) !== numel) {
            throw invalid(`data of ${label(p, index)} has ${numel} elements, its state on the device was created for ${this.deviceNumel.get(p)}`);
          }
        }
        params.push(p);
      }
    }
    checkDeviceAliasing(views, params);
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
            s = this.algo.newState(isDeviceParam(p) ? 0 : p.data.length); // device params: state is created on the device
            this.state.set(p, s);
            if (isDeviceParam(p)) this.deviceNumel.set(p, p.data.numel);
          }
          const { m, v, step } = this.algo.slotArrays(s);
          if (isDeviceParam(p)) {
            const g = p.grad;
            slots.push({
              p: EMPTY, g: g instanceof Float32Array ? g : EMPTY, m, v: v ?? EMPTY, step, ...geometry(p),
              device: { key: p, numel: p.data.numel, p: p.data.view(), g: g instanceof DeviceTensor ? g.view() : null },
            });
          } else {
            slots.push({ p: p.data, g: p.grad, m, v: v ?? EMPTY, step, ...geometry(p) });
          }
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
export function geometry(p: AnyParam): Pick<Slot, 'outer' | 'channels' | 'inner' | 'eligible'> {
  const shape = shapeOf(p);
  const numel = numelOf(p);
  const r = shape.length;
  if (r <= 1 || numel === 0) return { outer: 1, channels: 1, inner: numel, eligible: false };
  const axis = p.channelAxis === undefined ? 0 : p.channelAxis < 0 ? p.channelAxis + r : p.channelAxis;
  let outer = 1;
  for (let d = 0; d < axis; d++) outer *= shape[d];
  const channels = shape[axis];
  return { outer, channels, inner: numel / outer / channels, eligible: true };
}

/** No two device params share memory (sorted by address, each must end before the next begins). */
function checkDeviceAliasing(views: Array<{ view: DeviceView; index: number }>, params: AnyParam[]): void {
  const sorted = views.filter((x) => (params[x.index].data as DeviceTensor).extent > 0).sort((a, b) => (a.view.pointer < b.view.pointer ? -1 : a.view.pointer > b.view.pointer ? 1 : 0));
  for (let k = 1; k < sorted.length; k++) {
    const a = sorted[k - 1];
    const b = sorted[k];
    const ta = params[a.index].data as DeviceTensor;
    if (a.view.device === b.view.device && b.view.pointer < a.view.pointer + BigInt(ta.extent) * 4n) {
      throw invalid(`data of ${label(params[b.index], b.index)} overlaps the data of ${label(params[a.index], a.index)} in device memory; each param needs its own memory`);
    }
  }
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
