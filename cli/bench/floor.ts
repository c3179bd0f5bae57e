/**
 * The floor the native AdamP/SGDP are measured against: the registered one-pass AdamW and SGD
 * (momentum), on the same native backend, flags, SIMD and thread pool, with the default
 * diagnostics, so the ratio isolates what the projection costs.
 */
import { AdamW, SGD } from '../../lib/optim/registry';
import { backends } from '../../lib/backends/select';
import type { Param } from '../../lib/types';

export interface FloorRun {
  step(): void;
  dispose(): void;
}

export interface FloorKernels {
  prepare(algo: 'adam' | 'sgd', params: readonly Param[], hp: { lr: number; momentum: number; threads: number }): FloorRun;
}

/** AdamW and SGD on the native backend, or null when it cannot run here. */
export function loadFloor(): FloorKernels | null {
  if (!backends().find((b) => b.name === 'native')?.available) return null;
  return {
    prepare(algo, params, hp) {
      // Own gradients view per run, own state (as an optimizer's); weight decay 0 like the bench's AdamP/SGDP.
      const own = params.map((p) => ({ data: p.data, grad: p.grad ?? new Float32Array(p.data.length), shape: p.shape }));
      const config = { backend: 'native' as const, threads: hp.threads };
      const opt = algo === 'adam'
        ? new AdamW(own, { lr: hp.lr, weightDecay: 0 }, config)
        : new SGD(own, { lr: hp.lr, momentum: hp.momentum }, config);
      return { step: () => opt.step(), dispose: () => opt.dispose() };
    },
  };
}
