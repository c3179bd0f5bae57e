/**
 * Learning-rate schedulers with `torch.optim.lr_scheduler`'s semantics (PyTorch 1.13), for the
 * optimizers of `adamp` and of `adamp/tfjs`. See docs/schedulers.md.
 */
export { LRScheduler, BaseScheduler } from './base';
export type { GroupValueKey, SchedulableGroup, SchedulableOptimizer, SchedulerStateDict } from './base';
export { LambdaLR, StepLR, MultiStepLR, ExponentialLR, LinearLR, CosineAnnealingLR } from './basic';
export type {
  LrLambda, LambdaLROptions, StepLROptions, MultiStepLROptions, ExponentialLROptions, LinearLROptions, CosineAnnealingLROptions,
} from './basic';
export { OneCycleLR } from './one-cycle';
export type { OneCycleLROptions, OneCyclePhase } from './one-cycle';
export { SequentialLR } from './sequential';
export type { SequentialLROptions } from './sequential';
export { schedulerCallback } from './callback';
export type { SchedulerCallback, SchedulerCallbackOptions } from './callback';
