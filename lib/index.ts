/**
 * adamp: AdamP and SGDP for Node.js, with AdamW and SGD as registered baselines.
 *
 * ```ts
 * import { AdamP, SGDP } from 'adamp';
 * const opt = new AdamP(params, { lr: 1e-3, weightDecay: 1e-2 });
 * opt.step();
 * ```
 */
// The native backends register themselves with the backend selection when imported.
import './backends/native';
import './backends/cuda';

export { AdamP, SGDP, AdamW, SGD, SPECS, specOf } from './optim/registry';
export type { OptimizerClass } from './optim/registry';
export type { AdamPOptions, AdamPParamState } from './optim/adamp';
export type { SGDPOptions, SGDPParamState } from './optim/sgdp';
export type { AdamWOptions, AdamWParamState } from './optim/adamw';
export type { SGDOptions, SGDParamState } from './optim/sgd';
export type { OptimizerSpec, OptionDef, StateSlotDef } from './optim/spec';
export { Optimizer } from './optimizer';
export { AdampError } from './errors';
export type { AdampErrorCode } from './errors';
export { backends } from './backends/select';
export type { BackendReport } from './backends/select';
export { DeviceTensor, deviceMemory } from './device/tensor';
export type { DeviceTensorOptions, ExternalTensorDescriptor } from './device/tensor';
export type { CudaMemoryStats } from './backends/cuda/binding';
export type {
  AnyParam, BackendName, DeviceParam, HalfParam, HalfParamState, HalfDtype, StorageDtype, ParamDtype, OptimizerConfig, Param, ParamGroup, ParamGroupInput,
  ParamStepInfo, Projection, StateDict,
} from './types';
export { GradScaler } from './amp/grad-scaler';
export type { GradScalerOptions, GradScalerState } from './amp/grad-scaler';
export {
  bf16ToF32, f32ToBf16, f16ToF32, f32ToF16, halfToFloat32, float32ToHalf,
} from './core/half';
export {
  saveCheckpoint, saveCheckpointSync, loadCheckpoint, loadCheckpointSync, serializeCheckpoint, deserializeCheckpoint,
  CHECKPOINT_FORMAT,
} from './checkpoint';
export type { CheckpointInfo, CheckpointOptimizer, LoadCheckpointOptions, SaveCheckpointOptions, CheckpointTrust, CheckpointIoError } from './checkpoint';
export { paramsFromStore, groupsFromStore, storeParam } from './store';
export type { StoredTensor, TensorStore, TensorSelector, StoreParamsOptions, StoreGroup } from './store';
export {
  LRScheduler, LambdaLR, StepLR, MultiStepLR, ExponentialLR, LinearLR, CosineAnnealingLR, OneCycleLR, SequentialLR,
} from './schedulers';
export type {
  SchedulableGroup, SchedulableOptimizer, SchedulerStateDict, GroupValueKey, LrLambda, LambdaLROptions, StepLROptions,
  MultiStepLROptions, ExponentialLROptions, LinearLROptions, CosineAnnealingLROptions, OneCycleLROptions, OneCyclePhase,
  SequentialLROptions,
} from './schedulers';
export { clipGradNorm } from './clip';
export type { ClipGradNormOptions, GradHolder } from './clip';
