/**
 * The native one-pass Adam and SGD-with-momentum kernels (no projection): the floor the native
 * AdamP/SGDP are measured against. They live in the addon next to the AdamP core, built with the
 * same flags, SIMD and thread pool, so the ratio isolates what the projection costs.
 */
import { addonOrUndefined } from '../binding/load';
import type { Param } from '../types';

export interface FloorRun {
  step(): void;
  dispose(): void;
}

export interface FloorKernels {
  prepare(algo: 'adam' | 'sgd', params: readonly Param[], hp: { lr: number; momentum: number; threads: number }): FloorRun;
}

/** The addon's floor kernels (`adamStep`, `sgdStep`), or null when the addon does not load. */
export function loadFloor(): FloorKernels | null {
  const addon = addonOrUndefined();
  if (!addon) return null;
  return {
    prepare(algo, params, hp) {
      // Own state per run, like an optimizer's; the step count advances as Adam's would.
      const slots = params.map((p) => ({
        p: p.data,
        g: p.grad ?? new Float32Array(p.data.length),
        m: new Float32Array(p.data.length),
        v: algo === 'adam' ? new Float32Array(p.data.length) : new Float32Array(0),
        step: 0,
      }));
      const adamHp = { lr: hp.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
      const sgdHp = { lr: hp.lr, momentum: hp.momentum, dampening: 0, weightDecay: 0, nesterov: false };
      return {
        step: algo === 'adam'
          ? () => { for (const s of slots) s.step++; addon.adamStep(slots, adamHp, hp.threads); }
          : () => addon.sgdStep(slots, sgdHp, hp.threads),
        dispose: () => { slots.length = 0; },
      };
    },
  };
}
