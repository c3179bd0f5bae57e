/**
 * The native CPU engine: the C++ core (native/cpu) behind the addon, for every optimizer of the
 * registry (the addon runs the C++ policy named by `spec.kind`). Same slots, same info record as
 * the TypeScript engine; the addon validates again and throws instead of crashing.
 *
 * This engine is the safe entry to the addon: what reaches the caller is an AdampError with the
 * addon's code (the addon throws TypeError/RangeError with `code`), and an async step's buffers
 * stay where the worker thread writes them (see keepInPlace). Direct callers of `addon.stepAsync`
 * get neither: they must not transfer or resize an array until its promise settles.
 */
import type { Engine, Geometry, Shard, ShardJob, Slot, StepJob, StepOptions, StepProtocol } from '../engine';
import type { AnySpec } from '../../optim/spec';
import type { Addon, AddonJob, AddonShard, AddonSlot } from '../../binding/types';
import { markAsUntransferable } from 'node:worker_threads';
import { AdampError, invalid } from '../../errors';
import { fromAddon } from '../../binding/errors';

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
  guardTransfer(b);
}

/**
 * `ArrayBuffer.prototype.transfer()` / `transferToFixedLength()` (shipped in Node 22+, behind
 * --harmony-rab-gsab-transfer in Node 20) detach a buffer whatever markAsUntransferable says on
 * the Node versions we support, and a shrinking transfer frees the old memory at once: a worker
 * thread still writing it would crash the process. So, once per realm and only where those
 * methods exist, they are wrapped: on a buffer an async step is writing they throw
 * ERR_ADAMP_STEP_IN_FLIGHT; on any other buffer they are the built-ins, unchanged. Frozen
 * intrinsics are left alone.
 */
const inFlight = new WeakMap<ArrayBufferLike, number>();
const guardedPrototypes = new WeakSet<object>();
function guardTransfer(b: ArrayBufferLike): void {
  let proto: object | null = Object.getPrototypeOf(b) as object | null;
  while (proto !== null && !Object.prototype.hasOwnProperty.call(proto, 'transfer')) proto = Object.getPrototypeOf(proto) as object | null;
  if (proto === null || guardedPrototypes.has(proto)) return;
  guardedPrototypes.add(proto);
  for (const name of ['transfer', 'transferToFixedLength']) {
    const d = Object.getOwnPropertyDescriptor(proto, name);
    if (d === undefined || typeof d.value !== 'function' || (!d.writable && !d.configurable)) continue;
    const builtin = d.value as (...args: unknown[]) => unknown;
    const guarded = {
      [name](this: unknown, ...args: unknown[]): unknown {
        if (typeof this === 'object' && this !== null && inFlight.has(this as ArrayBufferLike)) {
          throw new AdampError('ERR_ADAMP_STEP_IN_FLIGHT', `ArrayBuffer.prototype.${name}: this buffer holds params, grads or state an adamp stepAsync() is writing; await it first`);
        }
        return Reflect.apply(builtin, this, args);
      },
    }[name];
    Object.defineProperty(guarded, 'length', { value: builtin.length });
    try {
      Object.defineProperty(proto, name, { ...d, value: guarded });
    } catch {
      // frozen intrinsics: nothing to do
    }
  }
}

/** Marks every buffer of the jobs as written by a step until `done` settles. */
function holdBuffers(buffers: Set<ArrayBufferLike>, done: Promise<unknown>): void {
  for (const b of buffers) inFlight.set(b, (inFlight.get(b) ?? 0) + 1);
  const release = (): void => {
    for (const b of buffers) {
      const n = (inFlight.get(b) ?? 1) - 1;
      if (n > 0) inFlight.set(b, n);
      else inFlight.delete(b);
    }
  };
  done.then(release, release);
}

/**
 * A slot on the wire: a float32 slot as it is; a 16-bit one with `p` null when there is no master
 * copy and `g` null when the grad is `half.g16` (the core converts each unit itself).
 */
function wire(s: Slot): AddonSlot {
  const h = s.half;
  if (h === undefined) return s;
  return {
    ...s, p: h.master ? s.p : null, g: h.g16 !== null ? null : s.g,
    half: {
      dtype: h.dtype, p16: h.p16, g16: h.g16,
      ...(h.invScale !== undefined ? { invScale: h.invScale } : {}), ...(h.key !== undefined ? { key: h.key } : {}),
    },
  };
}

function wireShard(s: Shard): AddonShard {
  return s.half === undefined ? s : { ...wire(s), offset: s.offset, numel: s.numel } as AddonShard;
}

/** Every array a slot's step reads or writes (the 16-bit ones included). */
function slotArrays(s: Slot): Array<[string, ArrayBufferView]> {
  const out: Array<[string, ArrayBufferView]> = [['p', s.p], ['g', s.g], ...s.state.map((a, i): [string, ArrayBufferView] => [`state[${i}]`, a])];
  if (s.half !== undefined) {
    out.push(['half.p16', s.half.p16]);
    if (s.half.g16 !== null) out.push(['half.g16', s.half.g16]);
  }
  return out;
}

function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw fromAddon(e);
  }
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
    return Array.from(call(() => this.addon.protocolUnits(spec.kind, geometry)));
  }

  stats(job: ShardJob, u0: number, u1: number): Float64Array {
    return call(() => this.addon.protocolStats(job.spec.kind, wireShard(job.shard), job.hyper, u0, u1));
  }

  decide(spec: AnySpec, geometry: Geometry, _options: Readonly<Record<string, unknown>>, hyper: Float64Array, partials: Float64Array): Float64Array {
    return call(() => this.addon.protocolDecide(spec.kind, geometry, hyper, partials));
  }

  apply(job: ShardJob, decision: Float64Array, u0: number, u1: number, options: StepOptions): Float64Array {
    return call(() => this.addon.protocolApply(job.spec.kind, wireShard(job.shard), job.hyper, decision, u0, u1, options.norms));
  }

  finish(spec: AnySpec, geometry: Geometry, decision: Float64Array, norms: Float64Array, info: Float64Array, at: number): void {
    call(() => this.addon.protocolFinish(spec.kind, geometry, decision, norms, info, at));
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
    call(() => this.addon.step(job.spec.kind, job.slots.map(wire), job.hyper, job.info, { threads: this.threads, norms: options.norms }));
  }

  /** Every group as one step of the core: a core that cannot allocate what it needs changes none of them. */
  stepAll(jobs: readonly StepJob[], options: StepOptions): void {
    const addonJobs: AddonJob[] = jobs.map((j) => ({ kind: j.spec.kind, slots: j.slots.map(wire), hyper: j.hyper, info: j.info }));
    call(() => this.addon.stepJobs(addonJobs, { threads: this.threads, norms: options.norms }));
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
        for (const [name, a] of slotArrays(s)) {
          if (resizable(a)) {
            return Promise.reject(invalid(`stepAsync: jobs[${j}].slots[${k}].${name} is backed by a resizable ArrayBuffer; async steps need fixed-size buffers (use step())`));
          }
        }
      }
    }
    const buffers = new Set<ArrayBufferLike>();
    const keep = (a: ArrayBufferView): void => {
      keepInPlace(a);
      buffers.add(a.buffer);
    };
    for (const j of jobs) {
      keep(j.info);
      for (const s of j.slots) for (const [, a] of slotArrays(s)) keep(a);
    }
    const addonJobs: AddonJob[] = jobs.map((j) => ({ kind: j.spec.kind, slots: j.slots.map(wire), hyper: j.hyper, info: j.info }));
    let done: Promise<void>;
    try {
      done = this.addon.stepAsync(addonJobs, { threads: this.threads, norms: options.norms });
    } catch (e) {
      return Promise.reject(fromAddon(e));
    }
    holdBuffers(buffers, done);
    return done.catch((e: unknown) => { throw fromAddon(e); });
  }
}
