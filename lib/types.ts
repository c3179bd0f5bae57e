/**
 * Public types of the adamp package.
 *
 * Names follow PyTorch's `torch.optim` API in camelCase (`weight_decay` -> `weightDecay`,
 * `param_groups` -> `paramGroups`, `state_dict()` -> `stateDict()`).
 */

import type { BackendName } from './backends/engine';
import type { DeviceTensor } from './device/tensor';
import type { HalfDtype, StorageDtype } from './core/half';

export type { HalfDtype, StorageDtype } from './core/half';

/** One tensor the optimizer updates in place. */
export interface Param {
  /** The weights, row-major, `length === product(shape)`. Updated in place by `step()`. */
  data: Float32Array;
  /**
   * The gradient, same length and layout as `data`, read at every `step()`.
   * `null` means "no gradient this step": the param is skipped entirely (no state is
   * created, no weight decay, no step count), exactly like `p.grad = None` in PyTorch.
   */
  grad: Float32Array | null;
  /** The tensor's shape; `[]` for a scalar. Tensors with more than one dimension are eligible for projection. */
  shape: readonly number[];
  /** A name for error messages, diagnostics and checkpoints (e.g. `'conv1.weight'`). */
  name?: string;
  /**
   * The output-channel axis used by the channel view of the projection test. Default `0`
   * (PyTorch layout, as the official code assumes). TensorFlow.js kernels keep output channels
   * on the last axis: pass `-1` there. Negative values count from the end.
   */
  channelAxis?: number;
  /** The storage type: `'float32'` (the default for a Float32Array). 16-bit params are `HalfParam`s. */
  dtype?: 'float32';
}

/**
 * A host param stored in 16 bits (docs/mixed-precision.md): `data` holds the raw bits of each
 * element (bfloat16 or IEEE float16) in a `Uint16Array` (for float16, a runtime's `Float16Array`
 * is taken too). The optimizer state is float32; with master weights (the default, see
 * `OptimizerConfig.masterWeights`) the step runs on a float32 copy of the param kept in the state
 * and writes the param back rounded to nearest even.
 */
export interface HalfParam {
  /** The weights' bits, row-major, `length === product(shape)`. Updated in place by `step()`. */
  data: Uint16Array;
  /** The gradient: 16-bit bits of the same dtype (same length), a Float32Array, or `null` (skipped, as for `Param`). */
  grad: Uint16Array | Float32Array | null;
  /** `'bfloat16'` or `'float16'`: required, since a Uint16Array does not say which. */
  dtype: HalfDtype;
  shape: readonly number[];
  name?: string;
  channelAxis?: number;
}

/**
 * A param that lives on the GPU: the CUDA backend updates `data` in place, without copies.
 * `backend: 'auto'` picks CUDA for an optimizer with device params.
 */
export interface DeviceParam {
  /** The weights in device memory: `DeviceTensor.zeros/fromHost`, or a store's memory via `DeviceTensor.fromPointer`. */
  data: DeviceTensor;
  /**
   * The gradient: a DeviceTensor of the same shape (read in place; float32 or the param's dtype),
   * a Float32Array (uploaded at each step; for a 16-bit param also a Uint16Array of its bits), or
   * `null` (skipped this step, as for host params).
   */
  grad: DeviceTensor | Float32Array | Uint16Array | null;
  /** Defaults to `data.shape`; when given it must equal it. */
  shape?: readonly number[];
  name?: string;
  /** As for `Param.channelAxis`. */
  channelAxis?: number;
  /** The DeviceTensor's dtype (may be omitted; when given it must agree): a 16-bit DeviceTensor is a 16-bit param (docs/mixed-precision.md#cuda). */
  dtype?: 'float32' | 'bfloat16' | 'float16';
}

/** Any param an optimizer accepts. */
export type AnyParam = Param | DeviceParam | HalfParam;

/** The storage type of any param. */
export type ParamDtype = StorageDtype;

/** A parameter group: its params and any per-group hyperparameter overrides. */
export type ParamGroupInput<O, P extends AnyParam = Param> = { params: P[] } & Partial<O>;

/** A parameter group as the optimizer holds it: every hyperparameter resolved. Change values between steps (schedulers). */
export type ParamGroup<O, P extends AnyParam = Param> = { params: P[] } & Required<O>;

export type { BackendName } from './backends/engine';

/** How an optimizer is constructed beyond its hyperparameters. */
export interface OptimizerConfig {
  /**
   * Which implementation runs the step. `'auto'` (default) picks the best available:
   * `'native'` (the C++ core) when the addon loads, else `'js'` (pure TypeScript).
   * `'native'` or `'cuda'` throw a descriptive error when unavailable.
   */
  backend?: 'auto' | BackendName;
  /** Worker threads of the native CPU backend. Default: all cores. Results are identical for every thread count. */
  threads?: number;
  /**
   * CUDA backend: a `cudaStream_t` (as a bigint) to queue the steps on, e.g. the stream your
   * backward pass ran on. Default: the optimizer's own stream, which is ordered after work on the
   * legacy default stream. Change it later with `optimizer.setStream()`.
   */
  stream?: bigint;
  /** CUDA backend with host (Float32Array) params: the device to run on. Default `0`; device params bring their own. */
  device?: number;
  /**
   * What `lastStepInfo` reports. `'decisions'` (default): the projection decision and what it
   * compared, which come from sums the step needs anyway. `'full'`: also the weight norm, the
   * update norm and the effective step size, which cost the step extra reductions over every
   * param (measured at about 5-10% of a native AdamP or SGDP step on ResNet-50 shapes, docs/performance.md).
   */
  diagnostics?: 'decisions' | 'full';
  /**
   * 16-bit params (`HalfParam`): keep a float32 master copy of each in the optimizer state
   * (saved in `stateDict()` and checkpoints as `master`); the step runs on it as on a float32
   * param and the 16-bit param is its rounding to nearest even. Default `true`. `false`: the step
   * runs on the param widened to float32 and rounds back (2 bytes per element less, and updates
   * smaller than half a 16-bit ulp are lost). No effect on float32 params.
   */
  masterWeights?: boolean;
  /**
   * How bfloat16 params are rounded back after the step: `'nearest'` (default, ties to even) or
   * `'stochastic'` (up or down with probabilities that make the rounding unbiased; seeded by
   * `seed`, deterministic per step and element, identical on every backend). float16 params are
   * always rounded to nearest.
   */
  rounding?: 'nearest' | 'stochastic';
  /** The seed of stochastic rounding, an integer in [0, 2^32 - 1]. Default `0`. */
  seed?: number;
}

/**
 * Which projection a param received at the last step: `channel`/`layer` = projected on that view;
 * `none` = tested, not projected; `not_eligible` = ndim <= 1; `not_applicable` = the optimizer has
 * no projection (AdamW, SGD); `no_grad` = skipped.
 */
export type Projection = 'channel' | 'layer' | 'none' | 'not_eligible' | 'not_applicable' | 'no_grad';

/**
 * Per-param diagnostics of the last step: the projection decision, what it compared, and the
 * quantities that show the paper's effect (weight norm and effective step size).
 */
export interface ParamStepInfo {
  /** Index of the param over all groups, in order (the `stateDict()` index). */
  index: number;
  /** The param's name, when it has one. */
  name?: string;
  /** The decision (see `Projection`). */
  projection: Projection;
  /** max over output channels of |cos(g, p)|; `null` when the channel view was not evaluated. */
  channelMaxCos: number | null;
  /** The float32 threshold `delta / sqrt(fan-in)` the channel view was compared with; `null` when not evaluated. */
  channelThreshold: number | null;
  /** |cos(g, p)| of the whole tensor; `null` when the layer view was not evaluated (channel fired, or not eligible). */
  layerCos: number | null;
  /** The float32 threshold `delta / sqrt(numel)` of the layer view; `null` when not evaluated. */
  layerThreshold: number | null;
  /** The weight-decay ratio applied this step: `wdRatio` when projected, else `1`. `null` for `no_grad`. */
  wdRatio: number | null;
  /** ||p|| after the step (`null` for `no_grad`, and unless `diagnostics: 'full'`). */
  weightNorm: number | null;
  /** ||p_after - p_before|| (`null` for `no_grad`, and unless `diagnostics: 'full'`). */
  updateNorm: number | null;
  /** The effective step size ||dp|| / ||p_before|| (`null` for `no_grad`, and unless `diagnostics: 'full'`; `Infinity` when p was zero and moved). */
  effectiveStepSize: number | null;
}

/** What a 16-bit param's state adds (docs/mixed-precision.md); absent for float32 params. */
export interface HalfParamState {
  /** The param's storage type, `'bfloat16'` or `'float16'`. */
  dtype?: 'bfloat16' | 'float16';
  /** The float32 master weights (config.masterWeights). */
  master?: Float32Array;
}

/**
 * A snapshot of an optimizer, PyTorch-style: state keyed by the param's index over all groups,
 * and the groups' hyperparameters with `params` as lists of those indices. Arrays are copies.
 */
export interface StateDict<S, O> {
  state: { [paramIndex: number]: S & HalfParamState };
  paramGroups: Array<{ params: number[] } & Required<O>>;
}
