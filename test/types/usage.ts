/**
 * Compile-time checks of the published API (run by `npm run typecheck`): what users should be
 * able to write compiles, and common mistakes do not.
 */
import { AdamP, SGDP, DeviceTensor, backends, deviceMemory } from '../../lib/index';
import type { DeviceParam, Param, ParamStepInfo, Projection, StateDict, AdamPParamState, AdamPOptions, CudaMemoryStats } from '../../lib/index';

const w: Param = { data: new Float32Array(6), grad: null, shape: [2, 3], name: 'w', channelAxis: -1 };
const opt = new AdamP([w], { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, delta: 0.1, wdRatio: 0.1, nesterov: false }, { backend: 'auto' });
const groups = new AdamP([{ params: [w], lr: 1e-2 }], { weightDecay: 1e-2 });
const sgdp = new SGDP([w], { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov: true });
opt.step();
void opt.stepAsync();
opt.zeroGrad();
opt.paramGroups[0].lr = 5e-4;
const b: 'js' | 'native' | 'cuda' = opt.backend;
const info: readonly ParamStepInfo[] = opt.lastStepInfo;
const proj: Projection = info[0].projection;
const sd: StateDict<AdamPParamState, AdamPOptions> = opt.stateDict();
const step: number = sd.state[0].step;
opt.loadStateDict(sd);
const names: string[] = backends().map((r) => r.name);

// @ts-expect-error SGDP requires lr
new SGDP([w], { momentum: 0.9 });
// @ts-expect-error PyTorch snake_case names are not options
new AdamP([w], { weight_decay: 0.1 });
// @ts-expect-error betas is a pair
new AdamP([w], { betas: [0.9] });
// @ts-expect-error data must be a Float32Array
const bad: Param = { data: new Float64Array(2), grad: null, shape: [2] };
// @ts-expect-error no such backend
new AdamP([w], {}, { backend: 'tpu' });

// Device params: the optimizer's params keep their types.
declare const wt: DeviceTensor;
const dp: DeviceParam = { data: wt, grad: DeviceTensor.zeros([2, 3], { device: 0 }), name: 'w' };
const gpuOpt = new AdamP([dp, { data: DeviceTensor.fromPointer({ pointer: 0x7f00n, byteOffset: 16, shape: [4], strides: null, dtype: 'float32', device: 0 }), grad: new Float32Array(4) }], {}, { backend: 'auto', stream: 0n });
const onDevice: DeviceTensor = gpuOpt.paramGroups[0].params[0].data;
const hostData: Float32Array = opt.paramGroups[0].params[0].data; // host optimizers keep Float32Array params
gpuOpt.setStream(null);
const s: bigint | null = gpuOpt.stream;
const mem: CudaMemoryStats = deviceMemory();
const copy: Float32Array = wt.toHost();
// @ts-expect-error a device pointer is a bigint, not a number
DeviceTensor.fromPointer({ pointer: 0x7f00, shape: [4] });
// @ts-expect-error a device param's data is a DeviceTensor
const badDev: DeviceParam = { data: new Float32Array(2), grad: null };

void [groups, sgdp, b, proj, step, names, bad, onDevice, hostData, s, mem, copy, badDev];
