/**
 * The native CPU engine: the C++ core (native/cpu) behind the addon. Same slots, same info
 * record as the TypeScript engine; the addon validates again and throws instead of crashing.
 */
import type { AdamPScalars, AsyncJob, Engine, SGDPScalars, Slot } from '../engine';
import type { Addon, AddonJob } from '../../binding/types';

export interface NativeEngineOptions {
  /** Threads per step (the caller's thread included). Default / 0: all hardware threads. Results are identical for every count. */
  threads?: number;
}

export class NativeEngine implements Engine {
  readonly name = 'native' as const;
  readonly threads: number;
  private readonly addon: Addon;

  constructor(addon: Addon, options: NativeEngineOptions = {}) {
    const t = options.threads ?? 0;
    if (!Number.isInteger(t) || t < 0 || t > 256) {
      throw new RangeError(`NativeEngine: threads must be an integer in [0, 256] (0 = all cores), got ${String(options.threads)}`);
    }
    this.addon = addon;
    this.threads = t;
  }

  stepAdamP(slots: readonly Slot[], hp: AdamPScalars, info: Float64Array): void {
    this.addon.adampStep(slots, hp, info, this.threads);
  }

  stepSGDP(slots: readonly Slot[], hp: SGDPScalars, info: Float64Array): void {
    this.addon.sgdpStep(slots, hp, info, this.threads);
  }

  /**
   * Runs every group on a libuv worker thread; the JavaScript thread stays free. The addon keeps
   * the arrays alive until the promise settles. Arguments are validated before anything runs, so
   * a rejected call has changed nothing.
   */
  stepAsync(jobs: readonly AsyncJob[]): Promise<void> {
    // A resizable buffer shrunk while a worker thread writes into it would fault: refuse them here.
    for (const j of jobs) {
      for (let k = 0; k < j.slots.length; k++) {
        const s = j.slots[k];
        for (const [name, a] of [['p', s.p], ['g', s.g], ['m', s.m], ['v', s.v]] as const) {
          const b = a.buffer as ArrayBufferLike & { resizable?: boolean; growable?: boolean };
          if (b.resizable === true || b.growable === true) {
            return Promise.reject(new RangeError(`stepAsync: slots[${k}].${name} is backed by a resizable ArrayBuffer; async steps need fixed-size buffers (use step())`));
          }
        }
      }
    }
    const addonJobs: AddonJob[] = jobs.map((j) =>
      j.kind === 'adamp'
        ? { kind: 'adamp', slots: j.slots, hp: j.hp, info: j.info }
        : { kind: 'sgdp', slots: j.slots, hp: j.hp, info: j.info });
    try {
      return this.addon.stepAsync(addonJobs, this.threads);
    } catch (e) {
      return Promise.reject(e);
    }
  }
}
