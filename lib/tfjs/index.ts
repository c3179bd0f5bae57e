/**
 * adamp's optimizers for TensorFlow.js (`import { AdamP, SGDP, AdamW, SGD } from 'adamp/tfjs'`),
 * one adapter class per registered optimizer.
 *
 * They extend `tf.train.Optimizer`, so they work in `model.compile({ optimizer })`,
 * `model.fit`, `optimizer.minimize` and `applyGradients`. The arithmetic is adamp's own: at
 * each step the weights and gradients are read into Float32Arrays, one step of the core
 * optimizer runs on them (same numerics, same projection decisions as the core API), and
 * the new weights are written back with `variable.assign`.
 *
 * note: channel view. TensorFlow.js keeps the OUTPUT channel on the LAST axis (dense kernels
 * `[in, out]`, conv2d kernels `[kh, kw, in, out]`), while the official code views a PyTorch
 * weight `[out, in, kh, kw]` as `out x rest`. So that the projection test and the projection
 * act per output channel as the paper intends, multi-dimensional weights use `channelAxis: -1`
 * by default. Pass `channelAxis` (a number or a function of the variable's name and shape)
 * for other layouts, e.g. `0` for embeddings `[vocab, dim]` to view them per token.
 */
import * as tf from '@tensorflow/tfjs-core';
// The native backend registers itself when imported: 'auto' then picks it, as in the core API.
import '../backends/native';
import { AdampError, invalid } from '../errors';
import { describe } from '../core/describe';
import type { Optimizer } from '../optimizer';
import { adampSpec, type AdamPOptions } from '../optim/adamp';
import { sgdpSpec, type SGDPOptions } from '../optim/sgdp';
import { adamwSpec, type AdamWOptions } from '../optim/adamw';
import { sgdSpec, type SGDOptions } from '../optim/sgd';
import { classOf } from '../optim/registry';
import type { OptimizerSpec } from '../optim/spec';
import type { BackendName, Param, ParamStepInfo, StateDict } from '../types';

/** Channel axis of the projection's channel view for each multi-dimensional variable. */
export type ChannelAxisRule = number | ((name: string, shape: readonly number[]) => number);

/** Options the TensorFlow.js optimizers add to the core hyperparameters. */
export interface TfjsExtraOptions {
  /**
   * Output-channel axis of the projection's channel view. Default `-1` (TensorFlow.js layouts:
   * dense `[in, out]`, conv `[kh, kw, in, out]`). A function receives each variable's name and
   * shape; only a number is saved by `getConfig()`.
   */
  channelAxis?: ChannelAxisRule;
  /** Which adamp backend computes the step: `'auto'` (default: native when the addon loads, else js), `'native'` or `'js'`. */
  backend?: 'auto' | 'js' | 'native';
  /** Threads of the native backend. */
  threads?: number;
  /** What `lastStepInfo` reports: `'decisions'` (default) or `'full'` (also norms and effective step sizes; see the core `OptimizerConfig`). */
  diagnostics?: 'decisions' | 'full';
}

export type TfjsAdamPOptions = AdamPOptions & TfjsExtraOptions;
export type TfjsSGDPOptions = SGDPOptions & TfjsExtraOptions;
export type TfjsAdamWOptions = AdamWOptions & TfjsExtraOptions;
export type TfjsSGDOptions = SGDOptions & TfjsExtraOptions;

/** What `getWeights()` returns and `setWeights()` takes (tfjs-core does not export the type from its root). */
export interface NamedTensor {
  name: string;
  tensor: tf.Tensor;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Core = Optimizer<any, any, Param>;
type AnyState = Record<string, unknown>;

interface Entry {
  name: string;
  param: Param;
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

/** The core optimizer of a spec over `params`. */
function makeCore(spec: OptimizerSpec<object, object>, params: Param[], hp: object, config: CoreConfig): Core {
  return new (classOf(spec) as unknown as new (p: Param[], o: object, c: object) => Core)(params, hp, config);
}

export abstract class AdampTfjsOptimizer<O extends object> extends tf.Optimizer {
  /**
   * The hyperparameters, resolved. Change them between steps (schedulers): each step copies
   * them into the core optimizer, which validates them.
   */
  readonly hyperparameters: Required<O>;
  /** The registered optimizer this adapter runs. */
  readonly spec: OptimizerSpec<O, object>;
  private readonly channelAxis: ChannelAxisRule;
  private readonly coreConfig: CoreConfig;
  private readonly entries: Entry[] = [];
  private readonly byName = new Map<string, Entry>();
  private core: Core | null = null;
  private pending: PendingState[] = [];
  private disposed = false;
  private readonly selectedBackend: BackendName;

  protected constructor(spec: OptimizerSpec<O, object>, options: O & TfjsExtraOptions) {
    super();
    if (options === null || typeof options !== 'object') throw invalid(`options must be an object, got ${describe(options)}`);
    const { channelAxis = -1, backend = 'auto', threads, diagnostics, ...hp } = options as TfjsExtraOptions & Record<string, unknown>;
    if (typeof channelAxis !== 'function' && !Number.isInteger(channelAxis)) {
      throw invalid(`options.channelAxis must be an integer or a function (name, shape) => axis, got ${describe(channelAxis)}`);
    }
    if (backend !== 'auto' && backend !== 'js' && backend !== 'native') {
      throw invalid(`options.backend must be 'auto', 'js' or 'native' for TensorFlow.js variables, got ${describe(backend)}`);
    }
    this.spec = spec;
    this.channelAxis = channelAxis;
    this.coreConfig = { backend, ...(threads !== undefined ? { threads } : {}), ...(diagnostics !== undefined ? { diagnostics } : {}) };
    // Resolve and validate the hyperparameters now (a throwaway core over a dummy param), so a bad option fails here.
    const probe = makeCore(spec as OptimizerSpec<object, object>, [{ data: new Float32Array(1), grad: null, shape: [1] }], hp, this.coreConfig);
    const { params: _unused, ...resolved } = probe.paramGroups[0] as unknown as Record<string, unknown>;
    this.selectedBackend = probe.backend;
    probe.dispose();
    this.hyperparameters = resolved as Required<O>;
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
   * norm, effective step size), named after the variables, in the order they were first seen.
   */
  get lastStepInfo(): readonly ParamStepInfo[] {
    return this.core?.lastStepInfo ?? [];
  }

  /** A PyTorch-style state dict of the core optimizer (param indices in first-seen variable order; names in `variableNames`). */
  stateDict(): StateDict<AnyState, Required<O>> {
    return (this.core?.stateDict() ?? { state: {}, paramGroups: [{ params: [], ...this.hyperparameters }] }) as StateDict<AnyState, Required<O>>;
  }

  /** The names of the variables this optimizer has updated, in first-seen order (the state dict's indices). */
  get variableNames(): string[] {
    return this.entries.map((e) => e.name);
  }

  override applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    if (this.disposed) throw new AdampError('ERR_ADAMP_DISPOSED', `this ${this.spec.name} optimizer was disposed; create a new one`);
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
      if (!tf.util.arraysEqual(tensor.shape, variable.shape)) {
        throw invalid(`gradient of '${name}' has shape [${tensor.shape.join(',')}], the variable has [${variable.shape.join(',')}]`);
      }
      work.push({ variable, grad: tensor, name });
    }
    const fresh = work.filter((w) => !this.byName.has(w.name));
    const newEntries = fresh.map((w) => this.makeEntry(w.name, w.variable.shape));
    const claims = this.claimPending(newEntries);
    if (newEntries.length > 0) this.grow(newEntries, claims);

    const core = this.core!;
    this.syncHyperparameters(core);
    for (const e of this.entries) e.param.grad = null;
    for (const w of work) {
      const e = this.byName.get(w.name)!;
      e.param.data.set(w.variable.dataSync() as Float32Array);
      e.param.grad = Float32Array.from(w.grad.dataSync() as Float32Array);
    }
    core.step();
    tf.tidy(() => {
      for (const w of work) {
        const e = this.byName.get(w.name)!;
        w.variable.assign(tf.tensor(e.param.data.slice(), w.variable.shape, 'float32'));
        e.param.grad = null;
      }
    });
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
   * for each state slot by its PyTorch name (exp_avg, exp_avg_sq; momentum; momentum_buffer)]`.
   * Variables that have not been stepped yet carry zeros.
   */
  override async getWeights(): Promise<NamedTensor[]> {
    const out: NamedTensor[] = [await this.saveIterations()];
    const sd = this.core ? this.core.stateDict() : { state: {} as Record<number, AnyState> };
    const spec = this.spec;
    this.entries.forEach((e, i) => {
      const s = (sd.state as Record<number, AnyState>)[i];
      const shape = e.param.shape as number[];
      if (spec.hasStep) out.push({ name: `${e.name}/step`, tensor: tf.scalar((s?.step as number | undefined) ?? 0, 'int32') });
      for (const d of spec.slots) {
        out.push({ name: `${e.name}/${d.torch}`, tensor: s ? tf.tensor(s[d.key] as Float32Array, shape, 'float32') : tf.zeros(shape) });
      }
    });
    return out;
  }

  /** The core optimizer this adapter steps (checkpoints use it: `saveCheckpoint(tfjsOptimizer)`), or null before the first step. */
  adampCore(): Core {
    if (this.core === null) throw invalid(`this ${this.spec.name} optimizer has not stepped yet: it has no variables to checkpoint`);
    return this.core;
  }

  /**
   * Restores what `getWeights()` returned (also through `model.save`/`tf.loadLayersModel` with
   * the optimizer included). Variables are matched by name, or else by position in first-seen
   * order (names change when a model is loaded twice in one process); shapes must match.
   * State for variables not seen yet is applied when they first appear.
   */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
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
      if (this.core) this.core.loadStateDict(this.buildStateDict(this.entries, claims, null));
    } catch (e) {
      this.pending = previous;
      for (const p of pending) p.claimed = false;
      throw e;
    }
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {};
    for (const [k, v] of Object.entries(this.hyperparameters)) {
      config[k] = Array.isArray(v) ? v.slice() : (v as tf.serialization.ConfigDictValue);
    }
    if (typeof this.channelAxis === 'number') config.channelAxis = this.channelAxis;
    if (this.coreConfig.backend !== 'auto') config.backend = this.coreConfig.backend;
    if (this.coreConfig.diagnostics !== undefined) config.diagnostics = this.coreConfig.diagnostics;
    return config;
  }

  // ---------------------------------------------------------------------------------------

  private makeEntry(name: string, shape: number[]): Entry {
    const param: Param = { name, data: new Float32Array(shape.reduce((a, b) => a * b, 1)), grad: null, shape: shape.slice() };
    if (shape.length > 1) {
      const axis = typeof this.channelAxis === 'function' ? this.channelAxis(name, shape) : this.channelAxis;
      if (!Number.isInteger(axis) || axis < -shape.length || axis >= shape.length) {
        throw invalid(`channelAxis for variable '${name}' of shape [${shape.join(',')}] must be an integer in [${-shape.length}, ${shape.length - 1}], got ${describe(axis)}`);
      }
      param.channelAxis = axis;
    }
    return { name, param };
  }

  /** Matches pending (setWeights) states to entries: by name, else by position; shapes must agree. */
  private claimPending(entries: readonly Entry[]): Map<Entry, PendingState> {
    const claims = new Map<Entry, PendingState>();
    const taken = new Set<PendingState>();
    for (const e of entries) {
      let p = this.pending.find((q) => !q.claimed && !taken.has(q) && q.name === e.name);
      if (!p && !this.pending.some((q) => q.name === e.name)) p = this.pending.find((q) => !q.claimed && !taken.has(q) && !this.byName.has(q.name) && !entries.some((x) => x.name === q.name));
      if (!p) continue;
      if (!tf.util.arraysEqual(p.shape, e.param.shape as number[])) {
        throw invalid(`optimizer weights '${p.name}' have shape [${p.shape.join(',')}] but variable '${e.name}' has [${e.param.shape.join(',')}]`);
      }
      claims.set(e, p);
      taken.add(p);
    }
    for (const p of taken) p.claimed = true;
    return claims;
  }

  /** The core's state dict over `entries`, with claimed pending states and `keep` (an old state dict) merged in. */
  private buildStateDict(entries: readonly Entry[], claims: Map<Entry, PendingState>, keep: { state: Record<number, AnyState> } | null) {
    const state: Record<number, AnyState> = {};
    entries.forEach((e, i) => {
      const claim = claims.get(e);
      if (claim) {
        if (claim.state) state[i] = claim.state;
      } else if (keep && keep.state[i] !== undefined) {
        state[i] = keep.state[i];
      }
    });
    return { state, paramGroups: [{ ...this.hyperparameters, params: entries.map((_, i) => i) }] } as never;
  }

  /** Rebuilds the core optimizer over all variables seen so far, keeping the state of the old ones. */
  private grow(newEntries: Entry[], claims: Map<Entry, PendingState>): void {
    const all = [...this.entries, ...newEntries];
    const next = makeCore(this.spec as OptimizerSpec<object, object>, all.map((e) => e.param), this.hyperparameters, this.coreConfig);
    try {
      const keep = this.core ? (this.core.stateDict() as unknown as { state: Record<number, AnyState> }) : null;
      next.loadStateDict(this.buildStateDict(all, claims, keep));
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
    const group = core.paramGroups[0] as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(this.hyperparameters)) group[k] = Array.isArray(v) ? v.slice() : v;
  }
}

function checkSameShape(w: NamedTensor, shape: number[]): void {
  if (!tf.util.arraysEqual(w.tensor.shape, shape)) {
    throw invalid(`setWeights: '${w.name}' has shape [${w.tensor.shape.join(',')}], expected [${shape.join(',')}]`);
  }
}

/** Options from a tfjs config: `tf.loadLayersModel` adds `customObjects`, which is not an option. */
function optionsFromConfig<O>(config: tf.serialization.ConfigDict): O & TfjsExtraOptions {
  const { customObjects: _ignored, ...rest } = config as Record<string, unknown>;
  return rest as O & TfjsExtraOptions;
}

type RequiredKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? never : K }[keyof T];

/** The adapter class of a registered optimizer (options are required when one of them is, as SGDP's and SGD's `lr`). */
export interface TfjsOptimizerClass<O extends object> {
  new (...options: [RequiredKeys<O>] extends [never] ? [options?: O & TfjsExtraOptions] : [options: O & TfjsExtraOptions]): AdampTfjsOptimizer<O>;
  /** The name TensorFlow.js serializes (`getClassName()`, model training configs). */
  readonly className: string;
  fromConfig<T extends tf.serialization.Serializable>(cls: tf.serialization.SerializableConstructor<T>, config: tf.serialization.ConfigDict): T;
}

function tfjsClass<O extends object>(spec: OptimizerSpec<O, object>): TfjsOptimizerClass<O> {
  const cls = class extends AdampTfjsOptimizer<O> {
    /** The name TensorFlow.js serializes (`getClassName()`, model training configs). */
    static get className(): string {
      return spec.name;
    }

    constructor(options?: O & TfjsExtraOptions) {
      super(spec, options ?? ({} as O & TfjsExtraOptions));
    }

    static override fromConfig<T extends tf.serialization.Serializable>(
      c: tf.serialization.SerializableConstructor<T>, config: tf.serialization.ConfigDict,
    ): T {
      return new (c as unknown as new (o: O & TfjsExtraOptions) => T)(optionsFromConfig<O>(config));
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
/** SGD (torch.optim.SGD's semantics; `lr` is required) as a TensorFlow.js optimizer. */
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
