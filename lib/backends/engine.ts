/**
 * The contract between the optimizer facade and the implementations of one step.
 *
 * The facade validates everything, creates state, counts steps and resolves hyperparameters;
 * an engine only does arithmetic on already-checked buffers. Every engine (TypeScript, the
 * native C++ core, CUDA) receives the same jobs and fills the same info record, so the facade
 * never knows which one ran, and no engine knows which optimizer it runs beyond its spec.
 */
import type { AnySpec } from '../optim/spec';
import type { HalfDtype } from '../core/half';

/** The implementations a step can run on. */
export type BackendName = 'js' | 'native' | 'cuda';

/** Availability of one backend, with the reason when it cannot run. */
export interface BackendReport {
  name: BackendName;
  available: boolean;
  /** Why it is unavailable (every load failure, in order), or what it runs on. */
  reason: string;
  /** Extra facts (SIMD level, threads, device name, addon path...). */
  details?: Record<string, unknown>;
}

/**
 * One tensor of a step, with its channel view as `outer x channels x inner`: element `i`
 * belongs to output channel `floor(i / inner) % channels`. For the default channel axis 0,
 * `outer = 1` and `inner = numel / shape[0]`; for a TensorFlow.js kernel (axis -1),
 * `inner = 1` and `outer = numel / shape[-1]`. The channel view has `channels` rows of
 * `numel / channels` elements; the layer view is one row of `numel`.
 */
export interface Slot {
  /** The param (float32); for a 16-bit slot its float32 master copy, or empty without master weights. */
  p: Float32Array;
  /** The grad (float32); empty when a 16-bit slot's grad is `half.g16`. */
  g: Float32Array;
  /** The optimizer's state slots in its spec's order (AdamP: exp_avg, exp_avg_sq). */
  state: Float32Array[];
  outer: number;
  channels: number;
  inner: number;
  /** ndim > 1: the projection test runs (projecting optimizers). */
  eligible: boolean;
  /** The tensor's step count after this step's increment (1 at its first step). */
  step: number;
  /**
   * A param that lives on the GPU (only the CUDA engine receives these). Then `p` is empty, `g`
   * holds a host gradient to upload or is empty, and the state arrays are empty while the state
   * lives on the device (or full arrays to upload, after `loadStateDict`).
   */
  device?: DeviceSlot;
  /** A param stored in 16 bits (js and native engines): the engine reads and writes its bits itself. */
  half?: HalfSlot;
}

/**
 * The 16-bit storage of a slot (docs/mixed-precision.md). The engine steps the float32 values
 * `p` (the master copy, when `master`) or the param's bits widened exactly, with the grad read as
 * `f32(f32(g) * invScale)` (g: `g16` widened, or `Slot.g`; no product without `invScale`), and
 * writes the result rounded back into `p16`: to nearest even, or, with `key`, stochastically
 * (bfloat16: element i adds `fmix32(key + i) & 0xffff`, lib/core/half.ts float32ToBf16Stochastic).
 * Bit-identical to widening the whole param, stepping it as float32 and rounding it back.
 */
export interface HalfSlot {
  dtype: HalfDtype;
  /** The param's bits; rounded back after the step. */
  p16: Uint16Array;
  /** The grad's bits (dtype `dtype`), or null when `Slot.g` is a float32 grad. */
  g16: Uint16Array | null;
  /** `Slot.p` is the float32 master copy (stepped in place); else `Slot.p` is empty. */
  master: boolean;
  /** A loss-scaled step: the grad is read as `f32(f32(g) * invScale)` (a float32 value). */
  invScale?: number;
  /** bfloat16 stochastic rounding: the tensor's key at this step (lib/core/half.ts roundingKey). */
  key?: number;
}

/** The facts an engine needs about a device buffer. */
export interface DeviceView {
  /** Address of element 0. */
  pointer: bigint;
  device: number;
  shape: readonly number[];
  /** Element strides, or `null` when row-major contiguous. */
  strides: readonly number[] | null;
  /** Element type (absent: float32). 16-bit views are contiguous. */
  dtype?: 'float32' | 'bfloat16' | 'float16';
}

/** The device side of a slot. */
export interface DeviceSlot {
  /** The param: identifies the tensor's state across steps. */
  key: object;
  numel: number;
  p: DeviceView;
  /** The gradient in device memory, or `null` when `Slot.g` is a host array to upload. */
  g: DeviceView | null;
  /** A 16-bit param (`p.dtype` bfloat16 or float16): how it is rounded back, and its master weights. */
  half?: {
    /** Float32 master weights kept in the device state (`config.masterWeights`). */
    master: boolean;
    /** Loaded master weights to upload when the device has none yet (else they start as the param widened). */
    loaded?: Float32Array;
    /** bfloat16 stochastic rounding with `seed` (the key uses the device's step count and `index`). */
    stochastic: boolean;
    seed: number;
    /** The param's index over all groups (lib/core/half.ts roundingKey). */
    index: number;
  };
}

/** One group's step: every slot with one set of hyperparameters. */
export interface StepJob {
  spec: AnySpec;
  /** The group's resolved options (the js engine computes its scalars from them). */
  options: Readonly<Record<string, unknown>>;
  /** The same options on the wire (`spec.wire(options)`): what native engines read. */
  hyper: Float64Array;
  slots: readonly Slot[];
  /** `INFO_STRIDE` doubles per slot, in slot order. */
  info: Float64Array;
}

/** How a step runs (the same for every group of one step). */
export interface StepOptions {
  /** Compute the info record's norms (weight norm before and after, update norm); else they are NaN. */
  norms: boolean;
}

/** One implementation of the steps of every registered optimizer. */
export interface Engine {
  readonly name: BackendName;
  /** Steps every slot of one group; writes the info records. */
  step(job: StepJob, options: StepOptions): void;
  /**
   * Optional: run a whole step (every group) off the JavaScript thread. The facade guarantees
   * that no other step runs on the same optimizer until the promise settles.
   */
  stepAsync?(jobs: readonly StepJob[], options: StepOptions): Promise<void>;
  /** Optional: every group of a step at once, all or nothing across them (else the facade calls step() per group). */
  stepAll?(jobs: readonly StepJob[], options: StepOptions): void;
  /** Optional: the step protocol on shards of a tensor (js and native). */
  readonly protocol?: StepProtocol;
  /** Optional: called before the facade reads params or state (engines that keep copies elsewhere write them back). */
  flush?(): void;
  /** Optional: called before the facade reads the info records of the last step (engines that compute them elsewhere fill them in). */
  flushInfo?(): void;
  /** Optional: the facade replaced state on the host (`loadStateDict`); drop copies held elsewhere. */
  invalidate?(): void;
  /** Optional: release resources held for this optimizer. */
  dispose?(): void;
  /** CUDA: the state slots of a device param (`DeviceSlot.key`) copied to the host, or undefined when it has none on the device. */
  readDeviceState?(key: object): Float32Array[] | undefined;
  /**
   * CUDA, loss scaling on the device (GradScaler): every job's gradients checked for Infinity/NaN
   * into the device int at `dev.found` (reset first), then every job stepped reading it (nothing
   * changes when it is set) with the gradients multiplied by f32(1 / *dev.scale). No host sync.
   * Without `dev.scale`: the gradients were unscaled already (unscaleGrads, which set the flag):
   * no check, every job stepped reading them as they are and skipped when the flag is set.
   */
  stepScaled?(jobs: readonly StepJob[], options: StepOptions, dev: { scale?: bigint; found: bigint }, kind: string): void;
  /**
   * CUDA, GradScaler.unscale: queues the non-finite check of float32 device grads into the device
   * int at `dev.found` (reset first) and their unscale in place by f32(1 / *dev.scale), on the
   * stream the steps of `kind` queue on. No host sync.
   */
  unscaleGrads?(grads: readonly DeviceView[], dev: { scale: bigint; found: bigint }, kind: string): void;
  /** CUDA: the completed step counts the device holds for these slot keys (undefined: not on the device). Waits. */
  deviceSteps?(keys: readonly object[]): Array<number | undefined>;
  /** CUDA: whether the last step of the tensor with this slot key (a host 16-bit param: its bits array) was skipped by the found-inf flag (waits). */
  lastSkipped?(key: object): boolean;
  /** CUDA: queues torch._amp_update_scale_ on a device GradScaler state (binding.ts CUDA_SCALER). */
  scalerUpdate?(state: bigint, mask: number, hostFound: boolean, growth: number, backoff: number, interval: number): void;
  /** CUDA: queue steps on a caller's stream from now on (`null`: the engine's own). */
  setStream?(stream: bigint | null): void;
  /** CUDA: the stream steps are queued on now. */
  currentStream?(): bigint;
}

/** A tensor's shape as the protocol sees it. */
export interface Geometry {
  outer: number;
  channels: number;
  inner: number;
  eligible: boolean;
  numel: number;
}

/** A shard of one tensor: its arrays hold elements `[offset, offset + p.length)` of the whole tensor. */
export interface Shard extends Slot {
  offset: number;
  numel: number;
}

/** One shard's part of a group step. */
export interface ShardJob {
  spec: AnySpec;
  options: Readonly<Record<string, unknown>>;
  hyper: Float64Array;
  shard: Shard;
}

/**
 * The step of one tensor in its four phases (docs/architecture.md, "The step protocol"), on
 * shards that each hold whole units. Records are opaque; partials and norm partials are folded in
 * unit order, so any split into shards gives the unsharded result bit for bit.
 */
export interface StepProtocol {
  /** Element offsets where the tensor's units start, then numel (units + 1 numbers). */
  units(spec: AnySpec, geometry: Geometry): number[];
  /** Pass 1 of units [u0, u1), which the shard must hold exactly: updates its state; returns their partials. */
  stats(job: ShardJob, u0: number, u1: number): Float64Array;
  /** The decision from every unit's partials, concatenated in unit order. */
  decide(spec: AnySpec, geometry: Geometry, options: Readonly<Record<string, unknown>>, hyper: Float64Array, partials: Float64Array): Float64Array;
  /** Pass 2 (or the one pass) of units [u0, u1) of the shard; returns their norm partials. */
  apply(job: ShardJob, decision: Float64Array, u0: number, u1: number, options: StepOptions): Float64Array;
  /** The info record (at `info[at]`) from the decision and every unit's norm partials in unit order. */
  finish(spec: AnySpec, geometry: Geometry, decision: Float64Array, norms: Float64Array, info: Float64Array, at: number): void;
}
