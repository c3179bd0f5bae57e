/**
 * adamp's optimizers for TensorFlow.js (`import { AdamP, SGDP, AdamW, SGD } from 'adamp/tfjs'`),
 * one adapter class per registered optimizer. docs/tfjs.md is the user's guide.
 *
 * They extend `tf.Optimizer`, so they work in `model.compile({ optimizer })`, `model.fit`,
 * `optimizer.minimize` and `applyGradients`. The arithmetic is adamp's own (same numerics, same
 * projection decisions as the core API): at each step the core optimizer steps the variables'
 * values where the TensorFlow.js backend keeps them (tfjs-backend-cpu, tfjs-backend-wasm), or
 * copies read back with `dataSync()` and uploaded with `variable.assign` (other backends);
 * `./storage.ts` says when each applies. Node only: the core runs in this process.
 *
 * note: channel view. The projection's rows are chosen per variable from its layer type
 * (`./layout.ts`): the rows the official code uses for the same layer in PyTorch. The
 * `channelAxis` option overrides it.
 */
import * as tf from '@tensorflow/tfjs-core';
// The native backend registers itself when imported: 'auto' then picks it, as in the core API.
import '../backends/native';
import { AdampError, invalid } from '../errors';
import { describe } from '../core/describe';
import type { Optimizer } from '../optimizer';
import { isPlainObject } from '../optim/options';
import { adampSpec, type AdamPOptions } from '../optim/adamp';
import { sgdpSpec, type SGDPOptions } from '../optim/sgdp';
import { adamwSpec, type AdamWOptions } from '../optim/adamw';
import { sgdSpec, type SGDOptions } from '../optim/sgd';
import { classOf } from '../optim/registry';
import type { OptimizerSpec } from '../optim/spec';
import type { BackendName, Param, ParamStepInfo, StateDict } from '../types';
import { channelViewOf, checkChannelAxisRule, type ChannelAxisRule, type ChannelView } from './layout';
import { deserializeSelector, groupOf, resolveGroups, serializeSelector, type ResolvedGroup, type VariableGroup } from './groups';
import { stepTarget, type StepTarget } from './storage';

export { backends } from '../backends/select';
export type { BackendReport } from '../backends/select';
export { layerChannelView, weightKind } from './layout';
export type { ChannelAxisRule, ChannelView } from './layout';
export type { VariableGroup, VariableSelector, ResolvedGroup, SerializedSelector } from './groups';

/** Options the TensorFlow.js optimizers add to the core hyperparameters `O`. */
export interface TfjsExtraOptions<O = object> {
  /**
   * Channel axis of the projection's channel view for each multi-dimensional variable.
   * `'auto'` (default): by layer type, the rows the official code uses for the same layer in
   * PyTorch (docs/tfjs.md). A number: that axis for every variable (`-1`: the last axis). A
   * function `(name, shape) => axis | 'auto'` chooses per variable; `getConfig()` (model.save
   * with the optimizer) refuses it, as it cannot be saved.
   */
  channelAxis?: ChannelAxisRule;
  /**
   * Per-variable options: `[{ select: /bias|gamma|beta/, weightDecay: 0 }]`. `select` is a
   * RegExp tested on the variable's name or a predicate `(name, shape) => boolean`; the first
   * group that selects a variable gives it its options, the other variables use this
   * optimizer's. `getConfig()` saves RegExp selectors and refuses predicates.
   */
  groups?: VariableGroup<O>[];
  /** Which adamp backend computes the step: `'auto'` (default: native when the addon loads, else js), `'native'` or `'js'`. */
  backend?: 'auto' | 'js' | 'native';
  /** Threads of the native backend. */
  threads?: number;
  /** What `lastStepInfo` reports: `'decisions'` (default) or `'full'` (also norms and effective step sizes; see the core `OptimizerConfig`). */
  diagnostics?: 'decisions' | 'full';
  /**
   * Step the variables where the TensorFlow.js backend keeps them (tfjs-backend-cpu's arrays,
   * tfjs-backend-wasm's heap) when it can (default `true`); `false` always reads them back with
   * `dataSync()` and uploads the result, as on other backends. Results are identical.
   */
  inPlace?: boolean;
}

export type TfjsAdamPOptions = AdamPOptions & TfjsExtraOptions<AdamPOptions>;
export type TfjsSGDPOptions = SGDPOptions & TfjsExtraOptions<SGDPOptions>;
export type TfjsAdamWOptions = AdamWOptions & TfjsExtraOptions<AdamWOptions>;
export type TfjsSGDOptions = SGDOptions & TfjsExtraOptions<SGDOptions>;

/** What `getWeights()` returns and `setWeights()` takes (tfjs-core does not export the type from its root). */
export interface NamedTensor {
  name: string;
  tensor: tf.Tensor;
}

/** Something naming a registered `tf.Variable`: the variable, or a tfjs-layers `LayerVariable` (`model.trainableWeights`). */
export interface VariableLike {
  name: string;
}

/** How a variable was stepped: on tfjs-backend-cpu's arrays, on tfjs-backend-wasm's heap, or through copies. */
export type StoragePath = 'cpu' | 'wasm' | 'copy';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Core = Optimizer<any, any, Param>;
type AnyState = Record<string, unknown>;

interface Entry {
  name: string;
  /** The variable's shape (getWeights/setWeights tensors). */
  shape: number[];
  /** What the core sees: the channel view's shape and axis; `data` is a placeholder between steps. */
  param: Param;
  view: ChannelView;
  /** Index of the core's param group: 0 for the defaults, k + 1 for `groups[k]`. */
  group: number;
  /** The right length, never written (its pages stay untouched): `param.data` between steps. */
  placeholder: Float32Array;
}

interface PendingState {
  name: string;
  shape: number[];
  state: AnyState | null;
  claimed: boolean;
}

/** The weights `getWeights()` writes per variable: `step` (when the optimizer counts steps), then its state slots by PyTorch name. */
function suffixesOf(spec: OptimizerSpec<object, object>): string[] {
  return [...(spec.hasStep ? ['step'] : []), ...spec.slots.map((d) => d.torch)];
}

interface CoreConfig {
  backend: 'auto' | 'js' | 'native';
  threads?: number;
  diagnostics?: 'decisions' | 'full';
}

/** The core optimizer of a spec over param groups. */
function makeCore(spec: OptimizerSpec<object, object>, groups: Array<{ params: Param[] } & Record<string, unknown>>, hp: object, config: CoreConfig): Core {
  return new (classOf(spec) as unknown as new (p: unknown[], o: object, c: object) => Core)(groups, hp, config);
}

function notSerializable(what: string, how: string): AdampError {
  return invalid(`getConfig: ${what} is a function, which a TensorFlow.js config cannot hold (model.save with includeOptimizer ` +
    `saves getConfig()); ${how}, or save the model without the optimizer (includeOptimizer: false) and keep its state with saveCheckpoint`);
}

export abstract class AdampTfjsOptimizer<O extends object> extends tf.Optimizer {
  /**
   * The hyperparameters, resolved. Change them between steps (schedulers): each step copies
   * them into the core optimizer, which validates them. Groups' own options take precedence.
   */
  readonly hyperparameters: Required<O>;
  /** The registered optimizer this adapter runs. */
  readonly spec: OptimizerSpec<O, object>;
  /** The per-variable groups (`options.groups`), checked; their `options` may be changed between steps. */
  readonly groups: readonly ResolvedGroup<O>[];
  /**
   * The options of each core param group, as LR schedulers drive them (`new StepLR(optimizer,
   * ...)` sees every group): `hyperparameters`, then one view per entry of `groups`. A view reads
   * an option from the group's own options when the group sets it, else from `hyperparameters`;
   * writing an option sets it in the group's options.
   */
  readonly paramGroups: readonly Record<string, unknown>[];
  private readonly channelAxis: ChannelAxisRule;
  private readonly coreConfig: CoreConfig;
  private readonly inPlace: boolean;
  private readonly entries: Entry[] = [];
  private readonly byName = new Map<string, Entry>();
  private core: Core | null = null;
  private pending: PendingState[] = [];
  private disposed = false;
  private readonly selectedBackend: BackendName;
  private paths: Record<string, StoragePath> = {};

  protected constructor(spec: OptimizerSpec<O, object>, options: O & TfjsExtraOptions<O>) {
    super();
    if (!isPlainObject(options)) throw invalid(`options must be a plain object, got ${describe(options)}`);
    const { channelAxis = 'auto', groups, backend = 'auto', threads, diagnostics, inPlace = true, ...hp } = options as TfjsExtraOptions<O> & Record<string, unknown>;
    this.channelAxis = checkChannelAxisRule(channelAxis);
    if (backend !== 'auto' && backend !== 'js' && backend !== 'native') {
      throw invalid(`options.backend must be 'auto', 'js' or 'native' for TensorFlow.js variables, got ${describe(backend)}`);
    }
    if (typeof inPlace !== 'boolean') throw invalid(`options.inPlace must be a boolean, got ${describe(inPlace)}`);
    this.spec = spec;
    this.inPlace = inPlace;
    this.coreConfig = { backend, ...(threads !== undefined ? { threads } : {}), ...(diagnostics !== undefined ? { diagnostics } : {}) };
    // Resolve and validate the hyperparameters now (a throwaway core over a dummy param), so a bad option fails here.
    const probe = makeCore(spec as OptimizerSpec<object, object>, [{ params: [{ data: new Float32Array(1), grad: null, shape: [1] }] }], hp, this.coreConfig);
    const { params: _unused, ...resolved } = probe.paramGroups[0] as unknown as Record<string, unknown>;
    this.selectedBackend = probe.backend;
    probe.dispose();
    this.hyperparameters = resolved as Required<O>;
    this.groups = resolveGroups<O>(spec, groups, resolved);
    this.paramGroups = [resolved, ...this.groups.map((g) => groupView(spec as OptimizerSpec<object, object>, g.options as Record<string, unknown>, resolved))];
  }

  /** Alias of `hyperparameters.lr`, the name TensorFlow.js optimizers use. */
  get learningRate(): number {
    return (this.hyperparameters as unknown as { lr: number }).lr;
  }
  set learningRate(lr: number) {
    (this.hyperparameters as unknown as { lr: number }).lr = lr;
  }

  /** The adamp backend running the steps: `'native'` (the C++ core) or `'js'`. */
  get backend(): BackendName {
    return this.core?.backend ?? this.selectedBackend;
  }

  /**
   * Per-variable diagnostics of the last step (projection decision, cosines, thresholds, weight
   * norm, effective step size), named after the variables, in `variableNames` order.
   */
  get lastStepInfo(): readonly ParamStepInfo[] {
    return this.core?.lastStepInfo ?? [];
  }

  /** How each variable of the last step was stepped: `'cpu'` or `'wasm'` (on the backend's storage) or `'copy'`. */
  get lastStepPaths(): Readonly<Record<string, StoragePath>> {
    return this.paths;
  }

  /** A PyTorch-style state dict of the core optimizer (param indices in `variableNames` order; one param group per `groups` entry after the defaults). */
  stateDict(): StateDict<AnyState, Required<O>> {
    return (this.core?.stateDict() ?? { state: {}, paramGroups: [{ params: [], ...this.hyperparameters }] }) as StateDict<AnyState, Required<O>>;
  }

  /**
   * The names of the variables this optimizer knows, in the order of the core optimizer's params
   * (the state dict's and checkpoints' indices): the variables no group selects, then those of
   * `groups[0]`, `groups[1]`..., each in the order they were first seen.
   */
  get variableNames(): string[] {
    return this.coreOrder().map((e) => e.name);
  }

  /** The channel view of every variable known, in first-seen order: the shape and axis the projection uses, and why. */
  get channelViews(): Array<{ name: string; shape: number[]; view: ChannelView }> {
    return this.entries.map((e) => ({ name: e.name, shape: e.shape.slice(), view: { ...e.view, shape: e.view.shape.slice() } }));
  }

  /**
   * Makes these variables known before the first step (in this order; ones already known are
   * skipped), so a checkpoint can be loaded into a fresh optimizer: `opt.attach(model.trainableWeights)`
   * then `loadCheckpoint(path, opt)`. `applyGradients` attaches the variables it has not seen.
   */
  attach(variables: readonly (VariableLike | tf.Variable)[]): void {
    this.assertUsable();
    if (!Array.isArray(variables)) throw invalid(`attach(variables): variables must be an array of tf.Variable or LayerVariable, got ${describe(variables)}`);
    const registered = tf.engine().registeredVariables;
    const fresh: Array<{ name: string; shape: number[] }> = [];
    variables.forEach((x, i) => {
      const name = (x as VariableLike | null)?.name;
      if (typeof name !== 'string') throw invalid(`attach(variables): variables[${i}] must be a tf.Variable or a LayerVariable, got ${describe(x)}`);
      const v = registered[name];
      if (v === undefined) throw invalid(`attach(variables): '${name}' is not a registered tf.Variable (was it disposed?)`);
      if (v.dtype !== 'float32') throw invalid(`variable '${name}' has dtype ${v.dtype}; adamp optimizes float32 variables`);
      if (!this.byName.has(name) && !fresh.some((f) => f.name === name)) fresh.push({ name, shape: v.shape.slice() });
    });
    this.ensureEntries(fresh);
  }

  override applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    this.assertUsable();
    const list: Array<{ name: string; tensor: tf.Tensor | null | undefined }> = Array.isArray(variableGradients)
      ? variableGradients.map((v) => ({ name: v.name, tensor: v.tensor }))
      : Object.keys(variableGradients).map((name) => ({ name, tensor: variableGradients[name] }));
    const registered = tf.engine().registeredVariables;

    // Check everything before changing anything.
    const work: Array<{ variable: tf.Variable; grad: tf.Tensor; name: string }> = [];
    const seen = new Set<string>();
    for (const { name, tensor } of list) {
      if (seen.has(name)) throw invalid(`variable '${name}' appears twice in the gradients`);
      seen.add(name);
      const variable = registered[name];
      if (variable === undefined) throw invalid(`gradient for '${name}', which is not a registered tf.Variable (was it disposed?)`);
      if (tensor === null || tensor === undefined) continue;
      if (variable.dtype !== 'float32') throw invalid(`variable '${name}' has dtype ${variable.dtype}; adamp optimizes float32 variables`);
      if (!(tensor instanceof tf.Tensor) || tensor.isDisposed) throw invalid(`gradient for '${name}' must be a live tf.Tensor, got ${describe(tensor)}`);
      if (!tf.util.arraysEqual(tensor.shape, variable.shape)) {
        throw invalid(`gradient of '${name}' has shape [${tensor.shape.join(',')}], the variable has [${variable.shape.join(',')}]`);
      }
      work.push({ variable, grad: tensor, name });
    }
    this.ensureEntries(work.filter((w) => !this.byName.has(w.name)).map((w) => ({ name: w.name, shape: w.variable.shape.slice() })));
    const core = this.core;
    if (core === null) { // nothing to step (an empty or all-null list before any variable was seen)
      this.incrementIterations();
      return;
    }
    this.syncHyperparameters(core);

    // Reads that may allocate on the TensorFlow.js backend happen here (storage.ts); from the
    // first open() to the commits nothing does, so the wasm heap views stay attached.
    const targets: Array<{ e: Entry; t: StepTarget }> = work.map((w) => ({ e: this.byName.get(w.name)!, t: stepTarget(w.variable, w.grad, this.inPlace) }));
    for (const { e, t } of targets) {
      t.open();
      e.param.data = t.p!;
      e.param.grad = t.g;
    }
    try {
      core.step(); // validates everything before it writes anything
      for (const { e } of targets) {
        if (e.param.data.length !== e.placeholder.length) throw new Error(`adamp/tfjs: the storage of '${e.name}' was detached during the step (internal error)`);
      }
    } finally {
      for (const { e } of targets) {
        e.param.data = e.placeholder;
        e.param.grad = null;
      }
    }
    const paths: Record<string, StoragePath> = {};
    // On the backend's storage first (the wasm commits allocate nothing the views need), then the uploads.
    for (const { e, t } of targets) if (t.path !== 'copy') { t.commit(); paths[e.name] = t.path; }
    for (const { e, t } of targets) if (t.path === 'copy') { t.commit(); paths[e.name] = t.path; }
    this.paths = paths;
    this.incrementIterations();
  }

  override dispose(): void {
    this.disposed = true;
    this.core?.dispose();
    this.core = null;
    super.dispose();
  }

  /**
   * `[iter, then per variable in first-seen order: <name>/step (AdamP, AdamW), then <name>/<slot>
   * for each state slot by its PyTorch name (exp_avg, exp_avg_sq; momentum; momentum_buffer)]`,
   * then the state `setWeights()` restored for variables not seen since, in the order it came.
   * Variables that have not been stepped yet carry zeros.
   */
  override async getWeights(): Promise<NamedTensor[]> {
    this.assertUsable();
    const out: NamedTensor[] = [await this.saveIterations()];
    const sd = this.core ? this.core.stateDict() : { state: {} as Record<number, AnyState> };
    const index = new Map(this.coreOrder().map((e, i) => [e, i]));
    const write = (name: string, shape: number[], s: AnyState | undefined | null) => {
      if (this.spec.hasStep) out.push({ name: `${name}/step`, tensor: tf.scalar((s?.step as number | undefined) ?? 0, 'int32') });
      for (const d of this.spec.slots) {
        out.push({ name: `${name}/${d.torch}`, tensor: s ? tf.tensor(s[d.key] as Float32Array, shape, 'float32') : tf.zeros(shape) });
      }
    };
    for (const e of this.entries) write(e.name, e.shape, (sd.state as Record<number, AnyState>)[index.get(e)!]);
    for (const p of this.pending) if (!p.claimed) write(p.name, p.shape, p.state);
    return out;
  }

  /**
   * The core optimizer this adapter steps (checkpoints use it: `saveCheckpoint(path, tfjsOptimizer)`).
   * Its params' data are copies of the variables' current values (`{ params: true }` saves
   * them); writing them does not change the variables. Throws before any variable is known
   * (step once, or `attach(model.trainableWeights)`).
   */
  adampCore(): Core {
    this.assertUsable();
    if (this.core === null) {
      throw invalid(`this ${this.spec.name} optimizer knows no variables yet: step once, or call attach(model.trainableWeights) before loading or saving a checkpoint`);
    }
    const registered = tf.engine().registeredVariables;
    for (const e of this.entries) {
      const v = registered[e.name];
      if (v === undefined) throw invalid(`variable '${e.name}' of this optimizer was disposed`);
      const values = v.dataSync();
      e.param.data = values instanceof Float32Array ? values.slice() : Float32Array.from(values as ArrayLike<number>);
    }
    return this.core;
  }

  /**
   * Restores what `getWeights()` returned (also through `model.save`/`tf.loadLayersModel` with
   * the optimizer included). Variables are matched by name, or else by position in first-seen
   * order (names change when a model is loaded twice in one process); shapes must match.
   * State for variables not seen yet is applied when they first appear, and `getWeights()`
   * writes it back until then.
   */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    this.assertUsable();
    if (!Array.isArray(weightValues) || weightValues.length === 0) throw invalid('setWeights expects the array getWeights() returned, starting with the iteration count');
    const rest = await this.extractIterations(weightValues);
    const spec = this.spec;
    const suffixes = suffixesOf(spec as OptimizerSpec<object, object>);
    const pending: PendingState[] = [];
    for (let k = 0; k < rest.length; k += suffixes.length) {
      const group = rest.slice(k, k + suffixes.length);
      const base = group[0]?.name?.slice(0, group[0].name.lastIndexOf('/')) ?? '';
      for (let j = 0; j < suffixes.length; j++) {
        const w = group[j];
        if (!w || w.name !== `${base}/${suffixes[j]}`) {
          throw invalid(`setWeights: expected '${base}/${suffixes[j]}' at position ${k + j + 1}, got ${w ? `'${w.name}'` : 'nothing'} ` +
            `(${this.spec.name} weights are [iter, then per variable ${suffixes.map((s) => `<name>/${s}`).join(', ')}])`);
        }
      }
      const shape = group[suffixes.length - 1].tensor.shape;
      let state: AnyState | null = {};
      const first = spec.hasStep ? 1 : 0;
      if (spec.hasStep) {
        const step = (await group[0].tensor.data())[0];
        if (!Number.isSafeInteger(step) || step < 0) throw invalid(`setWeights: '${group[0].name}' must be a non-negative integer, got ${step}`);
        if (step === 0) state = null;
        else state.step = step;
      }
      for (const w of group.slice(first)) checkSameShape(w, shape);
      if (state !== null) {
        for (let j = 0; j < spec.slots.length; j++) state[spec.slots[j].key] = Float32Array.from(await group[first + j].tensor.data() as Float32Array);
      }
      pending.push({ name: base, shape, state, claimed: false });
    }
    const previous = this.pending;
    this.pending = pending;
    try {
      const claims = this.claimPending(this.entries);
      if (this.core) this.core.loadStateDict(this.buildStateDict(this.coreOrder(), claims, null));
    } catch (e) {
      this.pending = previous;
      for (const p of pending) p.claimed = false;
      throw e;
    }
  }

  /**
   * The options as a TensorFlow.js config (what `model.save` stores with the optimizer):
   * every hyperparameter, `channelAxis`, `groups` (RegExp selectors as `{ regexp, flags }`, see
   * `SerializedSelector`), and `backend`, `threads`, `diagnostics`, `inPlace` when set. Options
   * that are functions (a `channelAxis` function, a predicate `select`) cannot be saved: it
   * throws `ERR_ADAMP_INVALID_ARGUMENT` saying which.
   */
  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {};
    for (const [k, v] of Object.entries(this.hyperparameters)) config[k] = copyValue(v) as tf.serialization.ConfigDictValue;
    if (typeof this.channelAxis === 'function') {
      throw notSerializable('options.channelAxis', "use a number or 'auto' (the default chooses by layer type), or a RegExp group per layout");
    }
    config.channelAxis = this.channelAxis;
    if (this.groups.length > 0) {
      config.groups = this.groups.map((g, k) => {
        if (!(g.select instanceof RegExp)) throw notSerializable(`options.groups[${k}].select`, 'select the variables with a RegExp on their names instead');
        const out: tf.serialization.ConfigDict = { select: serializeSelector(g.select) as unknown as tf.serialization.ConfigDict };
        for (const [key, v] of Object.entries(g.options)) if (v !== undefined) out[key] = copyValue(v) as tf.serialization.ConfigDictValue;
        return out;
      });
    }
    if (this.coreConfig.backend !== 'auto') config.backend = this.coreConfig.backend;
    if (this.coreConfig.threads !== undefined) config.threads = this.coreConfig.threads;
    if (this.coreConfig.diagnostics !== undefined) config.diagnostics = this.coreConfig.diagnostics;
    if (!this.inPlace) config.inPlace = false;
    return config;
  }

  // ---------------------------------------------------------------------------------------

  private assertUsable(): void {
    if (this.disposed) throw new AdampError('ERR_ADAMP_DISPOSED', `this ${this.spec.name} optimizer was disposed; create a new one`);
  }

  private makeEntry(name: string, shape: number[]): Entry {
    const view = channelViewOf(this.channelAxis, name, shape);
    const numel = shape.reduce((a, b) => a * b, 1);
    const placeholder = new Float32Array(numel);
    const param: Param = { name, data: placeholder, grad: null, shape: view.shape, ...(view.channelAxis !== undefined ? { channelAxis: view.channelAxis } : {}) };
    return { name, shape: shape.slice(), param, view, group: groupOf(this.groups, name, shape) + 1, placeholder };
  }

  /** The entries in the core's param order: by group, first-seen within a group. */
  private coreOrder(entries: readonly Entry[] = this.entries): Entry[] {
    return entries.slice().sort((a, b) => a.group - b.group); // stable
  }

  /** Adds entries for variables not known yet and rebuilds the core over all of them. */
  private ensureEntries(vars: ReadonlyArray<{ name: string; shape: number[] }>): void {
    if (vars.length === 0) return;
    const newEntries = vars.map((v) => this.makeEntry(v.name, v.shape));
    const claims = this.claimPending(newEntries);
    this.grow(newEntries, claims);
  }

  /** Matches pending (setWeights) states to entries: by name, else by position; shapes must agree. */
  private claimPending(entries: readonly Entry[]): Map<Entry, PendingState> {
    const claims = new Map<Entry, PendingState>();
    const taken = new Set<PendingState>();
    for (const e of entries) {
      let p = this.pending.find((q) => !q.claimed && !taken.has(q) && q.name === e.name);
      if (!p && !this.pending.some((q) => q.name === e.name)) p = this.pending.find((q) => !q.claimed && !taken.has(q) && !this.byName.has(q.name) && !entries.some((x) => x.name === q.name));
      if (!p) continue;
      if (!tf.util.arraysEqual(p.shape, e.shape)) {
        throw invalid(`optimizer weights '${p.name}' have shape [${p.shape.join(',')}] but variable '${e.name}' has [${e.shape.join(',')}]`);
      }
      claims.set(e, p);
      taken.add(p);
    }
    for (const p of taken) p.claimed = true;
    return claims;
  }

  /** The core's state dict over `ordered` (core order), with claimed pending states and `keep` (state by entry) merged in. */
  private buildStateDict(ordered: readonly Entry[], claims: Map<Entry, PendingState>, keep: Map<Entry, AnyState> | null) {
    const state: Record<number, AnyState> = {};
    ordered.forEach((e, i) => {
      const claim = claims.get(e);
      if (claim) {
        if (claim.state) state[i] = claim.state;
      } else if (keep && keep.has(e)) {
        state[i] = keep.get(e)!;
      }
    });
    const paramGroups = this.groupOptions().map((options, g) => ({
      ...options, params: ordered.map((e, i) => (e.group === g ? i : -1)).filter((i) => i >= 0),
    }));
    return { state, paramGroups } as never;
  }

  /** Each core group's options: the hyperparameters, then each group's overrides. */
  private groupOptions(): Record<string, unknown>[] {
    const base = this.hyperparameters as unknown as Record<string, unknown>;
    const copy = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined).map(([k, v]) => [k, copyValue(v)]));
    return [copy(base), ...this.groups.map((g) => ({ ...copy(base), ...copy(g.options as Record<string, unknown>) }))];
  }

  /** Rebuilds the core optimizer over all variables seen so far, keeping the state of the old ones. */
  private grow(newEntries: Entry[], claims: Map<Entry, PendingState>): void {
    const all = [...this.entries, ...newEntries];
    const ordered = this.coreOrder(all);
    const options = this.groupOptions();
    const next = makeCore(this.spec as OptimizerSpec<object, object>,
      options.map((o, g) => ({ ...o, params: ordered.filter((e) => e.group === g).map((e) => e.param) })), this.hyperparameters, this.coreConfig);
    try {
      let keep: Map<Entry, AnyState> | null = null;
      if (this.core) {
        const old = (this.core.stateDict() as unknown as { state: Record<number, AnyState> }).state;
        keep = new Map();
        this.coreOrder().forEach((e, i) => { if (old[i] !== undefined) keep!.set(e, old[i]); });
      }
      next.loadStateDict(this.buildStateDict(ordered, claims, keep));
    } catch (e) {
      next.dispose();
      for (const p of claims.values()) p.claimed = false;
      throw e;
    }
    this.core?.dispose();
    this.core = next;
    for (const e of newEntries) {
      this.entries.push(e);
      this.byName.set(e.name, e);
    }
  }

  private syncHyperparameters(core: Core): void {
    const options = this.groupOptions();
    core.paramGroups.forEach((group, g) => Object.assign(group as unknown as Record<string, unknown>, options[g]));
  }
}

/** A group's options as a full option set: its own where it sets them, else the optimizer's (live). */
function groupView(spec: OptimizerSpec<object, object>, own: Record<string, unknown>, base: Record<string, unknown>): Record<string, unknown> {
  const view: Record<string, unknown> = {};
  for (const o of spec.options) {
    Object.defineProperty(view, o.key, {
      enumerable: true, configurable: true,
      get: () => (own[o.key] !== undefined ? own[o.key] : base[o.key]),
      set: (v: unknown) => { own[o.key] = v; },
    });
  }
  return view;
}

function copyValue<T>(v: T): T {
  return (Array.isArray(v) ? v.slice() : v) as T;
}

function checkSameShape(w: NamedTensor, shape: number[]): void {
  if (!tf.util.arraysEqual(w.tensor.shape, shape)) {
    throw invalid(`setWeights: '${w.name}' has shape [${w.tensor.shape.join(',')}], expected [${shape.join(',')}]`);
  }
}

/**
 * Options from a tfjs config (`getConfig()` output, possibly through `model.save` and
 * `tf.loadLayersModel`, which adds `customObjects`, not an option): saved RegExp selectors
 * become RegExps again.
 */
function optionsFromConfig<O>(config: tf.serialization.ConfigDict): O & TfjsExtraOptions<O> {
  const { customObjects: _ignored, ...rest } = config as Record<string, unknown>;
  if (Array.isArray(rest.groups)) {
    rest.groups = rest.groups.map((g: unknown, k: number) =>
      (isPlainObject(g) ? { ...g, select: deserializeSelector(g.select, `config.groups[${k}].select`) } : g));
  }
  return rest as O & TfjsExtraOptions<O>;
}

type RequiredKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? never : K }[keyof T];

/** The adapter class of a registered optimizer (options are required when one of them is, as SGDP's and SGD's `lr`). */
export interface TfjsOptimizerClass<O extends object> {
  new (...options: [RequiredKeys<O>] extends [never] ? [options?: O & TfjsExtraOptions<O>] : [options: O & TfjsExtraOptions<O>]): AdampTfjsOptimizer<O>;
  /** The name TensorFlow.js serializes (`getClassName()`, model training configs). */
  readonly className: string;
  fromConfig<T extends tf.serialization.Serializable>(cls: tf.serialization.SerializableConstructor<T>, config: tf.serialization.ConfigDict): T;
}

/**
 * The class names tfjs-core registers for its own optimizers. An adapter whose optimizer has one
 * of these names (SGD) serializes as `adamp.<name>`: under the plain name, a saved model would
 * reload with tfjs's optimizer instead.
 */
const TFJS_OPTIMIZER_NAMES = ['Adadelta', 'Adagrad', 'Adam', 'Adamax', 'Momentum', 'RMSProp', 'SGD'];

/** The name an adapter class serializes as: its optimizer's name (`AdamP`), or `adamp.SGD` where tfjs-core has the name. */
export function tfjsClassName(spec: OptimizerSpec<object, object>): string {
  return TFJS_OPTIMIZER_NAMES.includes(spec.name) ? `adamp.${spec.name}` : spec.name;
}

function tfjsClass<O extends object>(spec: OptimizerSpec<O, object>): TfjsOptimizerClass<O> {
  const className = tfjsClassName(spec as OptimizerSpec<object, object>);
  const cls = class extends AdampTfjsOptimizer<O> {
    /** The name TensorFlow.js serializes (`getClassName()`, model training configs). */
    static get className(): string {
      return className;
    }

    constructor(options?: O & TfjsExtraOptions<O>) {
      super(spec, options ?? ({} as O & TfjsExtraOptions<O>));
    }

    static override fromConfig<T extends tf.serialization.Serializable>(
      c: tf.serialization.SerializableConstructor<T>, config: tf.serialization.ConfigDict,
    ): T {
      return new (c as unknown as new (o: O & TfjsExtraOptions<O>) => T)(optionsFromConfig<O>(config));
    }
  };
  Object.defineProperty(cls, 'name', { value: spec.name });
  return cls as unknown as TfjsOptimizerClass<O>;
}

/**
 * AdamP as a TensorFlow.js optimizer.
 *
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import { AdamP } from 'adamp/tfjs';
 * model.compile({ optimizer: new AdamP({ lr: 1e-3, weightDecay: 1e-2 }), loss: 'meanSquaredError' });
 * await model.fit(xs, ys, { epochs: 10 });
 * ```
 */
export const AdamP = tfjsClass(adampSpec);
export type AdamP = AdampTfjsOptimizer<AdamPOptions>;
/** SGDP as a TensorFlow.js optimizer (`lr` is required): `new SGDP({ lr: 0.1, momentum: 0.9, nesterov: true })`. */
export const SGDP = tfjsClass(sgdpSpec);
export type SGDP = AdampTfjsOptimizer<SGDPOptions>;
/** AdamW (torch.optim.AdamW's semantics) as a TensorFlow.js optimizer. */
export const AdamW = tfjsClass(adamwSpec);
export type AdamW = AdampTfjsOptimizer<AdamWOptions>;
/** SGD (torch.optim.SGD's semantics; `lr` is required) as a TensorFlow.js optimizer; it serializes as `adamp.SGD` (tfjs-core's own SGD is `SGD`). */
export const SGD = tfjsClass(sgdSpec);
export type SGD = AdampTfjsOptimizer<SGDOptions>;

/**
 * Registers the classes with `tf.serialization` so a saved model's training config reloads
 * (`tf.loadLayersModel` recreates the optimizer). Runs on import; safe to call again (a class
 * name already registered, e.g. by a second copy of this module, is left as it is).
 */
export function registerOptimizers(): void {
  const map = tf.serialization.SerializationMap.getMap().classNameMap;
  for (const cls of [AdamP, SGDP, AdamW, SGD] as unknown as TfjsOptimizerClass<object>[]) {
    if (map[cls.className] === undefined) tf.serialization.registerClass(cls as unknown as tf.serialization.SerializableConstructor<tf.serialization.Serializable>);
  }
}

registerOptimizers();

/** A tfjs-layers callback (`model.fit({ callbacks })`) stepping an LR scheduler of `adamp` after every batch or epoch. */
export { schedulerCallback } from '../schedulers/callback';
export type { SchedulerCallback, SchedulerCallbackOptions } from '../schedulers/callback';
