/**
 * The optimizer facade shared by every registered optimizer: param groups, validation, lazy
 * state, step orchestration, diagnostics and state dicts. What differs between optimizers comes
 * from their spec (lib/optim/); the arithmetic runs in an Engine.
 *
 * Order of a step: validate every group and every param (nothing is mutated before this passes),
 * build the engine's jobs (new state is made but not yet kept), run them, then commit: new state
 * is kept, step counts advance, diagnostics are published.
 */
import { AdampError, invalid } from './errors';
import { describe, label } from './core/describe';
import { Decision, Info, INFO_STRIDE } from './core/info';
import type { Engine, HalfSlot, StepJob, StepOptions, Slot, DeviceView } from './backends/engine';
import { createEngine, parseConfig } from './backends/select';
import { checkGrad, checkHostAliasing, checkParamStatic, dtypeOf, isDeviceParam, isFloat32Array, isHalfParam, numelOf, shapeOf, type HostArray } from './validate';
import { halfBits, halfNonFinite, halfToFloat32, roundingKey, widenFn, type HalfDtype, type StorageDtype } from './core/half';
import { DeviceTensor } from './device/tensor';
import { isPlainObject, rejectUnknown, resolveOptions } from './optim/options';
import type { OptimizerSpec } from './optim/spec';
import type {
  AnyParam, BackendName, HalfParam, OptimizerConfig, Param, ParamGroup, ParamGroupInput, ParamStepInfo, Projection, StateDict,
} from './types';

/**
 * The loss-scaled step (GradScaler, lib/amp/grad-scaler.ts): `optimizer[SCALED_STEP](invScale)`
 * checks every grad the step reads for Infinity/NaN first; if there is one, nothing changes and it
 * returns false (the skip); else it steps with every grad multiplied by `invScale` in float32 as it
 * is read, and returns true.
 */
export const SCALED_STEP: unique symbol = Symbol('adamp.scaledStep');

/**
 * The loss-scaled step with the scale on the device (GradScaler on the cuda backend):
 * `optimizer[DEVICE_SCALED_STEP]({ scale, found })` queues the check of every grad into the device
 * int at `found` and the step, which changes nothing when it is set; no host sync. Host step counts
 * and `lastStepSkipped` are brought up to date from the device when read (`settleDeviceSteps`).
 */
export const DEVICE_SCALED_STEP: unique symbol = Symbol('adamp.deviceScaledStep');
/**
 * GradScaler.unscale with the scale on the device (cuda backend): `optimizer[DEVICE_UNSCALE](grads,
 * { scale, found })` queues the check of the float32 device grads `grads` into the device int at
 * `found` (zeroed first) and their unscale in place by f32(1 / scale), on the stream this
 * optimizer's steps queue on; no host sync. The step that follows is `DEVICE_SCALED_STEP` with
 * `found` alone.
 */
export const DEVICE_UNSCALE: unique symbol = Symbol('adamp.deviceUnscale');
/** GradScaler skipped this optimizer's step without calling it (`unscale()` found Infinity/NaN on the host): `lastStepSkipped` says so. */
export const MARK_SKIPPED: unique symbol = Symbol('adamp.markSkipped');
/** Queues GradScaler's scale update on the device, on this optimizer's stream (cuda backend). */
export const DEVICE_SCALER_UPDATE: unique symbol = Symbol('adamp.deviceScalerUpdate');
/** The CUDA device ordinal an optimizer steps on (GradScaler allocates its device state there). */
export const DEVICE_ORDINAL: unique symbol = Symbol('adamp.deviceOrdinal');

const EMPTY = new Float32Array(0);
const PROJECTION: Readonly<Record<number, Projection>> = {
  [Decision.none]: 'none', [Decision.channel]: 'channel', [Decision.layer]: 'layer',
  [Decision.notEligible]: 'not_eligible', [Decision.notApplicable]: 'not_applicable',
};

/** A param's state as the facade keeps it: its step count and its spec's slots (empty arrays while they live on the device). */
interface ParamState {
  step: number;
  slots: Float32Array[];
  /** The param's storage type when the state was made. */
  dtype: StorageDtype;
  /** 16-bit params with master weights: the float32 master copy. */
  master?: Float32Array;
  /** A float32 grad unscaled for the step (scratch, not state; 16-bit params: the engine unscales). */
  gwork?: Float32Array;
}

interface GroupRun {
  /** Flat index of each slot's param. */
  indices: number[];
  info: Float64Array;
  /** The group's wdRatio at this step (projecting optimizers), for lastStepInfo. */
  wdRatio: number | undefined;
}

interface Plan {
  jobs: StepJob[];
  runs: GroupRun[];
  /** Flat index -> param, for every param of every group. */
  params: AnyParam[];
  /** Every param stepped, with its state (new ones are kept only when the step commits) and its element count. */
  stepped: Array<{ p: AnyParam; s: ParamState; fresh: boolean; numel: number; device: boolean }>;
  /** A loss-scaled step found a non-finite grad: nothing runs, nothing changes. */
  skipped: boolean;
}

export abstract class Optimizer<O extends object, S extends object, P extends AnyParam = Param> {
  /** The param groups with every hyperparameter resolved. Change them between steps (schedulers); they are validated at each step. */
  readonly paramGroups: ParamGroup<O, P>[] = [];
  /** The defaults new groups inherit. */
  readonly defaults: Required<O>;
  /** The backend running the step: `'js'`, `'native'` or `'cuda'`. */
  readonly backend: BackendName;
  /** The optimizer's spec: its name, options and state slots (lib/optim/). */
  readonly spec: OptimizerSpec<O, S>;

  private readonly engine: Engine;
  private readonly stepOptions: StepOptions;
  /** `config.masterWeights`: float32 master copies of 16-bit params. */
  readonly masterWeights: boolean;
  private readonly rounding: { stochastic: boolean; seed: number };
  private skippedLast = false;
  /** Device-scaled steps not yet read back: the last one's first tensor (its skip flag), and every stepped state with its slot key. */
  private pendingSkip: object | null = null;
  private unsettled = new Map<ParamState, { p: AnyParam; key: object }>();
  private readonly state = new Map<AnyParam, ParamState>();
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
    spec: OptimizerSpec<O, S>,
    params: readonly P[] | readonly ParamGroupInput<O, P>[],
    options: Partial<O> | undefined,
    config: OptimizerConfig | undefined,
  ) {
    this.spec = spec;
    const cfg = parseConfig(config);
    if (options !== undefined && !isPlainObject(options)) {
      throw invalid(`options must be a plain object of ${spec.name} options, got ${describe(options)}`);
    }
    this.defaults = resolveOptions(spec, options ?? {}, null, 'options', 'construct') as Required<O>;
    if (!Array.isArray(params)) throw invalid(`params must be an array of params or of param groups, got ${describe(params)}`);
    if (params.length === 0) throw invalid('params is an empty list: the optimizer has nothing to update');
    const groups: ParamGroupInput<O, P>[] = isGroupList(params)
      ? (params as readonly ParamGroupInput<O, P>[]).slice()
      : [{ params: (params as readonly P[]).slice() } as ParamGroupInput<O, P>];
    for (const g of groups) this.addParamGroupUnchecked(g);
    this.checkStructure();
    const onDevice = this.allParams().filter(isDeviceParam);
    const requested = cfg.backend;
    if (onDevice.length > 0 && requested !== 'auto' && requested !== 'cuda') {
      const i = this.allParams().indexOf(onDevice[0]);
      throw invalid(`${label(onDevice[0], i)} lives on the GPU (its data is a DeviceTensor), which backend '${requested}' cannot step; use backend 'cuda' or 'auto'`);
    }
    this.device = onDevice.length > 0 ? onDevice[0].data.device : cfg.device ?? 0;
    if (onDevice.length > 0 && cfg.device !== undefined && cfg.device !== this.device) {
      throw invalid(`config.device is ${cfg.device}, but the device params live on device ${this.device}`);
    }
    this.engine = createEngine(onDevice.length > 0 && requested === 'auto' ? 'cuda' : requested, {
      threads: cfg.threads, device: this.device, stream: cfg.stream,
    });
    this.backend = this.engine.name;
    if (cfg.stream !== undefined && this.backend !== 'cuda') {
      throw invalid(`config.stream is a CUDA stream, but this optimizer runs on the '${this.backend}' backend`);
    }
    this.stepOptions = { norms: cfg.diagnostics === 'full' };
    this.masterWeights = cfg.masterWeights;
    this.rounding = { stochastic: cfg.rounding === 'stochastic', seed: cfg.seed };
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
   * Performs one optimization step: every param with a gradient is updated in place. Throws
   * before changing anything when an input is invalid. With a `closure` (PyTorch's
   * `step(closure)`), calls it first (it recomputes the loss and the gradients) and returns
   * what it returned.
   */
  step(): void;
  step<L>(closure: () => L): L;
  step<L>(closure?: () => L): L | undefined {
    this.assertUsable();
    if (closure !== undefined && typeof closure !== 'function') throw invalid(`step(closure): closure must be a function, got ${describe(closure)}`);
    const loss = closure?.();
    const plan = this.plan(1, false);
    this.runJobs(plan.jobs);
    this.commit(plan);
    return loss;
  }

  /**
   * The loss-scaled step a `GradScaler` runs (not for direct use): every grad is checked for
   * Infinity/NaN first, in its storage type; if one is found the step is skipped (no param,
   * state or step count changes; `lastStepSkipped` is true) and false is returned. Otherwise the
   * step runs with each grad element read as `f32(g * invScale)`, and true is returned.
   */
  [SCALED_STEP](invScale: number): boolean {
    this.assertUsable();
    if (typeof invScale !== 'number' || !(invScale > 0) || !Number.isFinite(invScale)) {
      throw invalid(`invScale must be a finite number > 0, got ${describe(invScale)}`);
    }
    const plan = this.plan(Math.fround(invScale), true);
    if (plan.skipped) {
      this.skip();
      return false;
    }
    this.runJobs(plan.jobs);
    this.commit(plan);
    return true;
  }

  /** Whether the last step was skipped by loss scaling (a non-finite grad; see GradScaler). CUDA with the scale on the device: reads the device (waits). */
  get lastStepSkipped(): boolean {
    this.settleDeviceSteps();
    return this.skippedLast;
  }

  /** See DEVICE_SCALED_STEP. Without `dev.scale`: the grads were unscaled on the device already (DEVICE_UNSCALE set `found`). */
  [DEVICE_SCALED_STEP](dev: { scale?: bigint; found: bigint }): void {
    this.assertUsable();
    if (this.engine.stepScaled === undefined) throw new AdampError('ERR_ADAMP_UNSUPPORTED', `the '${this.backend}' backend keeps no loss scale on a device`);
    const plan = this.plan(1, false); // grads are read as they are; the kernels multiply by the device's 1 / scale
    this.engine.stepScaled(plan.jobs, this.stepOptions, dev, this.spec.kind);
    // Slot keys as the engine knows them (a host 16-bit param: its bits array).
    const keys = plan.jobs.flatMap((j) => j.slots.filter((sl) => (sl.device ? sl.device.numel : sl.half ? sl.half.p16.length : sl.p.length) > 0)
      .map((sl) => (sl.device ? sl.device.key : sl.half ? sl.half.p16 : sl.p)));
    const hostHalf = plan.jobs.some((j) => j.slots.some((sl) => sl.half !== undefined));
    if (hostHalf && keys.length > 0 && this.engine.lastSkipped!(keys[0])) {
      // host 16-bit params are rounded on the host from the device's values: the outcome is needed now (one sync)
      this.skip();
      return;
    }
    this.commit(plan); // step counts advanced here; settled from the device when read
    const slots = plan.jobs.flatMap((j) => j.slots); // in plan.stepped's order
    plan.stepped.forEach((st, i) => this.unsettled.set(st.s, { p: st.p, key: slots[i].device?.key ?? slots[i].half?.p16 ?? slots[i].p }));
    this.pendingSkip = keys.length > 0 ? keys[0] : null;
  }

  /** See DEVICE_UNSCALE. */
  [DEVICE_UNSCALE](grads: readonly DeviceTensor[], dev: { scale: bigint; found: bigint }): void {
    this.assertUsable();
    if (this.engine.unscaleGrads === undefined) throw new AdampError('ERR_ADAMP_UNSUPPORTED', `the '${this.backend}' backend keeps no loss scale on a device`);
    this.engine.unscaleGrads(grads.map((g) => g.view()), dev, this.spec.kind);
  }

  /** See MARK_SKIPPED. */
  [MARK_SKIPPED](): void {
    this.assertUsable();
    this.pendingSkip = null; // this skip is the last step; earlier device steps' counts still settle when read
    this.skip();
  }

  /** See DEVICE_ORDINAL. */
  get [DEVICE_ORDINAL](): number {
    return this.device;
  }

  /** See DEVICE_SCALER_UPDATE. */
  [DEVICE_SCALER_UPDATE](state: bigint, mask: number, hostFound: boolean, growth: number, backoff: number, interval: number): void {
    this.assertUsable();
    if (this.engine.scalerUpdate === undefined) throw new AdampError('ERR_ADAMP_UNSUPPORTED', `the '${this.backend}' backend keeps no loss scale on a device`);
    this.engine.scalerUpdate(state, mask, hostFound, growth, backoff, interval);
  }

  /**
   * After device-scaled steps the host's step counts assumed every step ran: read the device's
   * counts (a state whose count is 0 was never really stepped and is dropped, as after a skipped
   * first step on the host), and whether the last step was skipped. Waits for the device.
   */
  private settleDeviceSteps(): void {
    if (this.pendingSkip !== null) {
      const skipped = this.engine.lastSkipped!(this.pendingSkip);
      this.pendingSkip = null;
      if (skipped) this.skip();
    }
    if (this.unsettled.size === 0) return;
    const entries = [...this.unsettled];
    this.unsettled = new Map();
    const counts = this.engine.deviceSteps!(entries.map(([, v]) => v.key));
    entries.forEach(([s, { p }], i) => {
      const n = counts[i];
      if (n === undefined) return;
      s.step = n;
      if (n === 0 && this.state.get(p) === s) {
        this.state.delete(p);
        this.deviceNumel.delete(p);
      }
    });
  }

  /** A skipped step: nothing changed; diagnostics say so (every param `no_grad`). */
  private skip(): void {
    this.skippedLast = true;
    this.lastRuns = [];
    this.lastParams = this.allParams();
    this.lastInfo = null;
  }

  /**
   * Performs one step off the JavaScript thread (native backends) and resolves when it is done.
   * Until then, `step()`, `stepAsync()`, `zeroGrad()`, `stateDict()` and `loadStateDict()` throw
   * `ERR_ADAMP_STEP_IN_FLIGHT`, and the params' and state's buffers must not be modified.
   * Validation errors reject the promise before anything is changed.
   */
  async stepAsync(): Promise<void> {
    this.assertUsable();
    const plan = this.plan(1, false);
    if (!this.engine.stepAsync) {
      this.runJobs(plan.jobs);
      this.commit(plan);
      return;
    }
    this.busy = true;
    try {
      await this.engine.stepAsync(plan.jobs, this.stepOptions);
    } finally {
      this.busy = false;
    }
    this.commit(plan);
  }

  /**
   * Clears gradients. By default fills each gradient with zeros (the arrays stay, so code that
   * accumulates into them keeps working); `setToNull = true` sets them to `null` instead, which
   * skips those params at the next step, as PyTorch's `set_to_none`. Every gradient is checked
   * before any is cleared.
   */
  zeroGrad(setToNull = false): void {
    this.assertIdle();
    if (typeof setToNull !== 'boolean') throw invalid(`zeroGrad(setToNull): setToNull must be a boolean, got ${describe(setToNull)}`);
    const params = this.allParams();
    if (setToNull) {
      for (const p of params) p.grad = null;
      return;
    }
    // each grad read once: the one checked is the one cleared
    const grads = params.map((p, i) => {
      const q = readParam(p);
      checkGrad(q, i);
      return q.grad;
    });
    for (const g of grads) if (g) g.fill(0);
  }

  /** Per-param diagnostics of the last step, in order over all groups (empty before the first step). */
  get lastStepInfo(): readonly ParamStepInfo[] {
    this.settleDeviceSteps();
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
    this.settleDeviceSteps();
    const state: { [i: number]: S } = {};
    const paramGroups: StateDict<S, O>['paramGroups'] = [];
    let index = 0;
    for (const { group, params } of this.groups()) {
      const indices: number[] = [];
      for (const p of params) {
        const s = this.state.get(p);
        if (s !== undefined) state[index] = this.exportState(p, s);
        indices.push(index++);
      }
      const entry = { params: indices } as { params: number[] } & Required<O>;
      for (const o of this.spec.options) (entry as Record<string, unknown>)[o.key] = copyOption((group as Record<string, unknown>)[o.key]);
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
    this.settleDeviceSteps();
    const spec = this.spec;
    if (!isPlainObject(sd)) throw invalid(`stateDict must be an object { state, paramGroups }, got ${describe(sd)}`);
    rejectUnknown(sd, ['state', 'paramGroups'], 'stateDict', 'a state dict key', false);
    const { state, paramGroups } = sd as StateDict<S, O>;
    if (!Array.isArray(paramGroups)) throw invalid(`stateDict.paramGroups must be an array, got ${describe(paramGroups)}`);
    if (state === null || typeof state !== 'object' || Array.isArray(state)) throw invalid(`stateDict.state must be an object, got ${describe(state)}`);
    if (paramGroups.length !== this.paramGroups.length) {
      throw invalid(`stateDict has ${paramGroups.length} param groups, this optimizer has ${this.paramGroups.length}`);
    }
    const resolved: Record<string, unknown>[] = [];
    const flat: AnyParam[] = [];
    const seen = new Set<number>();
    const own = this.groups();
    const indexLists: unknown[][] = [];
    for (let gi = 0; gi < paramGroups.length; gi++) {
      const g = paramGroups[gi] as unknown;
      const where = `stateDict.paramGroups[${gi}]`;
      const list = isPlainObject(g) ? g.params : undefined;
      if (!isPlainObject(g) || !Array.isArray(list)) throw invalid(`${where} must be an object { params: number[], ...options }`);
      const indices = list.slice(); // read once: the indices checked are the ones mapped
      indexLists.push(indices);
      const mine = own[gi].params;
      if (indices.length !== mine.length) {
        throw invalid(`${where} has ${indices.length} params, this optimizer's group ${gi} has ${mine.length}`);
      }
      for (let j = 0; j < indices.length; j++) {
        const idx = indices[j];
        if (!Number.isSafeInteger(idx) || idx < 0 || seen.has(idx)) throw invalid(`${where}.params[${j}] must be a unique non-negative integer index, got ${describe(idx)}`);
        seen.add(idx);
      }
      const others = Object.keys(g).filter((k) => k !== 'params' && !spec.options.some((o) => o.key === k));
      if (others.length > 0) {
        throw invalid(`${where} has ${others.map((k) => `'${k}'`).join(', ')}, which ${spec.name} does not have; is this the state dict of another optimizer?`);
      }
      const opts: Record<string, unknown> = {};
      for (const o of spec.options) if (Object.prototype.hasOwnProperty.call(g, o.key)) opts[o.key] = g[o.key];
      resolved.push(resolveOptions(spec, opts, null, where, 'strict'));
      flat.push(...mine);
    }
    // Indices map to this optimizer's params in order over groups, as in PyTorch.
    const indexToParam = new Map<number, AnyParam>();
    let k = 0;
    for (const indices of indexLists) for (const idx of indices) indexToParam.set(idx as number, flat[k++]);
    const newState = new Map<AnyParam, ParamState>();
    for (const key of Object.keys(state)) {
      const idx = Number(key);
      const p = indexToParam.get(idx);
      if (!Number.isSafeInteger(idx) || p === undefined) throw invalid(`stateDict.state has an entry for param index ${key}, which no group lists`);
      newState.set(p, this.readState((state as Record<string, unknown>)[key], p, `stateDict.state[${key}] (${label(p, idx)})`));
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
    if (!isPlainObject(group)) throw invalid(`paramGroups[${gi}] must be an object { params: Param[], ...options }, got ${describe(group)}`);
    const { params, ...opts } = group; // read once
    if (!Array.isArray(params)) throw invalid(`paramGroups[${gi}] must be an object { params: Param[], ...options }, got params ${describe(params)}`);
    const resolved = resolveOptions(this.spec, opts, this.defaults, `paramGroups[${gi}]`, 'construct');
    this.paramGroups.push({ ...resolved, params: params.slice() } as unknown as ParamGroup<O, P>);
  }

  private allParams(): AnyParam[] {
    const out: AnyParam[] = [];
    for (const g of this.groups()) out.push(...g.params);
    return out;
  }

  /**
   * The param groups, each checked to be an object with a params array (users may change
   * paramGroups between steps), with that array copied: what is checked is what is used.
   */
  private groups(): Array<{ group: Record<string, unknown>; params: AnyParam[] }> {
    const out: Array<{ group: Record<string, unknown>; params: AnyParam[] }> = [];
    for (let gi = 0; gi < this.paramGroups.length; gi++) {
      const group = this.paramGroups[gi] as unknown;
      const params = isPlainObject(group) ? group.params : undefined;
      if (!isPlainObject(group) || !Array.isArray(params)) {
        throw invalid(`paramGroups[${gi}] must be an object { params: Param[], ...options }, got ${isPlainObject(group) ? `params ${describe(params)}` : describe(group)}`);
      }
      out.push({ group, params: params.slice() as AnyParam[] });
    }
    return out;
  }

  /** Device params need the CUDA backend, on the optimizer's device. */
  private checkPlacement(): void {
    let index = 0;
    for (const { params } of this.groups()) {
      for (const p of params) {
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

  /** The public form of a param's state (a copy); device params' state comes from the device. */
  private exportState(p: AnyParam, s: ParamState): S {
    let slots = s.slots;
    let deviceMaster: Float32Array | undefined;
    if (isDeviceParam(p)) {
      const onDevice = this.engine.readDeviceState?.(p);
      deviceMaster = onDevice?.[this.spec.slots.length]; // 16-bit device params: master weights after the slots
      if (onDevice) slots = onDevice;
      else if (slots.length === 0 || slots[0].length !== p.data.numel) slots = this.spec.slots.map(() => new Float32Array(p.data.numel));
    }
    const out: Record<string, unknown> = {};
    if (this.spec.hasStep) out.step = s.step;
    this.spec.slots.forEach((def, k) => { out[def.key] = slots[k].slice(); });
    if (s.dtype !== 'float32') out.dtype = s.dtype;
    if (s.master !== undefined) out.master = s.master.slice();
    if (deviceMaster !== undefined) out.master = deviceMaster;
    return out as S;
  }

  /** Validates a state dict entry and returns an owned copy. */
  private readState(raw: unknown, p: AnyParam, where: string): ParamState {
    const spec = this.spec;
    const numel = numelOf(p);
    const keys = [...(spec.hasStep ? ['step'] : []), ...spec.slots.map((d) => d.key)];
    if (!isPlainObject(raw)) throw invalid(`${where} must be an object { ${keys.join(', ')} }, got ${describe(raw)}`);
    rejectUnknown(raw, [...keys, 'dtype', 'master'], where, `a ${spec.name} state key`, false);
    const dtype = dtypeOf(p);
    const saved = raw.dtype === undefined ? 'float32' : raw.dtype;
    if (saved !== 'float32' && saved !== 'bfloat16' && saved !== 'float16') throw invalid(`${where}.dtype must be 'bfloat16' or 'float16' (absent for float32), got ${describe(raw.dtype)}`);
    if (saved !== dtype) {
      throw invalid(`${where} was saved for a ${saved} param, but this param is ${dtype}; a state is only loaded into a param of the same dtype (docs/mixed-precision.md#checkpoints)`);
    }
    const wantMaster = dtype !== 'float32' && this.masterWeights;
    if (wantMaster && raw.master === undefined) {
      throw invalid(`${where} has no master weights, but this optimizer keeps them for its ${dtype} params (config.masterWeights); it was saved with masterWeights: false`);
    }
    if (!wantMaster && raw.master !== undefined) {
      throw invalid(dtype === 'float32'
        ? `${where} has master weights, which a float32 param does not have`
        : `${where} has master weights, but this optimizer was created with masterWeights: false`);
    }
    const master = wantMaster ? stateArray(raw.master, numel, `${where}.master`) : undefined;
    let step = 1; // a state without a count (SGDP, SGD) has taken at least one step
    if (spec.hasStep) {
      if (!Number.isSafeInteger(raw.step) || (raw.step as number) < 0) throw invalid(`${where}.step must be a non-negative integer, got ${describe(raw.step)}`);
      step = raw.step as number;
    }
    const slots = spec.slots.map((d) => stateArray(raw[d.key], numel, `${where}.${d.key}`));
    return master === undefined ? { step, slots, dtype } : { step, slots, dtype, master };
  }

  /** Params are well formed and none appears twice. */
  private checkStructure(): void {
    const seen = new Set<AnyParam>();
    let index = 0;
    for (const { params } of this.groups()) {
      for (const p of params) {
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

  /**
   * Validates everything, then builds the engine's jobs. Changes nothing (beyond scratch arrays).
   * Every param's fields are read once (readParam): a getter (a store's live view) answering
   * differently later cannot put an array the checks did not see into a job. `scaled`: a
   * loss-scaled step; grads are checked for Infinity/NaN (then `skipped`, no jobs) and read as
   * `f32(g * invScale)`.
   */
  private plan(invScale: number, scaled: boolean): Plan {
    const spec = this.spec;
    const groups = this.groups();
    const resolvedGroups: Record<string, unknown>[] = [];
    const params: AnyParam[] = [];
    const reads: AnyParam[][] = [];
    const views: Array<{ view: DeviceView; index: number }> = [];
    const hostArrays: HostArray[] = [];
    for (let gi = 0; gi < groups.length; gi++) {
      const { params: _ps, ...opts } = groups[gi].group;
      resolvedGroups.push(resolveOptions(spec, opts, null, `paramGroups[${gi}]`, 'strict'));
      const read: AnyParam[] = [];
      for (const p of groups[gi].params) {
        const index = params.length;
        const q = readParam(p);
        checkParamStatic(q, index);
        checkGrad(q, index);
        const numel = numelOf(q);
        if (!isDeviceParam(q)) hostArrays.push({ a: q.data as ArrayBufferView, what: `data of ${label(q, index)}`, readOnly: false });
        if (q.grad && !(q.grad instanceof DeviceTensor)) hostArrays.push({ a: q.grad, what: `grad of ${label(q, index)}`, readOnly: true });
        if (scaled && q.grad instanceof DeviceTensor) {
          throw new AdampError('ERR_ADAMP_UNSUPPORTED', `grad of ${label(q, index)} is a DeviceTensor; loss scaling (GradScaler) of device grads is not supported yet (docs/mixed-precision.md)`);
        }
        if (isDeviceParam(q)) {
          if (this.backend !== 'cuda' || q.data.device !== this.device) this.checkPlacement();
          views.push({ view: q.data.view(), index });
        }
        const s = this.state.get(p);
        if (s !== undefined) {
          const onDevice = isDeviceParam(q) && s.slots.every((a) => a.length === 0); // state lives on the device
          if (!onDevice && s.slots.some((a) => a.length !== numel)) {
            throw invalid(`data length of ${label(q, index)} changed from ${s.slots[0].length} to ${numel} since its state was created`);
          }
          if (onDevice && this.deviceNumel.get(p) !== numel) {
            throw invalid(`data of ${label(q, index)} has ${numel} elements, its state on the device was created for ${this.deviceNumel.get(p)}`);
          }
          if (q.grad && s.step >= Number.MAX_SAFE_INTEGER) {
            throw invalid(`${label(q, index)} has taken ${s.step} steps, the most a step count can hold; load a state dict with a smaller count`);
          }
          if (s.dtype !== dtypeOf(q)) {
            throw invalid(`dtype of ${label(q, index)} changed from ${s.dtype} to ${dtypeOf(q)} since its state was created`);
          }
        }
        params.push(p);
        read.push(q);
      }
      reads.push(read);
    }
    checkHostAliasing(hostArrays);
    checkDeviceAliasing(views, reads.flat());
    // Nothing below throws on user input.
    const jobs: StepJob[] = [];
    const runs: GroupRun[] = [];
    const stepped: Plan['stepped'] = [];
    if (scaled && reads.flat().some((q) => q.grad && hasNonFinite(q))) return { jobs, runs, params: reads.flat(), stepped, skipped: true };
    let index = 0;
    for (let gi = 0; gi < groups.length; gi++) {
      const slots: Slot[] = [];
      const indices: number[] = [];
      const ps = groups[gi].params;
      for (let j = 0; j < ps.length; j++) {
        const p = ps[j];
        const q = reads[gi][j];
        if (q.grad) {
          const known = this.state.get(p);
          const numel = numelOf(q);
          // device params: new state is created on the device (empty arrays here)
          const s: ParamState = known ?? {
            step: 0, slots: spec.slots.map(() => (isDeviceParam(q) ? EMPTY : new Float32Array(numel))), dtype: dtypeOf(q),
          };
          stepped.push({ p, s, fresh: known === undefined, numel, device: isDeviceParam(q) });
          const base = { state: s.slots, step: s.step + 1, ...geometry(q) };
          if (isDeviceParam(q)) {
            const g = q.grad;
            const dtype = q.data.dtype;
            slots.push({
              p: EMPTY, g: g instanceof DeviceTensor ? EMPTY : stageHostGrad(s, g as Float32Array | Uint16Array, dtype, invScale), ...base,
              device: {
                key: p, numel, p: q.data.view(), g: g instanceof DeviceTensor ? g.view() : null,
                ...(dtype === 'float32' ? {} : {
                  half: {
                    master: this.masterWeights, ...(s.master !== undefined ? { loaded: s.master } : {}),
                    stochastic: this.rounding.stochastic && dtype === 'bfloat16', seed: this.rounding.seed >>> 0, index: index >>> 0,
                  },
                }),
              },
            });
          } else if (isHalfParam(q)) {
            slots.push({ ...this.halfSlot(q, s, index, invScale), ...base });
          } else {
            slots.push({ p: q.data as Float32Array, g: stageGrad(s, q.grad as Float32Array, invScale), ...base });
          }
          indices.push(index);
        }
        index++;
      }
      const info = new Float64Array(slots.length * INFO_STRIDE);
      const options = resolvedGroups[gi];
      runs.push({ indices, info, wdRatio: typeof options.wdRatio === 'number' ? options.wdRatio : undefined });
      if (slots.length > 0) {
        jobs.push({ spec, options, hyper: spec.wire(options as Required<O>), slots, info });
      }
    }
    return { jobs, runs, params: reads.flat(), stepped, skipped: false };
  }

  /**
   * A 16-bit param as the engine takes it (lib/backends/engine.ts HalfSlot): its bits, its grad's
   * bits (or its float32 grad), its master copy (made from the param's bits at its first step)
   * and how to read and round. The engine converts and rounds back itself.
   */
  private halfSlot(p: HalfParam, s: ParamState, index: number, invScale: number): Pick<Slot, 'p' | 'g' | 'half'> {
    const p16 = halfBits(p.data);
    const master = this.masterWeights ? (s.master ??= halfToFloat32(p16, p.dtype)) : undefined;
    const g = p.grad as Float32Array | Uint16Array;
    const g16 = isFloat32Array(g) ? null : halfBits(g);
    const half: HalfSlot = { dtype: p.dtype, p16, g16, master: master !== undefined };
    if (invScale !== 1) half.invScale = invScale; // as stageGrad: a product by 1 is skipped
    if (this.rounding.stochastic && p.dtype === 'bfloat16') half.key = roundingKey(this.rounding.seed, s.step + 1, index);
    return { p: master ?? EMPTY, g: g16 === null ? (g as Float32Array) : EMPTY, half };
  }

  /** Every group of the plan: as one step where the engine can (all or nothing across the groups), else one by one. */
  private runJobs(jobs: readonly StepJob[]): void {
    if (this.engine.stepAll !== undefined && jobs.length > 1) this.engine.stepAll(jobs, this.stepOptions);
    else for (const job of jobs) this.engine.step(job, this.stepOptions);
  }

  /** The step ran: keep new state, advance step counts, publish diagnostics (16-bit params were written by the engine). */
  private commit(plan: Plan): void {
    this.pendingSkip = null; // this step ran (a device-scaled step sets it again after)
    this.skippedLast = false;
    for (const { p, s, fresh, numel, device } of plan.stepped) {
      if (fresh) {
        this.state.set(p, s);
        if (device) this.deviceNumel.set(p, numel);
      }
      s.step += 1;
    }
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
      const { indices, info, wdRatio } = this.lastRuns[gi];
      for (let k = 0; k < indices.length; k++) {
        const o = k * INFO_STRIDE;
        const e = out[indices[k]];
        const code = info[o + Info.decision];
        e.projection = PROJECTION[code];
        e.channelMaxCos = nanToNull(info[o + Info.channelMaxCos]);
        e.channelThreshold = nanToNull(info[o + Info.channelThreshold]);
        e.layerCos = nanToNull(info[o + Info.layerCos]);
        e.layerThreshold = nanToNull(info[o + Info.layerThreshold]);
        e.wdRatio = (code === Decision.channel || code === Decision.layer) && wdRatio !== undefined ? wdRatio : 1;
        const after = info[o + Info.normSqAfter];
        if (Number.isNaN(after) && Number.isNaN(info[o + Info.deltaSq])) continue; // norms not asked for (diagnostics 'decisions')
        const before = Math.sqrt(info[o + Info.normSqBefore]);
        e.weightNorm = Math.sqrt(after);
        e.updateNorm = Math.sqrt(info[o + Info.deltaSq]);
        e.effectiveStepSize = before > 0 ? e.updateNorm / before : e.updateNorm > 0 ? Infinity : 0;
      }
    }
    return out;
  }
}

/** Whether a host param's grad holds an Infinity or a NaN (in its own storage type). */
function hasNonFinite(p: AnyParam): boolean {
  const g = p.grad;
  if (g === null || g instanceof DeviceTensor) return false;
  if (isFloat32Array(g)) {
    for (let i = 0; i < g.length; i++) if (!Number.isFinite(g[i])) return true;
    return false;
  }
  const dtype = dtypeOf(p) as HalfDtype;
  const bits = halfBits(g as Uint16Array);
  for (let i = 0; i < bits.length; i++) if (halfNonFinite(bits[i], dtype)) return true;
  return false;
}

/**
 * The float32 grad the engine reads for a float32 param: the grad itself (not scaled), or a
 * scratch array of `f32(g * invScale)`. (16-bit params' grads go to the engine as they are:
 * HalfSlot.)
 */
function stageGrad(s: ParamState, g: Float32Array, invScale: number): Float32Array {
  if (invScale === 1) return g;
  const n = g.length;
  if (s.gwork === undefined || s.gwork.length !== n) s.gwork = new Float32Array(n);
  const out = s.gwork;
  for (let i = 0; i < n; i++) out[i] = g[i] * invScale;
  return out;
}

/**
 * A device param's host grad as the float32 array the CUDA engine uploads: a float32 grad as
 * stageGrad gives it, a 16-bit one widened exactly (times invScale: `f32(f32(g) * invScale)`).
 */
function stageHostGrad(s: ParamState, g: Float32Array | Uint16Array, dtype: StorageDtype, invScale: number): Float32Array {
  if (isFloat32Array(g)) return stageGrad(s, g, invScale);
  const n = g.length;
  if (s.gwork === undefined || s.gwork.length !== n) s.gwork = new Float32Array(n);
  const out = s.gwork;
  const widen = widenFn(dtype as HalfDtype);
  if (invScale === 1) for (let i = 0; i < n; i++) out[i] = widen(g[i]);
  else for (let i = 0; i < n; i++) out[i] = widen(g[i]) * invScale;
  return out;
}

/**
 * A param's fields read once into a plain object (the shape copied), so checks and the step see
 * the same values whatever getters the param has; a non-object is returned as is (checks refuse it).
 */
function readParam(p: AnyParam): AnyParam {
  if (p === null || typeof p !== 'object') return p;
  const { name, data, grad, shape, channelAxis } = p;
  const dtype = (p as { dtype?: unknown }).dtype;
  const q = { name, data, grad, shape: Array.isArray(shape) ? shape.slice() : shape, channelAxis } as AnyParam;
  if (dtype !== undefined) (q as { dtype?: unknown }).dtype = dtype;
  return q;
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

/** A state tensor from a state dict: a Float32Array (from any realm) of the param's length, copied. */
export function stateArray(x: unknown, numel: number, where: string): Float32Array {
  if (!isFloat32Array(x)) {
    throw invalid(`${where} must be a Float32Array, got ${describe(x)}`);
  }
  const a = x as Float32Array;
  if (a.length !== numel) throw invalid(`${where} has length ${a.length}, the param has ${numel} elements`);
  return new Float32Array(a);
}

/** No two device params share memory (sorted by address, each must end before the next begins). */
function checkDeviceAliasing(views: Array<{ view: DeviceView; index: number }>, params: AnyParam[]): void {
  const sorted = views.filter((x) => (params[x.index].data as DeviceTensor).extent > 0).sort((a, b) => (a.view.pointer < b.view.pointer ? -1 : a.view.pointer > b.view.pointer ? 1 : 0));
  for (let k = 1; k < sorted.length; k++) {
    const a = sorted[k - 1];
    const b = sorted[k];
    const ta = params[a.index].data as DeviceTensor;
    if (a.view.device === b.view.device && b.view.pointer < a.view.pointer + BigInt(ta.extent * (ta.dtype === 'float32' ? 4 : 2))) {
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
