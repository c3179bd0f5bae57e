/**
 * The typed contract of the addon's CUDA exports (native/cuda/napi_exports.cc), present only in
 * CUDA builds of the addon. Keep in step with the C++ side.
 */
import type { Addon } from '../../binding/types';

/** An opaque context: device copies of an optimizer's tensors, one CUDA stream. */
export type CudaHandle = { readonly __cudaContext: unique symbol };

/** What the CUDA runtime says about this machine. */
export interface CudaStatus {
  /** A device of compute capability >= 7.5 is usable. */
  available: boolean;
  /** Why not, for a person (empty when available). */
  reason: string;
  /** cudaGetDeviceCount's error code: 0, 35 = driver missing or too old, 100 = no device. */
  code: number;
  deviceCount: number;
  /** CUDA versions as encoded by the runtime (13000 = 13.0); driver 0 when there is none. */
  runtimeVersion: number;
  driverVersion: number;
  devices: Array<{ name: string; computeCapability: string; totalMemory: number }>;
}

/** Scheduling knobs of a context (0 / omitted = default); results do not depend on them beyond rounding of sums. */
export interface CudaConfig {
  chunk?: number;
  group?: number;
  lag?: number;
  blocksPerSm?: number;
  device?: number;
}

/** What the C++ registry says about one optimizer (the same facts as the addon's `kinds()`). */
export interface CudaKind {
  name: string;
  /** State slots per element. */
  slots: number;
  /** Hyperparameter names in wire order. */
  hyper: string[];
  projects: boolean;
}

/** Buffer selectors of cudaUpload / cudaDownload / cudaDeviceAddress: the param, its gradient, state slot k. */
export const CudaBuffer = { p: 0, g: 1, state: (k: number): number => 2 + k } as const;

/** How a step runs. */
export interface CudaStepOptions {
  /** Compute the info record's norms; when false they are NaN (the squared norm before a projected tensor's step comes free). Default true. */
  norms?: boolean;
  /**
   * Loss scaling on the device: the float32 scale's address (grads read as f32(g * f32(1 / scale)))
   * and the found-inf int's (nonzero: the step changes nothing). `found` alone: grads already
   * unscaled (cudaUnscaleGrads) are read as they are, the step still skipped when it is set.
   */
  scale?: bigint;
  found?: bigint;
}

export interface CudaAddon {
  cudaStatus(): CudaStatus;
  /** The optimizers the kernels were built for, in registry (kind number) order. */
  cudaKinds(): CudaKind[];
  /** A context for one kind (a registry name); throws ERR_ADAMP_INVALID_ARGUMENT for an unknown kind. */
  cudaCreate(kind: string, config?: CudaConfig): CudaHandle;
  /** `external`: CudaExternal flags of buffers the caller binds (cudaBind) instead of the context allocating them. */
  cudaAddTensor(h: CudaHandle, numel: number, outer: number, channels: number, inner: number, eligible: boolean, external?: number): number;
  /**
   * Queued host-to-device copy; `data` may be reused when it returns. A gradient (`CudaBuffer.g`)
   * goes through pinned staging and returns before the copy ran (it waits only when the device
   * is two steps behind); other buffers are copied from pageable memory.
   */
  cudaUpload(h: CudaHandle, id: number, which: number, data: Float32Array): void;
  /** Waits for the context's queued work, then copies. */
  cudaDownload(h: CudaHandle, id: number, which: number, out: Float32Array): void;
  /** The steps a tensor has completed (the next step uses completedSteps + 1). */
  cudaSetStep(h: CudaHandle, id: number, completedSteps: number): void;
  /**
   * One step of the tensors `ids` with one group's hyperparameters in the kind's wire order
   * (booleans as 0/1), checked by the C++ policy (ERR_ADAMP_INVALID_ARGUMENT naming the field).
   * Queued on the device; returns without waiting.
   */
  cudaStep(h: CudaHandle, ids: Int32Array, hyper: Float64Array, options?: CudaStepOptions): void;
  /** The info records of the last step of `ids` (8 doubles each, see engine.ts `Info`); waits. */
  cudaInfo(h: CudaHandle, ids: Int32Array, out: Float64Array): void;
  cudaSync(h: CudaHandle): void;
  cudaDestroy(h: CudaHandle): void;

  // ---- device memory (native/cuda/device_memory.cu) ----
  /**
   * Device memory zeroed in the order of `stream` (omitted/null: the legacy default stream, which
   * blocking streams wait for); returns without waiting for the device. Freed by cudaBufferFree or
   * when the handle is garbage-collected (never waits: a background thread frees it). Throws ERR_ADAMP_CUDA_OOM.
   */
  cudaAlloc(device: number, bytes: number, stream?: bigint | null): CudaBufferHandle;
  cudaBufferFree(b: CudaBufferHandle): void;
  cudaBufferAddress(b: CudaBufferHandle): bigint;
  /** Synchronous copies between a host array and a device view (strides in elements, null = row-major). */
  cudaCopyToDevice(device: number, ptr: bigint, shape: readonly number[], strides: readonly number[] | null, src: Float32Array): void;
  cudaCopyToHost(device: number, ptr: bigint, shape: readonly number[], strides: readonly number[] | null, dst: Float32Array): void;
  /** Sets a device view to zero (synchronous). */
  cudaZero(device: number, ptr: bigint, shape: readonly number[], strides: readonly number[] | null): void;
  cudaPointerInfo(ptr: bigint): { kind: 'unregistered' | 'host' | 'device' | 'managed' | 'unknown'; device: number; code: number };
  cudaMemInfo(device: number): { free: number; total: number };
  cudaMemoryStats(): CudaMemoryStats;
  /** The device address of a context buffer (or of what an external buffer is bound to). */
  cudaDeviceAddress(h: CudaHandle, id: number, which: number): bigint;
  /** Binds an external buffer (p or g) of a tensor added with the matching `external` flag. */
  cudaBind(h: CudaHandle, id: number, which: number, ptr: bigint): void;
  /** Queued on the context's stream: dst[i] = src[i] over `shape`, each side with its strides (null = row-major). */
  cudaCopyStrided(h: CudaHandle, dst: bigint, dstStrides: readonly number[] | null, src: bigint, srcStrides: readonly number[] | null, shape: readonly number[]): void;
  /** Queue on a caller's cudaStream_t from now on (null: the context's own stream). */
  cudaSetStream(h: CudaHandle, stream: bigint | null): void;
  cudaGetStream(h: CudaHandle): bigint;
  /** Resolves when everything queued so far on the context's stream has completed (waited off the JS thread). */
  cudaWhenDone(h: CudaHandle): Promise<void>;

  // ---- mixed precision and loss scaling on the device (docs/mixed-precision.md#cuda) ----
  /**
   * A tensor's storage: `CudaStorage` bits (the param's and gradient's CudaDtype, master weights,
   * stochastic rounding), with the rounding seed and the param's index. 16-bit data must be bound
   * (external); a p or g whose dtype changes is unbound until bound again.
   */
  cudaSetStorage(h: CudaHandle, id: number, storage: number, seed: number, index: number): void;
  cudaGetStorage(h: CudaHandle, id: number): number;
  /** Queues master weights = the bound 16-bit param, widened. */
  cudaInitMaster(h: CudaHandle, id: number): void;
  /** Queues the non-finite check of the tensors' gradients into the device int at `found` (zeroed first when `reset`). */
  cudaCheckGrads(h: CudaHandle, ids: Int32Array, found: bigint, reset: boolean): void;
  /**
   * Queues PyTorch's _amp_foreach_non_finite_check_and_unscale_ on float32 device views (strided
   * ones too) on the context's stream: the device int at `found` zeroed first when `reset`, set to
   * 1 when an element is Infinity/NaN, and every element multiplied in place by f32(1 / scale),
   * the scale read from device memory at `scale`. No host sync.
   */
  cudaUnscaleGrads(h: CudaHandle, grads: ReadonlyArray<{ pointer: bigint; shape: readonly number[]; strides: readonly number[] | null }>, scale: bigint, found: bigint, reset: boolean): void;
  /** The completed step counts of the tensors as the device holds them (waits). */
  cudaGetSteps(h: CudaHandle, ids: Int32Array): Float64Array;
  /** Whether the tensor's last step was skipped by the found-inf flag (reads the device: waits). */
  cudaLastSkipped(h: CudaHandle, id: number): boolean;
  /** Queues torch._amp_update_scale_ on a device scaler state (CUDA_SCALER layout). */
  cudaScalerUpdate(h: CudaHandle, state: bigint, mask: number, hostFound: boolean, growth: number, backoff: number, interval: number): void;
  /** Contiguous 16-bit data between a Uint16Array and device memory (complete when it returns). */
  cudaCopyBytes(device: number, ptr: bigint, host: Uint16Array, toDevice: boolean): void;
  cudaZeroBytes(device: number, ptr: bigint, bytes: number): void;
}

/** Storage codes of cudaSetStorage (native/cuda/adamp_cuda.h ADAMP_CUDA_F32/BF16/F16). */
export const CudaDtype = { float32: 0, bfloat16: 1, float16: 2 } as const;
/** cudaSetStorage bits: p dtype | g dtype << 2 | master | stochastic. */
export const CudaStorage = { grad: (dt: number): number => dt << 2, master: 16, stochastic: 32 } as const;
/** The device GradScaler state (ADAMP_CUDA_SCALER_BYTES): float32 scale at 0, int64 growth tracker at 8, int32 found flags at 16 + 4k. */
export const CUDA_SCALER = { bytes: 80, slots: 16, found: (k: number): number => 16 + 4 * k } as const;

/** An opaque device allocation. */
export type CudaBufferHandle = { readonly __cudaBuffer: unique symbol };

/** Counts of every device allocation the addon made (contexts, device tensors, staging). */
export interface CudaMemoryStats {
  liveAllocations: number;
  liveBytes: number;
  totalAllocations: number;
  peakBytes: number;
}

/** `external` flags of cudaAddTensor. */
export const CudaExternal = { p: 1, g: 2 } as const;

export const CUDA_FUNCTIONS = [
  'cudaStatus', 'cudaKinds', 'cudaCreate', 'cudaAddTensor', 'cudaUpload', 'cudaDownload', 'cudaSetStep', 'cudaStep', 'cudaInfo',
  'cudaSync', 'cudaDestroy', 'cudaAlloc', 'cudaBufferFree', 'cudaBufferAddress',
  'cudaCopyToDevice', 'cudaCopyToHost', 'cudaZero', 'cudaPointerInfo', 'cudaMemInfo', 'cudaMemoryStats', 'cudaDeviceAddress', 'cudaBind', 'cudaCopyStrided',
  'cudaSetStream', 'cudaGetStream', 'cudaWhenDone',
  'cudaSetStorage', 'cudaGetStorage', 'cudaInitMaster', 'cudaCheckGrads', 'cudaUnscaleGrads', 'cudaGetSteps', 'cudaLastSkipped', 'cudaScalerUpdate', 'cudaCopyBytes', 'cudaZeroBytes',
] as const satisfies readonly (keyof CudaAddon)[];

/** Whether this addon was built with the CUDA engine. */
export function hasCuda(addon: Addon): addon is Addon & CudaAddon {
  const a = addon as unknown as Record<string, unknown>;
  return CUDA_FUNCTIONS.every((k) => typeof a[k] === 'function');
}
