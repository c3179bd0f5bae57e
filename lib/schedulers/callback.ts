/**
 * Stepping a scheduler from TensorFlow.js training: a callback for `model.fit` /
 * `model.fitDataset` (tfjs-layers accepts plain objects with `onBatchEnd` / `onEpochEnd`, its
 * `CustomCallbackArgs`). Nothing here imports TensorFlow.js.
 */
import { invalid } from '../errors';
import { describe } from '../core/describe';
import { isPlainObject } from '../optim/options';

export interface SchedulerCallbackOptions {
  /**
   * When to call `scheduler.step()`: after every batch (`'batch'`: OneCycleLR, warm-ups counted
   * in iterations) or after every epoch (`'epoch'`, default: StepLR, CosineAnnealingLR counted
   * in epochs). tfjs-layers calls `onBatchEnd` after the optimizer has applied that batch's
   * gradients, so this is PyTorch's `optimizer.step(); scheduler.step()`.
   */
  every?: 'batch' | 'epoch';
}

/** The callback object (a tfjs-layers `CustomCallbackArgs`). */
export interface SchedulerCallback {
  onBatchEnd?: (batch: number) => void;
  onEpochEnd?: (epoch: number) => void;
}

/**
 * A tfjs-layers callback that steps `scheduler` after every batch or every epoch:
 *
 * ```ts
 * const optimizer = new SGD({ lr: 0.1, momentum: 0.9 });            // from 'adamp/tfjs'
 * const scheduler = new OneCycleLR(optimizer, { maxLr: 0.5, totalSteps: epochs * batchesPerEpoch });
 * model.compile({ optimizer, loss: 'meanSquaredError' });
 * await model.fit(xs, ys, { epochs, batchSize, callbacks: [schedulerCallback(scheduler, { every: 'batch' })] });
 * ```
 */
export function schedulerCallback(scheduler: { step(): void }, options: SchedulerCallbackOptions = {}): SchedulerCallback {
  if (scheduler === null || typeof scheduler !== 'object' || typeof (scheduler as { step?: unknown }).step !== 'function') {
    throw invalid(`schedulerCallback: scheduler must be a scheduler (an object with step()), got ${describe(scheduler)}`);
  }
  if (!isPlainObject(options)) throw invalid(`schedulerCallback: options must be a plain object { every }, got ${describe(options)}`);
  for (const k of Object.keys(options)) if (k !== 'every') throw invalid(`schedulerCallback: options.${k} is not an option (options: every)`);
  const every = options.every ?? 'epoch';
  if (every === 'batch') return { onBatchEnd: () => scheduler.step() };
  if (every === 'epoch') return { onEpochEnd: () => scheduler.step() };
  throw invalid(`schedulerCallback: options.every must be 'batch' or 'epoch', got ${describe(every)}`);
}
