/**
 * Driving an optimizer from a store that owns named tensors, without copying them.
 *
 * A store is anything with `keys()` and `get(name)` returning `{ data, grad, shape }`: a plain
 * `Map<string, StoredTensor>` qualifies as is. `paramsFromStore` returns live `Param` views:
 * each property read goes to the store, so the optimizer reads and writes the store's own
 * Float32Arrays, and a store that swaps a tensor's `grad` (or `data`) array between steps is
 * seen at the next step. Names become the params' names (error messages, diagnostics,
 * checkpoints).
 */
import { invalid } from '../errors';
import { describe } from '../core/describe';
import type { Param, ParamGroupInput } from '../types';

/** One tensor of a store. */
export interface StoredTensor {
  /** The weights, row-major; the optimizer updates this array in place. */
  data: Float32Array;
  /** The gradient (same length), or `null` to skip the tensor at a step. */
  grad: Float32Array | null;
  shape: readonly number[];
  /** Output-channel axis of the projection's channel view (default 0; -1 for TensorFlow.js layouts). */
  channelAxis?: number;
}

/** The read side of a store of named tensors; `Map<string, StoredTensor>` implements it. */
export interface TensorStore<T extends StoredTensor = StoredTensor> {
  keys(): Iterable<string>;
  get(name: string): T | undefined;
}

/** Which tensors of a store to take. */
export type TensorSelector = readonly string[] | RegExp | ((name: string) => boolean);

export interface StoreParamsOptions {
  /** The tensors to optimize: a list of names (in that order), a RegExp or a predicate. Default: every tensor, in `keys()` order. */
  select?: TensorSelector;
  /** Channel axis for tensors that do not set their own `channelAxis` (e.g. `-1` for a store of TensorFlow.js-layout kernels). */
  channelAxis?: number;
}

/** A param group over store tensors, with per-group hyperparameter overrides. */
export type StoreGroup<O> = { select: TensorSelector } & Partial<O>;

function selectNames(store: TensorStore, select: TensorSelector | undefined, where: string): string[] {
  if (select !== undefined && !Array.isArray(select)) {
    const test = select instanceof RegExp ? (n: string) => { select.lastIndex = 0; return select.test(n); } : select;
    if (typeof test !== 'function') throw invalid(`${where} must be a list of names, a RegExp or a predicate, got ${describe(select)}`);
    return Array.from(store.keys()).filter((n) => test(n));
  }
  if (select === undefined) return Array.from(store.keys());
  const names = select as readonly string[];
  for (const n of names) {
    if (typeof n !== 'string') throw invalid(`${where} must hold tensor names, got ${describe(n)}`);
    if (store.get(n) === undefined) throw invalid(`${where} names tensor '${n}', which the store does not hold`);
  }
  return names.slice();
}

/** A live `Param` view of one store tensor: nothing is copied, every read goes to the store. */
export function storeParam(store: TensorStore, name: string, defaultChannelAxis?: number): Param {
  const entry = () => {
    const e = store.get(name);
    if (e === undefined || e === null || typeof e !== 'object') throw invalid(`tensor '${name}' is no longer in the store`);
    return e;
  };
  entry();
  return {
    name,
    get data() { return entry().data; },
    set data(v: Float32Array) { entry().data = v; },
    get grad() { return entry().grad; },
    set grad(v: Float32Array | null) { entry().grad = v; },
    get shape() { return entry().shape; },
    get channelAxis() { return entry().channelAxis ?? defaultChannelAxis; },
  } as Param;
}

/**
 * `Param` views of a store's tensors, to pass to `new AdamP(...)` / `new SGDP(...)`.
 *
 * ```ts
 * const store = new Map([['fc.weight', { data, grad, shape: [10, 20] }], ...]);
 * const opt = new AdamP(paramsFromStore(store), { lr: 1e-3 });
 * // ... fill each entry's grad ...
 * opt.step();   // updates store.get('fc.weight').data in place
 * ```
 */
export function paramsFromStore(store: TensorStore, options: StoreParamsOptions = {}): Param[] {
  checkStore(store);
  const names = selectNames(store, options.select, 'options.select');
  if (names.length === 0) throw invalid('options.select matched no tensor of the store');
  return names.map((n) => storeParam(store, n, options.channelAxis));
}

/**
 * Param groups over a store: each group selects tensors and may override hyperparameters.
 * A tensor matched by several groups belongs to the first.
 *
 * ```ts
 * new AdamP(groupsFromStore(store, [
 *   { select: /\.weight$/, weightDecay: 1e-2 },
 *   { select: (n) => n.endsWith('.bias'), weightDecay: 0 },
 * ]), { lr: 1e-3 });
 * ```
 */
export function groupsFromStore<O extends object = Record<string, unknown>>(store: TensorStore, groups: readonly StoreGroup<NoInfer<O>>[], options: Omit<StoreParamsOptions, 'select'> = {}): ParamGroupInput<O>[] {
  checkStore(store);
  if (!Array.isArray(groups)) throw invalid(`groups must be an array of { select, ...options }, got ${describe(groups)}`);
  const taken = new Set<string>();
  return groups.map((g, gi) => {
    if (g === null || typeof g !== 'object') throw invalid(`groups[${gi}] must be an object { select, ...options }, got ${describe(g)}`);
    const { select, ...overrides } = g;
    const names = selectNames(store, select, `groups[${gi}].select`).filter((n) => !taken.has(n));
    if (names.length === 0) throw invalid(`groups[${gi}].select matched no tensor of the store that an earlier group did not take`);
    names.forEach((n) => taken.add(n));
    return { ...(overrides as Partial<O>), params: names.map((n) => storeParam(store, n, options.channelAxis)) } as ParamGroupInput<O>;
  });
}

function checkStore(store: unknown): void {
  const s = store as TensorStore | null;
  if (s === null || typeof s !== 'object' || typeof s.keys !== 'function' || typeof s.get !== 'function') {
    throw invalid(`store must have keys() and get(name) (a Map<string, { data, grad, shape }> works), got ${describe(store)}`);
  }
}
