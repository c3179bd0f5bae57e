/**
 * The typed contract of the native addon (`adamp.node`, native/binding/addon.cc): everything it
 * exports, so the rest of the TypeScript never touches an untyped value. `load.ts` checks at load
 * time that every function listed here is present.
 *
 * Optimizers are named by their registry kind (`'adamp'`, `'sgdp'`, `'adamw'`, `'sgd'`; see
 * lib/optim/registry.ts and native/include/adamp/optim/registry.h) and their hyperparameters
 * travel as a Float64Array in the order of the C++ policy's `Hyper` (the TS spec's `wire()`
 * writes it; `kinds()` lists the names so a test can compare the two).
 */

/** One tensor as the addon reads it (a structural subset of `Slot` in lib/backends/engine.ts). */
export interface AddonSlot {
  /** The param; on a 16-bit slot its float32 master copy, or null (no master weights: `half.p16` is stepped). */
  p: Float32Array | null;
  /** The grad; null on a 16-bit slot whose grad is `half.g16` (exactly one of the two). */
  g: Float32Array | null;
  /** The optimizer's state slots in its spec's order (AdamP: exp_avg, exp_avg_sq; SGDP: momentum). */
  state: readonly Float32Array[];
  /** Channel view `outer x channels x inner`; the product must equal `p.length`. */
  outer: number;
  channels: number;
  inner: number;
  /** ndim > 1: the projection test runs (projecting optimizers only). */
  eligible: boolean;
  /** The tensor's step count after this step's increment (integer >= 1). */
  step: number;
  /** A 16-bit param (see `HalfSlot` in lib/backends/engine.ts): the core converts each unit itself. */
  half?: AddonHalf;
}

/** The 16-bit storage of a slot on the wire. Every array has the param's element count; none may overlap another. */
export interface AddonHalf {
  dtype: 'bfloat16' | 'float16';
  /** The param's bits (written). */
  p16: Uint16Array;
  /** The grad's bits (read), or absent/null when the slot's `g` is a float32 grad. */
  g16?: Uint16Array | null;
  /** Loss scaling: the grad is read as f32(f32(g) * invScale); a float32 value > 0, finite. */
  invScale?: number;
  /** bfloat16 stochastic rounding: the tensor's key, an integer in [0, 2^32). */
  key?: number;
}

/**
 * A shard of one tensor for the step protocol: the arrays hold elements
 * `[offset, offset + p.length)` of the whole tensor, whose geometry `outer/channels/inner` and
 * `numel` describe the whole.
 */
export interface AddonShard extends AddonSlot {
  offset: number;
  numel: number;
}

/** What the C++ registry says about one optimizer. */
export interface AddonKind {
  name: string;
  /** State slots per element. */
  slots: number;
  /** Hyperparameter names in wire order. */
  hyper: string[];
  /** Whether the step has stats and a decision (AdamP, SGDP) or is one pass. */
  projects: boolean;
}

/** One group's work. */
export interface AddonJob {
  kind: string;
  slots: readonly AddonSlot[];
  hyper: Float64Array;
  /** 8 doubles per slot (lib/core/info.ts). */
  info: Float64Array;
}

/** How a step runs. */
export interface AddonStepOptions {
  /** Worker threads, the caller's included; 0 or omitted = all hardware threads. Results are identical for every count. */
  threads?: number;
  /** Compute the info record's norms (weight norm before/after, update norm). Default true. */
  norms?: boolean;
}

/** Which CPU kernels run: AVX2+FMA or the portable eight-lane code (results are bit-identical). */
export type SimdLevel = 'avx2' | 'portable';

export interface AddonInfo {
  /** The package version the addon was built from. */
  version: string;
  /** The kernels in use now. */
  simd: SimdLevel;
  /** Whether this CPU and this build can run the AVX2+FMA kernels (the CPU must also have F16C, for float16 params; every AVX2 CPU has). */
  avx2: boolean;
  /** The default thread count (`threads: 0`). */
  hardwareThreads: number;
  /** Whether the CUDA engine was compiled in. */
  cuda: boolean;
  napiVersion: number;
  compiler: string;
}

/**
 * The addon's exports. Every function validates its arguments and throws a TypeError or
 * RangeError (from Node's main realm: compare `name`/`message`, not `instanceof`) naming the
 * argument, the slot and the problem; nothing is changed when it throws.
 */
export interface Addon {
  /** The optimizers of the C++ registry, in kind-number order. */
  kinds(): AddonKind[];
  /** One synchronous step of one group; writes 8 doubles per slot into `info`. */
  step(kind: string, slots: readonly AddonSlot[], hyper: Float64Array, info: Float64Array, options?: AddonStepOptions): void;
  /**
   * Several groups, in order, off the JavaScript thread (a libuv worker). The addon holds
   * references to every array until the promise settles; the caller must not touch them
   * meanwhile. Invalid arguments throw synchronously (nothing is queued).
   */
  stepAsync(jobs: readonly AddonJob[], options?: AddonStepOptions): Promise<void>;
  /**
   * Several groups, in order, as one synchronous step: all or nothing across them (a core that
   * cannot allocate what the step needs changes no group; step() is this with one group).
   */
  stepJobs(jobs: readonly AddonJob[], options?: AddonStepOptions): void;
  /**
   * TEST ONLY (test/all-or-nothing.test.ts; nothing in lib/ calls it): from now on the n-th
   * allocation of the core's steps throws std::bad_alloc (n > 0), or they are only counted (0),
   * or neither (-1, the default). Returns the allocations counted since the previous call.
   */
  testOnlyFailAllocation?(n: number): number;

  // The step protocol on shards of one tensor (the seam of a sharded step; see lib/backends/engine.ts
  // StepProtocol): stats -> decide -> apply -> finish. Records are opaque Float64Arrays.
  /** Element offsets where the plan's units of this tensor start, and numel at the end (units + 1 numbers). */
  protocolUnits(kind: string, slot: Pick<AddonShard, 'outer' | 'channels' | 'inner' | 'eligible' | 'numel'>): Float64Array;
  /** Pass 1 of units [u0, u1) of the shard (which must hold exactly their elements): updates its state, returns their partials. */
  protocolStats(kind: string, shard: AddonShard, hyper: Float64Array, u0: number, u1: number): Float64Array;
  /** The decision from every unit's partials, concatenated in unit order. */
  protocolDecide(kind: string, slot: Pick<AddonShard, 'outer' | 'channels' | 'inner' | 'eligible' | 'numel'>, hyper: Float64Array, partials: Float64Array): Float64Array;
  /** Pass 2 (or the one pass) of units [u0, u1) of the shard; returns their norm partials. */
  protocolApply(kind: string, shard: AddonShard, hyper: Float64Array, decision: Float64Array, u0: number, u1: number, norms: boolean): Float64Array;
  /** The info record (8 doubles at `info[at]`) from the decision and every unit's norm partials in order. */
  protocolFinish(kind: string, slot: Pick<AddonShard, 'outer' | 'channels' | 'inner' | 'eligible' | 'numel'>, decision: Float64Array, norms: Float64Array, info: Float64Array, at: number): void;

  info(): AddonInfo;
  /** Chooses the kernels process-wide ('auto' = AVX2 when available); returns what is in effect. */
  setSimd(level: 'auto' | SimdLevel): SimdLevel;
  /** AdamP's speculative single pass (on by default; results are identical either way). */
  setSpeculation(mode: 'on' | 'off'): void;
}

/** The names `load.ts` checks for. */
export const ADDON_FUNCTIONS = [
  'kinds', 'step', 'stepAsync', 'stepJobs', 'protocolUnits', 'protocolStats', 'protocolDecide', 'protocolApply', 'protocolFinish',
  'info', 'setSimd', 'setSpeculation',
] as const satisfies readonly (keyof Addon)[];
