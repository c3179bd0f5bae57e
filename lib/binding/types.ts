/**
 * The typed contract of the native addon (`adamp.node`, native/binding/addon.cc): everything it
 * exports, so the rest of the TypeScript never touches an untyped value. Keep in step with the
 * C++ side; `load.ts` checks at load time that every function listed here is present.
 */

/** One tensor as the addon reads it (a structural subset of `Slot` in lib/backends/engine.ts). */
export interface AddonSlot {
  p: Float32Array;
  g: Float32Array;
  /** AdamP: exp_avg. SGDP / SGD: the momentum buffer. */
  m: Float32Array;
  /** AdamP / Adam: exp_avg_sq. Ignored by SGDP / SGD. */
  v: Float32Array;
  /** Channel view `outer x channels x inner` (AdamP / SGDP only); the product must equal `p.length`. */
  outer: number;
  channels: number;
  inner: number;
  /** ndim > 1: the projection test runs (AdamP / SGDP only). */
  eligible: boolean;
  /** AdamP / Adam: the step count after this step's increment (integer >= 1). */
  step: number;
}

export interface AddonAdamPHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  delta: number;
  wdRatio: number;
  nesterov: boolean;
}

export interface AddonSGDPHyper {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  eps: number;
  delta: number;
  wdRatio: number;
}

/** The one-pass AdamW floor (decoupled decay `p *= 1 - lr * weightDecay`). */
export interface AddonAdamHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** The one-pass SGD-with-momentum floor (torch.optim.SGD semantics, coupled decay `g + weightDecay * p`). */
export interface AddonSGDHyper {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

/** One group's work for `stepAsync`. */
export type AddonJob =
  | { kind: 'adamp'; slots: readonly AddonSlot[]; hp: AddonAdamPHyper; info: Float64Array }
  | { kind: 'sgdp'; slots: readonly AddonSlot[]; hp: AddonSGDPHyper; info: Float64Array };

/** Which CPU kernels run: AVX2+FMA or the portable eight-lane code (results are bit-identical). */
export type SimdLevel = 'avx2' | 'portable';

export interface AddonInfo {
  /** The package version the addon was built from. */
  version: string;
  /** The kernels in use now. */
  simd: SimdLevel;
  /** Whether this CPU and this build can run the AVX2+FMA kernels. */
  avx2: boolean;
  /** The default thread count (`threads: 0`). */
  hardwareThreads: number;
  /** Whether the CUDA engine was compiled in. */
  cuda: boolean;
  napiVersion: number;
  compiler: string;
}

/**
 * The addon's exports. `threads`: 0 or omitted = all hardware threads; results are bit-identical
 * for every thread count. Every function validates its arguments and throws a TypeError or
 * RangeError (from Node's main realm: compare `name`/`message`, not `instanceof`) naming the
 * argument, the slot and the problem.
 */
export interface Addon {
  /** One synchronous AdamP step of one group; writes 8 doubles per slot into `info`. */
  adampStep(slots: readonly AddonSlot[], hp: AddonAdamPHyper, info: Float64Array, threads?: number): void;
  sgdpStep(slots: readonly AddonSlot[], hp: AddonSGDPHyper, info: Float64Array, threads?: number): void;
  /**
   * The same off the JavaScript thread (a libuv worker). The addon holds references to every
   * array until the promise settles; the caller must not touch them meanwhile. Invalid arguments
   * throw synchronously (nothing is queued); the promise only rejects if the step itself fails.
   */
  adampStepAsync(slots: readonly AddonSlot[], hp: AddonAdamPHyper, info: Float64Array, threads?: number): Promise<void>;
  sgdpStepAsync(slots: readonly AddonSlot[], hp: AddonSGDPHyper, info: Float64Array, threads?: number): Promise<void>;
  /** Several groups, in order, in one worker. */
  stepAsync(jobs: readonly AddonJob[], threads?: number): Promise<void>;
  /** Benchmark floor: one-pass AdamW (28 B/elem). Only `p, g, m, v, step` of each slot are read. */
  adamStep(slots: readonly Pick<AddonSlot, 'p' | 'g' | 'm' | 'v' | 'step'>[], hp: AddonAdamHyper, threads?: number): void;
  /** Benchmark floor: one-pass SGD with momentum (20 B/elem). Only `p, g, m` of each slot are read. */
  sgdStep(slots: readonly Pick<AddonSlot, 'p' | 'g' | 'm'>[], hp: AddonSGDHyper, threads?: number): void;
  info(): AddonInfo;
  /** Chooses the kernels process-wide ('auto' = AVX2 when available); returns what is in effect. */
  setSimd(level: 'auto' | SimdLevel): SimdLevel;
}

/** The names `load.ts` checks for. */
export const ADDON_FUNCTIONS = [
  'adampStep', 'sgdpStep', 'adampStepAsync', 'sgdpStepAsync', 'stepAsync', 'adamStep', 'sgdStep', 'info', 'setSimd',
] as const satisfies readonly (keyof Addon)[];
