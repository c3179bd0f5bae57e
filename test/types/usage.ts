/**
 * Compile-time checks of the published API (run by `npm run typecheck`): what users should be
 * able to write compiles, and common mistakes do not.
 */
import { AdamP, SGDP, backends } from '../../lib/index';
import type { Param, ParamStepInfo, Projection, StateDict, AdamPParamState, AdamPOptions } from '../../lib/index';

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

void [groups, sgdp, b, proj, step, names, bad];
