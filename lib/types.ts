/**
 * Public types of the adamp package.
 *
 * Names follow PyTorch's `torch.optim` API in camelCase (`weight_decay` -> `weightDecay`,
 * `param_groups` -> `paramGroups`, `state_dict()` -> `stateDict()`).
 */

import type { DeviceTensor } from './device/tensor';

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
}

/**
 * A param that lives on the GPU: the CUDA backend updates `data` in place, without copies.
 * `backend: 'auto'` picks CUDA for an optimizer with device params.
 */
export interface DeviceParam {
  /** The weights in device memory: `DeviceTensor.zeros/fromHost`, or a store's memory via `DeviceTensor.fromPointer`. */
  data: DeviceTensor;
  /**
   * The gradient: a DeviceTensor of the same shape (read in place), a Float32Array (uploaded at
   * each step), or `null` (skipped this step, as for host params).
   */
  grad: DeviceTensor | Float32Array | null;
  /** Defaults to `data.shape`; when given it must equal it. */
  shape?: readonly number[];
  name?: string;
  /** As for `Param.channelAxis`. */
  channelAxis?: number;
}

/** Any param an optimizer accepts. */
export type AnyParam = Param | DeviceParam;

/** Hyperparameters of AdamP (Heo et al., ICLR 2021). */
export interface AdamPOptions {
  /** Learning rate. Default `1e-3`. Must be finite and `>= 0`. */
  lr?: number;
  /** Coefficients of the running averages of the gradient and its square. Default `[0.9, 0.999]`, each in `[0, 1)`. */
  betas?: readonly [number, number];
  /** Added to the denominator (Adam) and inside the cosine similarity and the weight norm of the projection. Default `1e-8`, `>= 0`. */
  eps?: number;
  /** Decoupled (AdamW-style) weight decay: `p *= 1 - lr * weightDecay * ratio`. Default `0`. Values `<= 0` apply no decay (as the official code). */
  weightDecay?: number;
  /** Threshold of the projection test: project when `max|cos| < delta / sqrt(fan-in)`. Default `0.1`, `>= 0`. `0` turns the projection off (AdamP becomes AdamW). */
  delta?: number;
  /** Weight-decay multiplier applied to params whose update was projected. Default `0.1`, `>= 0`. */
  wdRatio?: number;
  /** Nesterov momentum: `u = (beta1 * m + (1 - beta1) * g) / denom`. Default `false`. */
  nesterov?: boolean;
}

/** Hyperparameters of SGDP (Heo et al., ICLR 2021). */
export interface SGDPOptions {
  /** Learning rate. **Required** (no default, as in the official code). Finite and `>= 0`. */
  lr: number;
  /** Momentum factor. Default `0`, finite and `>= 0`. `momentum >= 1` together with weight decay is rejected. */
  momentum?: number;
  /** Dampening of the gradient in the momentum buffer: `buf = momentum * buf + (1 - dampening) * g`, from the first step on. Default `0`. */
  dampening?: number;
  /** Weight decay, divided by `1 - momentum`: `p *= 1 - lr * weightDecay * ratio / (1 - momentum)`. Default `0`; values `<= 0` apply no decay. */
  weightDecay?: number;
  /** Nesterov momentum: `d = g + momentum * buf`. Default `false`. */
  nesterov?: boolean;
  /** Added inside the cosine similarity and to the weight norm of the projection. Default `1e-8`, `>= 0`. */
  eps?: number;
  /** Threshold of the projection test: project when `max|cos| < delta / sqrt(fan-in)`. Default `0.1`, `>= 0`. `0` turns the projection off (SGDP becomes SGD with momentum). */
  delta?: number;
  /** Weight-decay multiplier applied to params whose update was projected. Default `0.1`, `>= 0`. */
  wdRatio?: number;
}

/** A parameter group: its params and any per-group hyperparameter overrides. */
export type ParamGroupInput<O, P extends AnyParam = Param> = { params: P[] } & Partial<O>;

/** A parameter group as the optimizer holds it: every hyperparameter resolved. Change values between steps (schedulers). */
export type ParamGroup<O, P extends AnyParam = Param> = { params: P[] } & Required<O>;

/** The implementations a step can run on. */
export type BackendName = 'js' | 'native' | 'cuda';

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
}

/** Which projection a param received at the last step. */
export type Projection = 'channel' | 'layer' | 'none' | 'not_eligible' | 'no_grad';

/**
 * Per-param diagnostics of the last step: the projection decision, what it compared, and the
 * quantities that show the paper's effect (weight norm and effective step size).
 */
export interface ParamStepInfo {
  /** Index of the param over all groups, in order (the `stateDict()` index). */
  index: number;
  /** The param's name, when it has one. */
  name?: string;
  /** The decision: `channel`/`layer` = projected on that view; `none` = tested, not projected; `not_eligible` = ndim <= 1; `no_grad` = skipped. */
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
  /** ||p|| after the step (`null` for `no_grad`). */
  weightNorm: number | null;
  /** ||p_after - p_before|| (`null` for `no_grad`). */
  updateNorm: number | null;
  /** The effective step size ||dp|| / ||p_before|| (`null` for `no_grad`; `Infinity` when p was zero and moved). */
  effectiveStepSize: number | null;
}

/** Per-param state of AdamP, as in `torch.optim` (`exp_avg`, `exp_avg_sq`). */
export interface AdamPParamState {
  step: number;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

/** Per-param state of SGDP (`momentum_buffer` is named `momentum` in the official code). */
export interface SGDPParamState {
  momentum: Float32Array;
}

/**
 * A snapshot of an optimizer, PyTorch-style: state keyed by the param's index over all groups,
 * and the groups' hyperparameters with `params` as lists of those indices. Arrays are copies.
 */
export interface StateDict<S, O> {
  state: { [paramIndex: number]: S };
  paramGroups: Array<{ params: number[] } & Required<O>>;
}
