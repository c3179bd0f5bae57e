/**
 * The sharded step (ZeRO-1 for AdamP, SGDP, AdamW and SGD; docs/distributed.md): every rank holds
 * every param (a data-parallel replica) but the optimizer state of its own range of the flat space
 * only (./partition.ts), and updates only that range. A step runs the step protocol
 * (docs/architecture.md) on each rank's pieces, with collectives where the protocol folds:
 *
 *   begin    all-gather of a small record: every rank's inputs valid, same step, same params with
 *            gradients, same hyperparameters (else every rank throws, nothing changed anywhere)
 *   stats    pass 1 on this rank's pieces (projecting optimizers, tensors of ndim > 1)
 *   partials all-gather of the partial records ('slices'), folded in rank order = unit order by
 *            `decide` on every rank: the decision is the single-process one, bit for bit
 *   apply    pass 2 on this rank's pieces, into staging copies of its state and params
 *   params   all-gather of the updated ranges into a staging copy of every param (optional)
 *   end      the final agreement: every rank's vote, with the norm partials (or info records) of
 *            its pieces; a rank commits (state, params, step counts, diagnostics) only when every
 *            rank voted to commit
 *
 * Params, state and `lastStepInfo` are bit-identical to the single-process optimizer on the same
 * backend, for any world size and either partitioning (test/distributed.test.ts).
 */
import { AdampError, invalid } from '../errors';
import { describe, label } from '../core/describe';
import { Decision, Info, INFO_STRIDE } from '../core/info';
import type { Engine, Geometry, ShardJob, StepOptions, StepProtocol } from '../backends/engine';
import { createEngine } from '../backends/select';
import { geometry, stateArray } from '../optimizer';
import { checkGrad, checkHostAliasing, checkParamStatic, isDeviceParam, isFloat32Array, type HostArray } from '../validate';
import { isPlainObject, rejectUnknown, resolveOptions } from '../optim/options';
import type { AnySpec, OptimizerSpec } from '../optim/spec';
import type { Param, ParamGroup, ParamGroupInput, ParamStepInfo, Projection, StateDict } from '../types';
import { checkTimeout, CollectiveError, rankList, type CallSite, type Collective } from './collective';
import { ownedCounts, partition, type PartitionPlan, type Partitioning, type Piece, type TensorPlacement } from './partition';

const PROJECTION: Readonly<Record<number, Projection>> = {
  [Decision.none]: 'none', [Decision.channel]: 'channel', [Decision.layer]: 'layer',
  [Decision.notEligible]: 'not_eligible', [Decision.notApplicable]: 'not_applicable',
};

/** Doubles per unit of the protocol's norm partials (lib/backends/engine.ts `apply`). */
const NORMS_PER_UNIT = 3;
/** Doubles of the begin record. */
const BEGIN = 8;

export interface ShardedConfig {
  /** The group the optimizer's ranks form (every rank passes its own handle of the same group). */
  collective: Collective;
  /** `'slices'` (default): contiguous runs of units, cut anywhere; `'tensors'`: whole tensors per rank. */
  partition?: Partitioning;
  /** The backend of the protocol: `'auto'` (native when the addon loads, else js), `'js'` or `'native'`. Every rank must use the same. */
  backend?: 'auto' | 'js' | 'native';
  /** As `OptimizerConfig.diagnostics`: `'full'` also exchanges the norm partials for `lastStepInfo`'s norms. */
  diagnostics?: 'decisions' | 'full';
  /**
   * All-gather the updated params into every rank's params at each step (default true). With
   * `false`, a rank's params hold its own range updated and the rest as they were, until
   * `gatherParams()` (ZeRO's "gather before the forward pass").
   */
  gatherParams?: boolean;
  /**
   * Two-phase commit (default true): the step writes staging copies of this rank's state and params,
   * committed only after the final agreement. `false` updates in place (no copy, less memory) and a
   * failed step leaves this optimizer unusable.
   */
  staging?: boolean;
  /** Overrides the collective's deadline for this optimizer's calls (milliseconds). */
  timeoutMs?: number;
}

/** An optimizer class of the registry (`AdamP`) or its spec. */
type SpecSource<O extends object, S extends object> = OptimizerSpec<O, S> | { readonly spec: OptimizerSpec<O, S> };

/** A param's state on this rank: its step count (every rank) and its piece of each slot. */
interface ShardState {
  step: number;
  /** The committed slots over [piece.begin, piece.end) (empty arrays when this rank holds no piece). */
  slots: Float32Array[];
  /** Staging copies of the slots (two-phase commit). */
  staged: Float32Array[] | null;
}

/** One param with a gradient in a step. */
interface Item {
  index: number;
  group: number;
  p: Param;
  g: Float32Array;
  geo: Geometry;
  place: TensorPlacement;
  /** This rank's piece, or null. */
  piece: Piece | null;
  state: ShardState;
  fresh: boolean;
  job: ShardJob | null;
  /** One pass (no stats, no decide: no partials). */
  onePass: boolean;
  options: Readonly<Record<string, unknown>>;
  hyper: Float64Array;
  partials: Float64Array | null;
  decision: Float64Array | null;
  norms: Float64Array | null;
  /** The staged piece of the param (or a view of the param itself without staging). */
  stagedP: Float32Array | null;
}

/** A data-parallel optimizer whose state is sharded over the ranks of a collective (ZeRO-1). */
export class ShardedOptimizer<O extends object = Record<string, unknown>, S extends object = Record<string, unknown>> {
  readonly spec: AnySpec;
  readonly paramGroups: ParamGroup<O, Param>[] = [];
  readonly defaults: Required<O>;
  readonly collective: Collective;
  readonly rank: number;
  readonly size: number;
  /** The backend running the protocol: 'js' or 'native'. */
  readonly backend: 'js' | 'native';
  readonly partitioning: Partitioning;
  /** Who owns what (the same on every rank). */
  readonly plan: PartitionPlan;
  readonly gathersParams: boolean;
  readonly staging: boolean;

  private readonly engine: Engine;
  private readonly protocol: StepProtocol;
  private readonly norms: boolean;
  private readonly timeoutMs: number | undefined;
  private readonly params: Param[] = [];
  private readonly groupOf: number[] = [];
  private readonly state = new Map<number, ShardState>();
  /** Lengths of each piece's partial record, per tensor (learnt at its first step). */
  private readonly partialLengths = new Map<number, number[]>();
  private readonly stagedP = new Map<number, Float32Array>();
  private flatStage: Float32Array | null = null;
  private flatSend: Float32Array | null = null;
  private steps = 0;
  private lastItems: Item[] = [];
  private lastInfo: Float64Array = new Float64Array(0);
  private lastInfoView: ParamStepInfo[] | null = [];
  private failed: AdampError | null = null;
  private disposed = false;

  constructor(optimizer: SpecSource<O, S>, params: readonly Param[] | readonly ParamGroupInput<O, Param>[], options: Partial<O> | undefined, config: ShardedConfig) {
    const spec = ((optimizer as { spec?: AnySpec }).spec ?? optimizer) as AnySpec;
    if (spec === undefined || typeof (spec as AnySpec).kind !== 'string' || !Array.isArray((spec as AnySpec).slots)) {
      throw invalid(`ShardedOptimizer: the first argument must be an optimizer class (AdamP, SGDP, AdamW, SGD) or its spec, got ${describe(optimizer)}`);
    }
    this.spec = spec;
    if (!isPlainObject(config)) throw invalid(`ShardedOptimizer: config must be an object { collective, partition?, backend?, ... }, got ${describe(config)}`);
    rejectUnknown(config, ['collective', 'partition', 'backend', 'diagnostics', 'gatherParams', 'staging', 'timeoutMs'], 'config', 'a config key', false);
    const c = config.collective;
    if (c === null || typeof c !== 'object' || typeof c.allGather !== 'function' || !Number.isSafeInteger(c.rank) || !Number.isSafeInteger(c.size)) {
      throw invalid(`config.collective must be a Collective (mpiCollective(), InProcessGroup.join(), new SoloCollective()), got ${describe(c)}`);
    }
    this.collective = c;
    this.rank = c.rank;
    this.size = c.size;
    this.partitioning = config.partition ?? 'slices';
    if (this.partitioning !== 'slices' && this.partitioning !== 'tensors') throw invalid(`config.partition must be 'slices' or 'tensors', got ${describe(config.partition)}`);
    const backend = config.backend ?? 'auto';
    if (backend !== 'auto' && backend !== 'js' && backend !== 'native') throw invalid(`config.backend must be 'auto', 'js' or 'native' (a sharded step runs the protocol on the host), got ${describe(backend)}`);
    if (config.diagnostics !== undefined && config.diagnostics !== 'decisions' && config.diagnostics !== 'full') throw invalid(`config.diagnostics must be 'decisions' or 'full', got ${describe(config.diagnostics)}`);
    for (const k of ['gatherParams', 'staging'] as const) {
      if (config[k] !== undefined && typeof config[k] !== 'boolean') throw invalid(`config.${k} must be a boolean, got ${describe(config[k])}`);
    }
    this.timeoutMs = config.timeoutMs === undefined ? undefined : checkTimeout(config.timeoutMs, 'config.timeoutMs');
    this.norms = config.diagnostics === 'full';
    this.gathersParams = config.gatherParams ?? true;
    this.staging = config.staging ?? true;
    this.engine = createEngine(backend === 'auto' ? autoBackend() : backend, {});
    if (!this.engine.protocol) throw invalid(`backend '${this.engine.name}' has no step protocol`);
    this.protocol = this.engine.protocol;
    this.backend = this.engine.name as 'js' | 'native';

    if (options !== undefined && !isPlainObject(options)) throw invalid(`options must be a plain object of ${spec.name} options, got ${describe(options)}`);
    this.defaults = resolveOptions(spec, options ?? {}, null, 'options', 'construct') as Required<O>;
    if (!Array.isArray(params) || params.length === 0) throw invalid('params must be a non-empty array of params or of param groups');
    const first = params[0] as unknown;
    const isGroups = first !== null && typeof first === 'object' && 'params' in (first as object) && !('data' in (first as object));
    const groups = isGroups ? (params as readonly ParamGroupInput<O, Param>[]) : [{ params: params as Param[] } as ParamGroupInput<O, Param>];
    groups.forEach((g, gi) => {
      if (!isPlainObject(g) || !Array.isArray(g.params)) throw invalid(`paramGroups[${gi}] must be an object { params: Param[], ...options }, got ${describe(g)}`);
      const { params: ps, ...opts } = g;
      const resolved = resolveOptions(spec, opts, this.defaults, `paramGroups[${gi}]`, 'construct');
      this.paramGroups.push({ ...resolved, params: ps.slice() } as unknown as ParamGroup<O, Param>);
    });
    const seen = new Set<Param>();
    const units: number[][] = [];
    for (let gi = 0; gi < this.paramGroups.length; gi++) {
      for (const p of this.paramGroups[gi].params) {
        const i = this.params.length;
        checkParamStatic(p, i);
        if (isDeviceParam(p as never)) throw invalid(`${label(p, i)} lives on the GPU; a sharded step runs on host params (device params need the NCCL collective and the CUDA protocol: docs/distributed.md#nccl)`);
        if (seen.has(p)) throw invalid(`${label(p, i)} appears more than once across param groups`);
        seen.add(p);
        this.params.push(p);
        this.groupOf.push(gi);
        units.push(this.protocol.units(spec, geometryOf(p)));
      }
    }
    this.plan = partition(units, this.size, this.partitioning);
    this.handshake();
  }

  /** The number of steps committed. */
  get stepCount(): number {
    return this.steps;
  }

  /**
   * One sharded step of every param with a gradient (collective: every rank calls it). Throws
   * before changing anything when any rank's inputs are invalid or the ranks disagree; throws
   * `ERR_ADAMP_COLLECTIVE_TIMEOUT` when a rank does not reach a collective in time, and then no
   * rank commits the step (unless the failure hit the final agreement: `inDoubt`).
   */
  step(): void;
  step<L>(closure: () => L): L;
  step<L>(closure?: () => L): L | undefined {
    this.assertUsable();
    const loss = closure?.();
    const s = this.steps + 1;
    let local: Error | null = null;
    let items: Item[] = [];
    let hashes = [0, 0, 0, 0];
    try {
      ({ items, hashes } = this.prepare());
    } catch (e) {
      local = e as Error;
    }
    // begin: everyone valid, same step, same params with gradients, same hyperparameters
    const rec = new Float64Array(BEGIN);
    rec[0] = local === null ? 1 : 0;
    rec[1] = this.steps;
    rec.set(hashes, 2);
    const all = new Float64Array(BEGIN * this.size);
    this.collect(() => this.collective.allGather(rec, all, null, this.at(s, 'begin')));
    const refused = this.ranks((r) => all[r * BEGIN] === 0);
    if (refused.length > 0) {
      if (local !== null) throw local;
      throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `step ${s} refused on every rank: the inputs of ${rankList(refused)} failed validation (see the error there); nothing changed on any rank`,
        { rank: this.rank, step: s, phase: 'begin', missing: refused });
    }
    this.agree(all, 1, 1, s, 'the ranks are at different steps (step counts', 'a rank missed a step or loaded another checkpoint');
    this.agree(all, 2, 2, s, 'the ranks have gradients for different params', 'every rank must have a gradient for the same params (average them with averageGradients)');
    this.agree(all, 4, 2, s, 'the ranks have different hyperparameters', 'change them on every rank alike (schedulers included)');

    // compute, with the collectives every rank makes whatever happens locally
    let fault: Error | null = null;
    const guard = (f: () => void) => {
      if (fault !== null) return;
      try { f(); } catch (e) { fault = e as Error; }
    };
    guard(() => this.stats(items));
    const learnt = this.exchangeLengths(items, s, guard);
    let flat: Float32Array | null = null;
    const info = new Float64Array(items.length * INFO_STRIDE);
    try {
      if (this.partitioning === 'slices') this.exchangePartials(items, s, guard);
      guard(() => this.decideAndApply(items));
      if (this.gathersParams) flat = this.gatherUpdated(items, s, guard);
      this.end(items, s, guard, () => fault, info);
    } catch (e) {
      // lengths announced by a rank that failed may be wrong: learn them again at the next step
      for (const i of learnt) this.partialLengths.delete(i);
      // without staging, this rank's state and params were updated in place: they cannot be trusted
      if (!this.staging && this.failed === null) this.failed = e instanceof AdampError ? e : new AdampError('ERR_ADAMP_COLLECTIVE', (e as Error).message);
      throw e;
    }
    // every rank voted to commit
    this.commit(items, flat);
    this.lastItems = items;
    this.lastInfo = info;
    this.lastInfoView = null;
    return loss;
  }

  /** All-gathers every rank's range of the params into every rank's params (collective). For `gatherParams: false`. */
  gatherParams(): void {
    this.assertUsable();
    const flat = this.flatBuffer();
    const send = new Float32Array(this.plan.cuts[this.rank + 1] - this.plan.cuts[this.rank]);
    this.fillOwned(send, () => null);
    this.collect(() => this.collective.allGather(send, flat, ownedCounts(this.plan), this.at(this.steps, 'gather params')));
    for (const t of this.plan.tensors) this.params[t.index].data.set(flat.subarray(t.flat, t.flat + t.numel));
  }

  /** As `Optimizer.zeroGrad`. */
  zeroGrad(setToNull = false): void {
    if (typeof setToNull !== 'boolean') throw invalid(`zeroGrad(setToNull): setToNull must be a boolean, got ${describe(setToNull)}`);
    this.params.forEach((p, i) => { if (!setToNull) checkGrad(p, i); });
    for (const p of this.params) {
      if (setToNull) p.grad = null;
      else if (p.grad) p.grad.fill(0);
    }
  }

  /** Per-param diagnostics of the last step, the same on every rank and as the single-process optimizer's. */
  get lastStepInfo(): readonly ParamStepInfo[] {
    if (this.lastInfoView === null) this.lastInfoView = this.materializeInfo();
    return this.lastInfoView;
  }

  /**
   * This rank's shard of the state: for each param with state, `step` and its slots over this
   * rank's piece (`piece: [begin, end)` of the param's elements; empty arrays when it holds none).
   */
  shardStateDict(): { state: Record<number, S & { piece: [number, number] }>; paramGroups: StateDict<S, O>['paramGroups']; rank: number; size: number; partition: Partitioning } {
    const state: Record<number, S & { piece: [number, number] }> = {};
    for (const [i, s] of this.state) {
      const piece = this.pieceOf(i);
      const e: Record<string, unknown> = {};
      if (this.spec.hasStep) e.step = s.step;
      this.spec.slots.forEach((d, k) => { e[d.key] = s.slots[k].slice(); });
      e.piece = piece ? [piece.begin, piece.end] : [0, 0];
      state[i] = e as S & { piece: [number, number] };
    }
    return { state, paramGroups: this.groupsDict(), rank: this.rank, size: this.size, partition: this.partitioning };
  }

  /** The whole state on every rank, as the single-process optimizer's `stateDict()` (collective: all-gathers every slot). */
  gatherStateDict(): StateDict<S, O> {
    this.assertUsable();
    const state: Record<number, S> = {};
    const slots = this.spec.slots;
    const counts = ownedCounts(this.plan);
    const flat = new Float32Array(this.plan.total);
    const have = [...this.state.keys()];
    for (let k = 0; k < slots.length; k++) {
      const send = new Float32Array(counts[this.rank]);
      let at = 0;
      for (const t of this.plan.tensors) {
        const pc = t.pieces.find((x) => x.rank === this.rank);
        if (!pc) continue;
        const st = this.state.get(t.index);
        if (st) send.set(st.slots[k], at);
        at += pc.end - pc.begin;
      }
      this.collect(() => this.collective.allGather(send, flat, counts, this.at(this.steps, 'gather state')));
      for (const i of have) {
        const t = this.plan.tensors[i];
        const e = (state[i] ?? (state[i] = (this.spec.hasStep ? { step: this.state.get(i)!.step } : {}) as S)) as Record<string, unknown>;
        e[slots[k].key] = flat.slice(t.flat, t.flat + t.numel);
      }
    }
    if (slots.length === 0) for (const i of have) state[i] = (this.spec.hasStep ? { step: this.state.get(i)!.step } : {}) as S;
    return { state, paramGroups: this.groupsDict() };
  }

  /**
   * Loads a whole state dict (the single-process optimizer's `stateDict()`, or `gatherStateDict()`):
   * every rank keeps its pieces. Not collective, but every rank must load the same dict.
   */
  loadStateDict(sd: StateDict<S, O>): void {
    this.assertUsable();
    if (!isPlainObject(sd) || !isPlainObject(sd.state) || !Array.isArray(sd.paramGroups)) throw invalid('stateDict must be an object { state, paramGroups }');
    const groups = this.checkGroups(sd.paramGroups as unknown[]);
    const next = new Map<number, ShardState>();
    const keys = [...(this.spec.hasStep ? ['step'] : []), ...this.spec.slots.map((d) => d.key)];
    for (const key of Object.keys(sd.state)) {
      const i = Number(key);
      if (!Number.isSafeInteger(i) || i < 0 || i >= this.params.length) throw invalid(`stateDict.state has an entry for param index ${key}, which no group lists`);
      const raw = (sd.state as Record<string, unknown>)[key];
      if (!isPlainObject(raw)) throw invalid(`stateDict.state[${key}] must be an object { ${keys.join(', ')} }`);
      rejectUnknown(raw, keys, `stateDict.state[${key}]`, `a ${this.spec.name} state key`, false);
      const step = this.spec.hasStep ? raw.step : 1;
      if (!Number.isSafeInteger(step) || (step as number) < 0) throw invalid(`stateDict.state[${key}].step must be a non-negative integer, got ${describe(step)}`);
      const numel = this.params[i].data.length;
      const piece = this.pieceOf(i);
      const slots = this.spec.slots.map((d) => {
        const full = stateArray(raw[d.key], numel, `stateDict.state[${key}].${d.key}`);
        return piece ? full.slice(piece.begin, piece.end) : new Float32Array(0);
      });
      next.set(i, { step: step as number, slots, staged: null });
    }
    this.applyGroups(groups);
    this.state.clear();
    for (const [i, s] of next) this.state.set(i, s);
  }

  /** Releases the engine. The collective stays open (it belongs to the caller). */
  dispose(): void {
    if (this.disposed) return;
    this.engine.dispose?.();
    this.disposed = true;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  // ---------------------------------------------------------------------------------------
  // For lib/distributed/checkpoint.ts.

  /** @internal The param list in index order. */
  paramList(): readonly Param[] {
    return this.params;
  }

  /** @internal This rank's piece of param i, or null. */
  pieceOf(i: number): Piece | null {
    return this.plan.tensors[i].pieces.find((x) => x.rank === this.rank) ?? null;
  }

  /** @internal The shard state (live). */
  shardState(): ReadonlyMap<number, { step: number; slots: Float32Array[] }> {
    return this.state;
  }

  /** @internal Replaces the shard state and hyperparameters, after the caller checked everything. */
  replaceShard(state: Map<number, { step: number; slots: Float32Array[] }>, groups: Array<Record<string, unknown>> | null): void {
    if (groups) this.applyGroups(this.checkGroups(groups));
    this.state.clear();
    for (const [i, s] of state) this.state.set(i, { step: s.step, slots: s.slots, staged: null });
  }

  /** @internal The groups as a state dict lists them. */
  groupsDict(): StateDict<S, O>['paramGroups'] {
    let index = 0;
    return this.paramGroups.map((g) => {
      const entry: Record<string, unknown> = { params: g.params.map(() => index++) };
      for (const o of this.spec.options) {
        const v = (g as Record<string, unknown>)[o.key];
        entry[o.key] = Array.isArray(v) ? v.slice() : v;
      }
      return entry as { params: number[] } & Required<O>;
    });
  }

  /** @internal A collective call under this optimizer's deadline; a failure breaks the optimizer. */
  collect(f: () => void): void {
    const c = this.collective;
    const saved = c.timeoutMs;
    if (this.timeoutMs !== undefined) c.timeoutMs = this.timeoutMs;
    try {
      f();
    } catch (e) {
      if (e instanceof AdampError && (e.code === 'ERR_ADAMP_COLLECTIVE' || e.code === 'ERR_ADAMP_COLLECTIVE_TIMEOUT')) this.failed = e;
      throw e;
    } finally {
      c.timeoutMs = saved;
    }
  }

  /** @internal */
  at(step: number, phase: string): CallSite {
    return { step, phase };
  }

  // ---------------------------------------------------------------------------------------

  private handshake(): void {
    // kind, backend, partition digest (4 x 48 bits), world size
    const rec = new Float64Array(8);
    rec[0] = this.spec.kind.split('').reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) % 2 ** 31, 7);
    rec[1] = this.backend === 'js' ? 1 : 2;
    for (let k = 0; k < 4; k++) rec[2 + k] = parseInt(this.plan.digest.slice(12 * k, 12 * k + 12), 16);
    rec[6] = this.size;
    rec[7] = this.gathersParams ? 1 : 0;
    const all = new Float64Array(8 * this.size);
    this.collect(() => this.collective.allGather(rec, all, null, { phase: 'create' }));
    const differ = (k0: number, n: number) => this.ranks((r) => { for (let k = k0; k < k0 + n; k++) if (all[r * 8 + k] !== all[k]) return true; return false; });
    const fail = (what: string, ranks: number[]) => {
      throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `ShardedOptimizer: ${rankList(ranks)} ${ranks.length > 1 ? 'differ' : 'differs'} from rank 0 in ${what}; every rank must create the same sharded optimizer`,
        { rank: this.rank, phase: 'create', missing: ranks });
    };
    let d = differ(0, 1);
    if (d.length) fail(`the optimizer (this rank: ${this.spec.name})`, d);
    d = differ(1, 1);
    if (d.length) fail(`the backend (this rank: '${this.backend}'; its units decide the partition)`, d);
    d = differ(2, 4);
    if (d.length) fail(`the partition (the params' shapes, the partitioning '${this.partitioning}', or the backend's units)`, d);
    d = differ(7, 1);
    if (d.length) fail('gatherParams', d);
  }

  /** Ranks r for which `f(r)`. */
  private ranks(f: (r: number) => boolean): number[] {
    const out: number[] = [];
    for (let r = 0; r < this.size; r++) if (f(r)) out.push(r);
    return out;
  }

  /** Throws on every rank when fields [k, k + n) of the begin records differ. */
  private agree(all: Float64Array, k: number, n: number, s: number, what: string, hint: string): void {
    const differ = this.ranks((r) => { for (let j = k; j < k + n; j++) if (all[r * BEGIN + j] !== all[j]) return true; return false; });
    if (differ.length === 0) return;
    const detail = k === 1 ? `: ${Array.from({ length: this.size }, (_, r) => `rank ${r} has ${all[r * BEGIN + 1]}`).join(', ')})` : '';
    throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `step ${s}: ${what}${detail}: ${rankList(differ)} ${differ.length > 1 ? 'differ' : 'differs'} from rank 0; ${hint}. Nothing changed on any rank`,
      { rank: this.rank, step: s, phase: 'begin', missing: differ });
  }

  /** Validates every group and param (changes nothing); returns the items and the begin record's hashes. */
  private prepare(): { items: Item[]; hashes: number[] } {
    const spec = this.spec;
    const resolved: Array<Record<string, unknown>> = [];
    const hosts: HostArray[] = [];
    for (let gi = 0; gi < this.paramGroups.length; gi++) {
      const { params: _ps, ...opts } = this.paramGroups[gi] as unknown as Record<string, unknown>;
      resolved.push(resolveOptions(spec, opts, null, `paramGroups[${gi}]`, 'strict'));
    }
    let i = 0;
    for (let gi = 0; gi < this.paramGroups.length; gi++) {
      const ps = this.paramGroups[gi].params;
      if (ps.length !== this.plan.tensors.filter((_, k) => this.groupOf[k] === gi).length) {
        throw invalid(`paramGroups[${gi}] has ${ps.length} params; a sharded optimizer's groups are fixed at creation`);
      }
      for (const p of ps) {
        if (p !== this.params[i]) throw invalid(`paramGroups[${gi}] was changed: ${label(p, i)} is not the param the optimizer was created with`);
        const numel = checkParamStatic(p, i);
        if (numel !== this.plan.tensors[i].numel) throw invalid(`data of ${label(p, i)} has ${numel} elements, the partition was made for ${this.plan.tensors[i].numel}`);
        checkGrad(p, i);
        hosts.push({ a: p.data, what: `data of ${label(p, i)}`, readOnly: false });
        if (isFloat32Array(p.grad)) hosts.push({ a: p.grad, what: `grad of ${label(p, i)}`, readOnly: true });
        i++;
      }
    }
    checkHostAliasing(hosts);
    const items: Item[] = [];
    let h1 = 0x811c9dc5, h2 = 0x01000193;
    for (let k = 0; k < this.params.length; k++) {
      const p = this.params[k];
      if (!p.grad) continue;
      h1 = fnv(h1, k); h2 = fnv(h2, k * 2654435761);
      const known = this.state.get(k);
      const piece = this.pieceOf(k);
      const len = piece ? piece.end - piece.begin : 0;
      const state: ShardState = known ?? { step: 0, slots: spec.slots.map(() => new Float32Array(len)), staged: null };
      const options = resolved[this.groupOf[k]];
      const geo = geometryOf(p);
      items.push({
        index: k, group: this.groupOf[k], p, g: p.grad, geo, place: this.plan.tensors[k], piece, state, fresh: known === undefined,
        job: null, onePass: !spec.projects || !geo.eligible, options, hyper: spec.wire(options), partials: null, decision: null, norms: null, stagedP: null,
      });
    }
    const text = JSON.stringify(resolved);
    let g1 = 0x811c9dc5, g2 = 0x2545f491;
    for (let k = 0; k < text.length; k++) { g1 = fnv(g1, text.charCodeAt(k)); g2 = fnv(g2, text.charCodeAt(k) * 40503); }
    return { items, hashes: [h1, h2 + items.length * 2 ** 32, g1, g2] };
  }

  /** Stages this rank's pieces and runs pass 1 on them. */
  private stats(items: Item[]): void {
    for (const it of items) {
      const pc = it.piece;
      if (pc === null) continue;
      const st = it.state;
      let slots = st.slots;
      let p: Float32Array;
      if (this.staging) {
        if (st.staged === null || st.staged.length !== slots.length) st.staged = slots.map((a) => new Float32Array(a.length));
        st.staged.forEach((a, k) => a.set(slots[k]));
        slots = st.staged;
        let sp = this.stagedP.get(it.index);
        if (sp === undefined) { sp = new Float32Array(pc.end - pc.begin); this.stagedP.set(it.index, sp); }
        sp.set(it.p.data.subarray(pc.begin, pc.end));
        p = sp;
      } else {
        p = it.p.data.subarray(pc.begin, pc.end);
      }
      it.stagedP = p;
      it.job = {
        spec: this.spec, options: it.options, hyper: it.hyper,
        shard: {
          p, g: it.g.subarray(pc.begin, pc.end), state: slots, outer: it.geo.outer, channels: it.geo.channels, inner: it.geo.inner,
          eligible: it.geo.eligible, step: st.step + 1, offset: pc.begin, numel: it.geo.numel,
        },
      };
      if (!it.onePass) it.partials = this.protocol.stats(it.job, pc.u0, pc.u1);
    }
  }

  /** The first step of a projecting tensor: every rank learns the length of every piece's partial record. */
  private exchangeLengths(items: Item[], s: number, guard: (f: () => void) => void): number[] {
    // 'tensors': an owner has every unit's partials itself; nothing to learn
    if (this.partitioning === 'tensors') return [];
    const fresh = items.filter((it) => !it.onePass && !this.partialLengths.has(it.index));
    if (fresh.length === 0) return [];
    const counts = new Array<number>(this.size).fill(0);
    for (const it of fresh) for (const pc of it.place.pieces) counts[pc.rank]++;
    const send = new Float64Array(counts[this.rank]);
    guard(() => {
      let at = 0;
      for (const it of fresh) if (it.piece) send[at++] = it.partials!.length;
    });
    const recv = new Float64Array(counts.reduce((a, b) => a + b, 0));
    this.collect(() => this.collective.allGather(send, recv, counts, this.at(s, 'partial lengths')));
    const disp = offsets(counts);
    const next = counts.map(() => 0);
    for (const it of fresh) {
      const lens: number[] = [];
      for (const pc of it.place.pieces) lens.push(recv[disp[pc.rank] + next[pc.rank]++]);
      this.partialLengths.set(it.index, lens);
    }
    return fresh.map((it) => it.index);
  }

  /** 'slices': all-gather every piece's partial record; each projecting tensor's records end up concatenated in unit order. */
  private exchangePartials(items: Item[], s: number, guard: (f: () => void) => void): void {
    const proj = items.filter((it) => !it.onePass);
    if (proj.length === 0) return;
    const counts = new Array<number>(this.size).fill(0);
    for (const it of proj) {
      const lens = this.partialLengths.get(it.index)!;
      it.place.pieces.forEach((pc, k) => { counts[pc.rank] += lens[k]; });
    }
    const send = new Float64Array(counts[this.rank]);
    guard(() => {
      let at = 0;
      for (const it of proj) {
        if (!it.piece) continue;
        const lens = this.partialLengths.get(it.index)!;
        const want = lens[it.place.pieces.indexOf(it.piece)];
        if (it.partials!.length !== want) throw new Error(`internal error: the partial record of param ${it.index} has ${it.partials!.length} doubles, ${want} were announced`);
        send.set(it.partials!, at);
        at += want;
      }
    });
    const recv = new Float64Array(counts.reduce((a, b) => a + b, 0));
    this.collect(() => this.collective.allGather(send, recv, counts, this.at(s, 'partials')));
    const disp = offsets(counts);
    for (const it of proj) {
      const lens = this.partialLengths.get(it.index)!;
      const all = new Float64Array(lens.reduce((a, b) => a + b, 0));
      let at = 0;
      it.place.pieces.forEach((pc, k) => {
        all.set(recv.subarray(disp[pc.rank], disp[pc.rank] + lens[k]), at);
        disp[pc.rank] += lens[k];
        at += lens[k];
      });
      it.partials = all;
    }
  }

  /** Decides (every tensor in 'slices', own tensors in 'tensors') and runs pass 2 on this rank's pieces. */
  private decideAndApply(items: Item[]): void {
    const options: StepOptions = { norms: this.norms };
    for (const it of items) {
      const own = it.piece !== null;
      if (this.partitioning === 'tensors' && !own) continue;
      it.decision = this.protocol.decide(this.spec, it.geo, it.options, it.hyper, it.onePass ? new Float64Array(0) : it.partials!);
      if (!own) continue;
      it.norms = this.protocol.apply(it.job!, it.decision, it.piece!.u0, it.piece!.u1, options);
      if (it.norms.length !== NORMS_PER_UNIT * (it.piece!.u1 - it.piece!.u0)) throw new Error(`internal error: protocol.apply returned ${it.norms.length} norm partials for ${it.piece!.u1 - it.piece!.u0} units`);
    }
  }

  /** The flat staging buffer of every param (allocated once). */
  private flatBuffer(): Float32Array {
    if (this.flatStage === null) this.flatStage = new Float32Array(this.plan.total);
    return this.flatStage;
  }

  /** Writes this rank's flat range: updated pieces from `updated(i)`, else the params as they are. */
  private fillOwned(send: Float32Array, updated: (i: number) => Float32Array | null): void {
    let at = 0;
    for (const t of this.plan.tensors) {
      const pc = t.pieces.find((x) => x.rank === this.rank);
      if (!pc) continue;
      send.set(updated(t.index) ?? this.params[t.index].data.subarray(pc.begin, pc.end), at);
      at += pc.end - pc.begin;
    }
  }

  /** All-gathers the updated ranges into the flat staging buffer. */
  private gatherUpdated(items: Item[], s: number, guard: (f: () => void) => void): Float32Array {
    const flat = this.flatBuffer();
    const counts = ownedCounts(this.plan);
    if (this.flatSend === null) this.flatSend = new Float32Array(counts[this.rank]);
    const send = this.flatSend;
    const byIndex = new Map(items.map((it) => [it.index, it]));
    guard(() => this.fillOwned(send, (i) => byIndex.get(i)?.stagedP ?? null));
    this.collect(() => this.collective.allGather(send, flat, counts, this.at(s, 'params')));
    return flat;
  }

  /**
   * The final agreement: every rank's vote with its norm partials ('slices', full diagnostics) or
   * its tensors' info records ('tensors'). Fills `info`; throws on every rank unless every rank
   * voted to commit.
   */
  private end(items: Item[], s: number, guard: (f: () => void) => void, fault: () => Error | null, info: Float64Array): void {
    const slices = this.partitioning === 'slices';
    const per = (it: Item, pc: Piece) => (slices ? (this.norms ? NORMS_PER_UNIT * (pc.u1 - pc.u0) : 0) : INFO_STRIDE);
    const counts = new Array<number>(this.size).fill(1);
    for (const it of items) for (const pc of it.place.pieces) counts[pc.rank] += per(it, pc);
    const send = new Float64Array(counts[this.rank]);
    guard(() => {
      let at = 1;
      for (const it of items) {
        if (!it.piece) continue;
        const n = per(it, it.piece);
        if (n === 0) continue;
        if (slices) send.set(it.norms!, at);
        else this.protocol.finish(this.spec, it.geo, it.decision!, it.norms!, send, at);
        at += n;
      }
    });
    const failure = fault();
    send[0] = failure === null ? 1 : 0;
    const recv = new Float64Array(counts.reduce((a, b) => a + b, 0));
    try {
      this.collect(() => this.collective.allGather(send, recv, counts, this.at(s, 'commit')));
    } catch (e) {
      if (e instanceof CollectiveError) {
        throw new CollectiveError(e.code as 'ERR_ADAMP_COLLECTIVE_TIMEOUT', `${e.message}. This was the final agreement of step ${s}: this rank did not commit it, ranks that received every vote may have (restart every rank from a checkpoint)`,
          { rank: e.rank, step: s, phase: 'commit', missing: e.missing, inDoubt: true });
      }
      throw e;
    }
    const disp = offsets(counts);
    const against = this.ranks((r) => recv[disp[r]] !== 1);
    if (against.length > 0) {
      if (failure !== null) throw failure;
      throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `step ${s} was not committed on any rank: ${rankList(against)} failed during the step (see the error there)`,
        { rank: this.rank, step: s, phase: 'commit', missing: against });
    }
    const next = disp.map((d) => d + 1);
    items.forEach((it, k) => {
      const o = k * INFO_STRIDE;
      if (!slices) {
        if (it.place.pieces.length === 0) {
          this.protocol.finish(this.spec, it.geo, this.protocol.decide(this.spec, it.geo, it.options, it.hyper, new Float64Array(0)), new Float64Array(0), info, o);
          return;
        }
        const pc = it.place.pieces[0];
        info.set(recv.subarray(next[pc.rank], next[pc.rank] + INFO_STRIDE), o);
        next[pc.rank] += INFO_STRIDE;
        return;
      }
      const units = it.place.units.length - 1;
      const norms = new Float64Array(NORMS_PER_UNIT * units);
      if (this.norms) {
        let at = 0;
        for (const pc of it.place.pieces) {
          const n = NORMS_PER_UNIT * (pc.u1 - pc.u0);
          norms.set(recv.subarray(next[pc.rank], next[pc.rank] + n), at);
          next[pc.rank] += n;
          at += n;
        }
      } else {
        norms.fill(NaN);
      }
      this.protocol.finish(this.spec, it.geo, it.decision!, norms, info, o);
    });
  }

  /** Every rank voted to commit: keep new state, swap the staging buffers in, write the params, count the step. */
  private commit(items: Item[], flat: Float32Array | null): void {
    for (const it of items) {
      const st = it.state;
      if (it.piece !== null && this.staging) {
        const old = st.slots;
        st.slots = st.staged!;
        st.staged = old;
        if (!this.gathersParams) it.p.data.set(it.stagedP!, it.piece.begin);
      }
      if (flat !== null) it.p.data.set(flat.subarray(it.place.flat, it.place.flat + it.place.numel));
      st.step += 1;
      if (it.fresh) this.state.set(it.index, st);
      it.job = null;
      it.partials = null;
      it.stagedP = null;
    }
    this.steps++;
  }

  private materializeInfo(): ParamStepInfo[] {
    const out: ParamStepInfo[] = this.params.map((p, index) => ({
      index, ...(p.name !== undefined ? { name: p.name } : {}), projection: 'no_grad' as Projection,
      channelMaxCos: null, channelThreshold: null, layerCos: null, layerThreshold: null,
      wdRatio: null, weightNorm: null, updateNorm: null, effectiveStepSize: null,
    }));
    const info = this.lastInfo;
    this.lastItems.forEach((it, k) => {
      const o = k * INFO_STRIDE;
      const e = out[it.index];
      const code = info[o + Info.decision];
      const wdRatio = (this.paramGroups[it.group] as unknown as { wdRatio?: number }).wdRatio;
      e.projection = PROJECTION[code];
      e.channelMaxCos = nanToNull(info[o + Info.channelMaxCos]);
      e.channelThreshold = nanToNull(info[o + Info.channelThreshold]);
      e.layerCos = nanToNull(info[o + Info.layerCos]);
      e.layerThreshold = nanToNull(info[o + Info.layerThreshold]);
      e.wdRatio = (code === Decision.channel || code === Decision.layer) && wdRatio !== undefined ? wdRatio : 1;
      const after = info[o + Info.normSqAfter];
      if (Number.isNaN(after) && Number.isNaN(info[o + Info.deltaSq])) return;
      const before = Math.sqrt(info[o + Info.normSqBefore]);
      e.weightNorm = Math.sqrt(after);
      e.updateNorm = Math.sqrt(info[o + Info.deltaSq]);
      e.effectiveStepSize = before > 0 ? e.updateNorm / before : e.updateNorm > 0 ? Infinity : 0;
    });
    return out;
  }

  /** The raw info records of the last step (INFO_STRIDE doubles per param with a gradient, in index order), for tests. */
  lastInfoRecords(): { indices: number[]; info: Float64Array } {
    return { indices: this.lastItems.map((it) => it.index), info: this.lastInfo.slice() };
  }

  /** Checks state-dict groups against this optimizer's; returns their resolved options. */
  private checkGroups(raw: unknown[]): Array<Record<string, unknown>> {
    if (raw.length !== this.paramGroups.length) throw invalid(`the state dict has ${raw.length} param groups, this optimizer has ${this.paramGroups.length}`);
    let first = 0;
    return raw.map((g, gi) => {
      const where = `stateDict.paramGroups[${gi}]`;
      if (!isPlainObject(g) || !Array.isArray(g.params)) throw invalid(`${where} must be an object { params, ...options }`);
      const want = this.paramGroups[gi].params.map((_, j) => first + j);
      first += want.length;
      if (JSON.stringify(g.params) !== JSON.stringify(want)) throw invalid(`${where}.params is ${JSON.stringify(g.params)}, this optimizer's group ${gi} holds params ${JSON.stringify(want)}`);
      const { params: _p, ...opts } = g;
      return resolveOptions(this.spec, opts, null, where, 'strict');
    });
  }

  private applyGroups(groups: Array<Record<string, unknown>>): void {
    groups.forEach((g, gi) => Object.assign(this.paramGroups[gi], g));
  }

  private assertUsable(): void {
    if (this.disposed) throw new AdampError('ERR_ADAMP_DISPOSED', 'this sharded optimizer was disposed; create a new one');
    if (this.failed !== null) {
      throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `this sharded optimizer stopped after a failed collective (${this.failed.message}); restart every rank from a checkpoint`,
        { rank: this.rank, step: this.steps + 1, phase: 'begin' });
    }
    if (this.collective.broken !== null) {
      throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `the collective is broken (${this.collective.broken.message}); restart every rank from a checkpoint`,
        { rank: this.rank, step: this.steps + 1, phase: 'begin' });
    }
  }
}

/** 'native' when its protocol can run here, else 'js'. */
function autoBackend(): 'js' | 'native' {
  try {
    return createEngine('native', {}).protocol ? 'native' : 'js';
  } catch {
    return 'js';
  }
}

function geometryOf(p: Param): Geometry {
  return { ...geometry(p), numel: p.data.length };
}

function offsets(counts: readonly number[]): number[] {
  const out: number[] = [];
  let at = 0;
  for (const n of counts) { out.push(at); at += n; }
  return out;
}

/** One FNV-1a round over a 32-bit value. */
function fnv(h: number, x: number): number {
  for (let k = 0; k < 4; k++) {
    h ^= (x >>> (8 * k)) & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function nanToNull(x: number): number | null {
  return Number.isNaN(x) ? null : x;
}

/**
 * A sharded optimizer: `shard(AdamP, params, { lr: 1e-3 }, { collective })`. The same as
 * `new ShardedOptimizer(...)`.
 */
export function shard<O extends object, S extends object>(optimizer: SpecSource<O, S>,
  params: readonly Param[] | readonly ParamGroupInput<O, Param>[], options: Partial<O> | undefined, config: ShardedConfig): ShardedOptimizer<O, S> {
  return new ShardedOptimizer<O, S>(optimizer, params, options, config);
}
