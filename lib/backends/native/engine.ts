/**
 * The native CPU engine: the C++ core (native/cpu) behind the addon, for every optimizer of the
 * registry (the addon runs the C++ policy named by `spec.kind`). Same slots, same info record as
 * the TypeScript engine; the addon validates again and throws instead of crashing.
 */
import type { Engine, Geometry, ShardJob, StepJob, StepOptions, StepProtocol } from '../engine';
import type { AnySpec } from '../../optim/spec';
import type { Addon, AddonJob } from '../../binding/types';
import { markAsUntransferable } from 'node:worker_threads';
import { invalid } from '../../errors';

export interface NativeEngineOptions {
  /** Threads per step (the caller's thread included). Default / 0: all hardware threads. Results are identical for every count. */
  threads?: number;
}

/**
 * Buffers an async step works on are made untransferable for good (Node's `markAsUntransferable`):
 * a `postMessage`/`structuredClone` that lists one in its transfer list copies it instead of moving
 * it, so its memory cannot be freed (by a new owner's garbage collection) while a worker thread
 * writes it. N-API has no way to pin a backing store; this keeps the memory where the step is.
 */
const untransferable = new WeakSet<ArrayBufferLike>();
function keepInPlace(a: ArrayBufferView): void {
  const b = a.buffer;
  if (untransferable.has(b)) return;
  markAsUntransferable(b);
  untransferable.add(b);
}

/** Whether a typed array's buffer can change size under a worker thread (resizable ArrayBuffer, growable SharedArrayBuffer). */
function resizable(a: ArrayBufferView): boolean {
  const b = a.buffer as ArrayBufferLike & { resizable?: boolean; growable?: boolean };
  return b.resizable === true || b.growable === true;
}

/** The step protocol on shards, run by the addon on the calling thread (docs/architecture.md, "The step protocol"). */
class NativeProtocol implements StepProtocol {
  constructor(private readonly addon: Addon) {}

  units(spec: AnySpec, geometry: Geometry): number[] {
    return Array.from(this.addon.protocolUnits(spec.kind, geometry));
  }

  stats(job: ShardJob, u0: number, u1: number): Float64Array {
    return this.addon.protocolStats(job.spec.kind, job.shard, job.hyper, u0, u1);
  }

  decide(spec: AnySpec, geometry: Geometry, _options: Readonly<Record<string, unknown>>, hyper: Float64Array, partials: Float64Array): Float64Array {
    return this.addon.protocolDecide(spec.kind, geometry, hyper, partials);
  }

  apply(job: ShardJob, decision: Float64Array, u0: number, u1: number, options: StepOptions): Float64Array {
    return this.addon.protocolApply(job.spec.kind, job.shard, job.hyper, decision, u0, u1, options.norms);
  }

  finish(spec: AnySpec, geometry: Geometry, decision: Float64Array, norms: Float64Array, info: Float64Array, at: number): void {
    this.addon.protocolFinish(spec.kind, geometry, decision, norms, info, at);
  }
}

export class NativeEngine implements Engine {
  readonly name = 'native' as const;
  readonly threads: number;
  readonly protocol: StepProtocol;
  private readonly addon: Addon;

  constructor(addon: Addon, options: NativeEngineOptions = {}) {
    const t = options.threads ?? 0;
    if (!Number.isInteger(t) || t < 0 || t > 256) {
      throw invalid(`NativeEngine: threads must be an integer in [0, 256] (0 = all cores), got ${String(options.threads)}`);
    }
    this.addon = addon;
    this.threads = t;
    this.protocol = new NativeProtocol(addon);
  }

  step(job: StepJob, options: StepOptions): void {
    this.addon.step(job.spec.kind, job.slots, job.hyper, job.info, { threads: this.threads, norms: options.norms });
  }

  /**
   * Runs every group on a libuv worker thread; the JavaScript thread stays free. The addon keeps
   * the arrays alive until the promise settles. Arguments are validated before anything runs, so
   * a rejected call has changed nothing.
   */
  stepAsync(jobs: readonly StepJob[], options: StepOptions): Promise<void> {
    // A resizable buffer shrunk while a worker thread writes into it would fault: refuse them here.
    for (let j = 0; j < jobs.length; j++) {
      const job = jobs[j];
      if (resizable(job.info)) {
        return Promise.reject(invalid(`stepAsync: jobs[${j}].info is backed by a resizable ArrayBuffer; async steps need fixed-size buffers (use step())`));
      }
      for (let k = 0; k < job.slots.length; k++) {
        const s = job.slots[k];
        const arrays: Array<[string, ArrayBufferView]> = [['p', s.p], ['g', s.g], ...s.state.map((a, i): [string, ArrayBufferView] => [`state[${i}]`, a])];
        for (const [name, a] of arrays) {
          if (resizable(a)) {
            return Promise.reject(invalid(`stepAsync: jobs[${j}].slots[${k}].${name} is backed by a resizable ArrayBuffer; async steps need fixed-size buffers (use step())`));
          }
        }
      }
    }
    for (const j of jobs) {
      keepInPlace(j.info);
      for (const s of j.slots) {
        keepInPlace(s.p);
        keepInPlace(s.g);
        for (const a of s.state) keepInPlace(a);
      }
    }
    const addonJobs: AddonJob[] = jobs.map((j) => ({ kind: j.spec.kind, slots: j.slots, hyper: j.hyper, info: j.info }));
    try {
      return this.addon.stepAsync(addonJobs, { threads: this.threads, norms: options.norms });
    } catch (e) {
      return Promise.reject(e);
    }
  }
}
