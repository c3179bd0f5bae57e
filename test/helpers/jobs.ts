/**
 * Engine-level jobs for tests that drive an engine directly: the registered spec, options and
 * wire hyperparameters of an AdamP or SGDP group from the engine-style scalars tests write.
 */
import type { Slot, StepJob, StepOptions } from '../../lib/backends/engine';
import { adampSpec } from '../../lib/optim/adamp';
import { sgdpSpec } from '../../lib/optim/sgdp';

export interface AdamPHp { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; delta: number; wdRatio: number; nesterov: boolean }
export interface SGDPHp { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean; eps: number; delta: number; wdRatio: number }

/** Norms on: the info records are compared whole. */
export const FULL: StepOptions = { norms: true };

export function adampJob(slots: readonly Slot[], hp: AdamPHp, info: Float64Array): StepJob {
  const { beta1, beta2, ...rest } = hp;
  const options = { ...rest, betas: [beta1, beta2] as [number, number] };
  return { spec: adampSpec, options, hyper: adampSpec.wire(options), slots, info };
}

export function sgdpJob(slots: readonly Slot[], hp: SGDPHp, info: Float64Array): StepJob {
  return { spec: sgdpSpec, options: { ...hp }, hyper: sgdpSpec.wire(hp), slots, info };
}
