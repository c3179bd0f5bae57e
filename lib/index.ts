/**
 * adamp: AdamP and SGDP for Node.js.
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

export { AdamP } from './adamp';
export { SGDP } from './sgdp';
export { Optimizer } from './optimizer';
export { AdampError } from './errors';
export type { AdampErrorCode } from './errors';
export { backends } from './backends/select';
export type { BackendReport } from './backends/select';
export { DeviceTensor, deviceMemory } from './device/tensor';
export type { DeviceTensorOptions, ExternalTensorDescriptor } from './device/tensor';
export type { CudaMemoryStats } from './backends/cuda/binding';
export type {
  AdamPOptions, AdamPParamState, AnyParam, BackendName, DeviceParam, OptimizerConfig, Param, ParamGroup, ParamGroupInput,
  ParamStepInfo, Projection, SGDPOptions, SGDPParamState, StateDict,
} from './types';
export {
  saveCheckpoint, saveCheckpointSync, loadCheckpoint, loadCheckpointSync, serializeCheckpoint, deserializeCheckpoint,
  CHECKPOINT_FORMAT,
} from './checkpoint';
export type { CheckpointInfo, CheckpointOptimizer, LoadCheckpointOptions, SaveCheckpointOptions } from './checkpoint';
export { paramsFromStore, groupsFromStore, storeParam } from './store';
export type { StoredTensor, TensorStore, TensorSelector, StoreParamsOptions, StoreGroup } from './store';
