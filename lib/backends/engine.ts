/**
 * The contract between the optimizer facade and the implementations of one step.
 *
 * The facade validates everything, creates state, counts steps and resolves hyperparameters;
 * an engine only does arithmetic on already-checked buffers. Every engine (TypeScript, the
 * native C++ core, CUDA) receives the same slots and fills the same info record, so the
 * facade never knows which one ran.
 */
import type { BackendName } from '../types';
import type { DeviceView } from '../device/tensor';

/**
 * One tensor of a step, with its channel view as `outer x channels x inner`: element `i`
 * belongs to output channel `floor(i / inner) % channels`. For the default channel axis 0,
 * `outer = 1` and `inner = numel / shape[0]`; for a TensorFlow.js kernel (axis -1),
 * `inner = 1` and `outer = numel / shape[-1]`. The channel view has `channels` rows of
 * `numel / channels` elements; the layer view is one row of `numel`.
 */
export interface Slot {
  p: Float32Array;
  g: Float32Array;
  /** AdamP: exp_avg. SGDP: the momentum buffer. */
  m: Float32Array;
  /** AdamP: exp_avg_sq. SGDP: unused (an empty array). */
  v: Float32Array;
  outer: number;
  channels: number;
  inner: number;
  /** ndim > 1: the projection test runs. */
  eligible: boolean;
  /** AdamP: the step count after this step's increment (1 at the first step). SGDP: unused. */
  step: number;
  /**
   * A param that lives on the GPU (only the CUDA engine receives these). Then `p` is empty, `g`
   * holds a host gradient to upload or is empty, and `m`/`v` are empty while the state lives on
   * the device (or full arrays to upload, after `loadStateDict`).
   */
  device?: DeviceSlot;
}

/** The device side of a slot. */
export interface DeviceSlot {
  /** The param: identifies the tensor's state across steps. */
  key: object;
  numel: number;
  p: DeviceView;
  /** The gradient in device memory, or `null` when `Slot.g` is a host array to upload. */
  g: DeviceView | null;
}

/** Hyperparameters of one AdamP group, as plain doubles. */
export interface AdamPScalars {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  delta: number;
  wdRatio: number;
  nesterov: boolean;
}

/** Hyperparameters of one SGDP group, as plain doubles. */
export interface SGDPScalars {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  eps: number;
  delta: number;
  wdRatio: number;
}

/** Doubles written per slot into the info array. */
export const INFO_STRIDE = 8;
/** Offsets within one slot's info record. */
export const Info = {
  /** Decision code, see `Decision`. */
  decision: 0,
  /** max |cos| over channels (NaN when not evaluated). */
  channelMaxCos: 1,
  /** float32 threshold of the channel view (NaN when not evaluated). */
  channelThreshold: 2,
  /** |cos| of the layer view (NaN when not evaluated). */
  layerCos: 3,
  /** float32 threshold of the layer view (NaN when not evaluated). */
  layerThreshold: 4,
  /** ||p||^2 before the step. */
  normSqBefore: 5,
  /** ||p||^2 after the step. */
  normSqAfter: 6,
  /** ||p_after - p_before||^2. */
  deltaSq: 7,
} as const;

/** Decision codes in `info[decision]`. */
export const Decision = { none: 0, channel: 1, layer: 2, notEligible: 3 } as const;

/** One implementation of the AdamP and SGDP steps. */
export interface Engine {
  readonly name: BackendName;
  /** Step every slot of one group; writes `INFO_STRIDE` doubles per slot into `info` (slot order). */
  stepAdamP(slots: readonly Slot[], hp: AdamPScalars, info: Float64Array): void;
  stepSGDP(slots: readonly Slot[], hp: SGDPScalars, info: Float64Array): void;
  /**
   * Optional: run a whole step (every group) off the JavaScript thread. The facade guarantees
   * that no other step runs on the same optimizer until the promise settles.
   */
  stepAsync?(jobs: readonly AsyncJob[]): Promise<void>;
  /** Optional: called before the facade reads params or state (engines that keep copies elsewhere write them back). */
  flush?(): void;
  /** Optional: called before the facade reads the info records of the last step (engines that compute them elsewhere fill them in). */
  flushInfo?(): void;
  /** Optional: the facade replaced state on the host (`loadStateDict`); drop copies held elsewhere. */
  invalidate?(): void;
  /** Optional: release resources held for this optimizer. */
  dispose?(): void;
  /** CUDA: the state of a device param (`DeviceSlot.key`) copied to the host, or undefined when it has none on the device. */
  readDeviceState?(key: object): { m: Float32Array; v: Float32Array } | undefined;
  /** CUDA: queue steps on a caller's stream from now on (`null`: the engine's own). */
  setStream?(stream: bigint | null): void;
  /** CUDA: the stream steps are queued on now. */
  currentStream?(): bigint;
}

/** One group's work for `Engine.stepAsync`. */
export type AsyncJob =
  | { kind: 'adamp'; slots: readonly Slot[]; hp: AdamPScalars; info: Float64Array }
  | { kind: 'sgdp'; slots: readonly Slot[]; hp: SGDPScalars; info: Float64Array };
