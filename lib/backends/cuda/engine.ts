/**
 * The CUDA engine: every registered optimizer's step on the GPU (the fused kernels of native/cuda,
 * templates on the C++ element policies). An optimizer's state lives in device buffers of one
 * context per kind (all on one stream).
 *
 * Host params (Float32Array): a tensor is uploaded once, at its first step (p and its state
 * slots); each step uploads only the gradient (through pinned staging: the call returns before
 * the copy runs) and queues the fused kernels, without waiting for the device. Params and state
 * are written back into the host arrays by `flush()` (the facade calls it before it reads them:
 * `synchronize()`, `stateDict()`, `dispose()`).
 *
 * Device params (DeviceTensor, `Slot.device`): the kernels read and write the param (and a
 * device gradient) in place; the context owns only the state. A non-contiguous (strided) param
 * or gradient is gathered into a context buffer before the step and the param scattered back
 * after it, on the same stream. Their state is read back on request (`readDeviceState`).
 *
 * `flushInfo()` fills the info records of the last step (for `lastStepInfo`). `invalidate()`
 * drops every device copy after the facade replaced state on the host (`loadStateDict`); the
 * next step uploads again.
 *
 * note: between flushes the host `param.data` arrays are stale: the device holds the truth.
 */
import type { DeviceView, Engine, Slot, StepJob, StepOptions } from '../engine';
import { INFO_STRIDE } from '../../core/info';
import { invalid } from '../../errors';
import { stageHalfSlot } from '../half-staging';
import {
  CudaBuffer, CudaDtype, CudaExternal, CudaStorage, type CudaAddon, type CudaBufferHandle, type CudaConfig, type CudaHandle, type CudaKind,
} from './binding';

interface Entry {
  /** The context (kind) the tensor lives in. */
  h: CudaHandle;
  id: number;
  /** Host params: the array written back by flush(). Device params: null. */
  p: Float32Array | null;
  /** The state arrays the device copy came from (host params: written back by flush()). */
  state: readonly Float32Array[];
  numel: number;
  /** Steps the device copy has completed. */
  steps: number;
  /** Device params: which of p and g the kernels read from caller memory (CudaExternal flags, fixed at creation). */
  external: number;
  /** This step's p runs in a context buffer, gathered from the caller's view and scattered back after the step. */
  staged: bigint | null;
  /** Buffers standing in for an external p or g when this step's tensor is strided, or its gradient on the host. */
  scratch: { p?: CudaBufferHandle; g?: CudaBufferHandle };
  /** 16-bit device params: the storage bits and rounding index last set (cudaSetStorage); -1 before. */
  storage: number;
  index: number;
  /** Host 16-bit params: the staged float32 array was downloaded for rounding (syncStaged); upload it again before the next step. */
  restage: boolean;
}

export interface CudaEngineOptions {
  config?: CudaConfig;
  /** A caller's cudaStream_t to queue on (default: the engine's own stream). */
  stream?: bigint;
  /** The kind whose context `currentStream()` creates before the first step (default: the first registered kind). */
  kind?: string;
}

export class CudaEngine implements Engine {
  readonly name = 'cuda' as const;
  private readonly addon: CudaAddon;
  private readonly config: CudaConfig | undefined;
  private readonly defaultKind: string | undefined;
  private kinds: Map<string, CudaKind> | undefined;
  /** One context per kind; the first one's own stream carries every context's work unless a caller's stream is set. */
  private contexts = new Map<string, CudaHandle>();
  private primary: CudaHandle | null = null;
  private primaryStream: bigint | null = null;
  private stream: bigint | null;
  /** Keyed by the host param's data array, or by the device param (`DeviceSlot.key`). */
  private entries = new Map<object, Entry>();
  /** Where the info record of each tensor's last step goes (filled on request): per context, tensor id -> (array, slot index). */
  private pendingInfo = new Map<CudaHandle, Map<number, { info: Float64Array; index: number }>>();
  /** Host params changed on the device since the last flush. */
  private dirty = false;
  /** Host 16-bit params: the float32 array each one's bits are staged in (its entry's key). */
  private halfStaged = new WeakMap<Uint16Array, Float32Array>();

  constructor(addon: CudaAddon, options: CudaEngineOptions = {}) {
    this.addon = addon;
    this.config = options.config;
    this.stream = options.stream ?? null;
    this.defaultKind = options.kind;
  }

  /**
   * Host 16-bit params (HalfSlot): each is staged as a float32 slot (lib/backends/half-staging.ts,
   * as on the js engine), whose float32 array keys its device entry; `commits` round the stepped
   * values back into the params' bits once they are downloaded (commitHalves).
   */
  private stageHalves(jobs: readonly StepJob[]): { jobs: StepJob[]; commits: Array<{ p: Float32Array; commit: () => void }> } {
    const commits: Array<{ p: Float32Array; commit: () => void }> = [];
    const out = jobs.map((job) => {
      if (!job.slots.some((sl) => sl.half !== undefined)) return job;
      const slots = job.slots.map((sl) => {
        if (sl.half === undefined) return sl;
        const staged = stageHalfSlot(sl);
        this.halfStaged.set(sl.half.p16, staged.slot.p);
        commits.push({ p: staged.slot.p, commit: staged.commit });
        return staged.slot;
      });
      return { ...job, slots };
    });
    return { jobs: out, commits };
  }

  /** Host 16-bit params: the stepped float32 values downloaded (waits for the device), then rounded into the params' bits. */
  private commitHalves(commits: ReadonlyArray<{ p: Float32Array; commit: () => void }>): void {
    if (commits.length === 0) return;
    this.syncStaged(commits.map((c) => c.p));
    for (const c of commits) c.commit();
  }

  /** A slot key as the facade names it: a host 16-bit param's bits array stands for its staged float32 array. */
  private entryKey(key: object): object {
    return key instanceof Uint16Array ? this.halfStaged.get(key) ?? key : key;
  }

  /** Queues one group's step; returns without waiting for the device (host 16-bit params: waits, to round them back). */
  step(job0: StepJob, options: StepOptions): void {
    const { jobs: [job], commits } = this.stageHalves([job0]);
    this.stepStaged(job, options);
    this.commitHalves(commits);
  }

  private stepStaged(job: StepJob, options: StepOptions): void {
    const kind = job.spec.kind;
    const h = this.context(kind);
    if (job.info.length < job.slots.length * INFO_STRIDE) {
      throw invalid(`CudaEngine: info has ${job.info.length} doubles, ${job.slots.length * INFO_STRIDE} needed`);
    }
    const ids = this.prepare(h, kind, job.slots);
    this.addon.cudaStep(h, ids, job.hyper, { norms: options.norms });
    for (const s of job.slots) this.entries.get(keyOf(s))!.steps = s.step;
    this.finishStep(h, job.slots, ids, job.info);
  }

  /**
   * Loss scaling on the device: every job's tensors prepared (gradients uploaded or bound), their
   * gradients checked into `dev.found` (zeroed first), then each job stepped reading the flag and
   * the scale. Nothing here waits for the device; step counts advance on the device only when the
   * flag is clear (the facade reads them back lazily: `deviceSteps`).
   */
  stepScaled(jobs0: readonly StepJob[], options: StepOptions, dev: { scale?: bigint; found: bigint }, kind: string): void {
    const { jobs, commits } = this.stageHalves(jobs0);
    const h = this.context(kind);
    const prepared: Int32Array[] = [];
    for (const job of jobs) {
      if (job.spec.kind !== kind) throw invalid(`CudaEngine: a scaled step of '${kind}' got a '${job.spec.kind}' job`);
      if (job.info.length < job.slots.length * INFO_STRIDE) {
        throw invalid(`CudaEngine: info has ${job.info.length} doubles, ${job.slots.length * INFO_STRIDE} needed`);
      }
      prepared.push(this.prepare(h, kind, job.slots));
    }
    const all = new Int32Array(prepared.reduce((n, ids) => n + ids.length, 0));
    let o = 0;
    for (const ids of prepared) {
      all.set(ids, o);
      o += ids.length;
    }
    // Without a scale the grads were unscaled already (unscaleGrads), which set the flag: no check.
    if (dev.scale !== undefined) this.addon.cudaCheckGrads(h, all, dev.found, true);
    jobs.forEach((job, j) => {
      this.addon.cudaStep(h, prepared[j], job.hyper, { norms: options.norms, ...(dev.scale !== undefined ? { scale: dev.scale } : {}), found: dev.found });
      for (const s of job.slots) this.entries.get(keyOf(s))!.steps = s.step;
      this.finishStep(h, job.slots, prepared[j], job.info);
    });
    // Host 16-bit params are rounded back on the host: only when the step ran (one sync; a skipped step changes no bit).
    if (commits.length > 0 && !this.lastSkipped(commits[0].p)) this.commitHalves(commits);
  }

  /**
   * GradScaler.unscale on the device: float32 device grads checked into `dev.found` (zeroed first)
   * and multiplied in place by f32(1 / *dev.scale), queued on the stream the steps of `kind`
   * queue on (before the step that reads them). Nothing waits for the device.
   */
  unscaleGrads(grads: readonly DeviceView[], dev: { scale: bigint; found: bigint }, kind: string): void {
    for (const g of grads) if ((g.dtype ?? 'float32') !== 'float32') throw invalid(`CudaEngine: unscaleGrads takes float32 grads, got ${g.dtype}`);
    const h = this.context(kind);
    this.addon.cudaUnscaleGrads(h, grads.map((g) => ({ pointer: g.pointer, shape: g.shape, strides: g.strides })), dev.scale, dev.found, true);
  }

  /** The completed step counts the device holds for these slot keys (undefined when not on the device); waits. */
  deviceSteps(keys: readonly object[]): Array<number | undefined> {
    return keys.map((k) => {
      const e = this.entries.get(this.entryKey(k));
      if (e === undefined) return undefined;
      const n = this.addon.cudaGetSteps(e.h, Int32Array.of(e.id))[0];
      e.steps = n;
      return n;
    });
  }

  /** Whether the last step of the tensor with this slot key was skipped by the found-inf flag (waits). */
  lastSkipped(key: object): boolean {
    const e = this.entries.get(this.entryKey(key));
    return e !== undefined && this.addon.cudaLastSkipped(e.h, e.id);
  }

  /** Queues torch._amp_update_scale_ on a device GradScaler state, on this engine's stream. */
  scalerUpdate(state: bigint, mask: number, hostFound: boolean, growth: number, backoff: number, interval: number): void {
    const h = this.primary ?? this.context(this.defaultKind ?? this.kindList()[0].name);
    this.addon.cudaScalerUpdate(h, state, mask, hostFound, growth, backoff, interval);
  }

  /** Queues every group's step, then resolves when the device has finished them (waited off the JS thread). */
  async stepAsync(jobs: readonly StepJob[], options: StepOptions): Promise<void> {
    for (const j of jobs) this.step(j, options);
    // Every context queues on the same stream: one event after the last step covers them all.
    if (this.primary !== null) await this.addon.cudaWhenDone(this.primary);
  }

  /** Writes the info records of the last step into the arrays the facade passed (waits for the device). */
  flushInfo(): void {
    for (const [h, pending] of this.pendingInfo) {
      if (pending.size === 0) continue;
      const ids = Int32Array.from(pending.keys());
      const all = new Float64Array(ids.length * INFO_STRIDE);
      this.addon.cudaInfo(h, ids, all);
      let k = 0;
      for (const { info, index } of pending.values()) {
        info.set(all.subarray(k * INFO_STRIDE, (k + 1) * INFO_STRIDE), index * INFO_STRIDE);
        k++;
      }
      pending.clear();
    }
  }

  /** Waits for the queued steps; writes host params and their state back, and the pending info records. */
  flush(): void {
    if (this.primary === null) return;
    this.flushInfo();
    if (this.dirty) {
      for (const e of this.entries.values()) {
        if (e.p === null) continue;
        this.addon.cudaDownload(e.h, e.id, CudaBuffer.p, e.p);
        e.state.forEach((a, k) => { if (a.length === e.numel) this.addon.cudaDownload(e.h, e.id, CudaBuffer.state(k), a); });
      }
      this.dirty = false;
    }
    for (const h of this.contexts.values()) this.addon.cudaSync(h);
  }

  /**
   * The state slots of a device param, copied to the host (undefined when it has none on the
   * device), followed by its master weights when it is a 16-bit param that keeps them.
   */
  readDeviceState(key: object): Float32Array[] | undefined {
    const e = this.entries.get(key);
    if (e === undefined || e.p !== null) return undefined;
    const n = e.state.length;
    const out: Float32Array[] = [];
    const withMaster = e.storage >= 0 && (e.storage & CudaStorage.master) !== 0;
    for (let k = 0; k < n + (withMaster ? 1 : 0); k++) {
      const a = new Float32Array(e.numel);
      this.addon.cudaDownload(e.h, e.id, CudaBuffer.state(k), a);
      out.push(a);
    }
    return out;
  }

  /**
   * Host 16-bit params (staged as float32 by stageHalves, rounded back after the step):
   * the stepped values downloaded into their staged arrays now (waits for the device), and
   * uploaded again before the next step, which stages them anew.
   */
  private syncStaged(arrays: readonly Float32Array[]): void {
    for (const a of arrays) {
      const e = this.entries.get(a);
      if (e === undefined || e.p === null) continue;
      this.addon.cudaDownload(e.h, e.id, CudaBuffer.p, a);
      e.restage = true;
    }
  }

  setStream(stream: bigint | null): void {
    this.stream = stream;
    for (const h of this.contexts.values()) this.addon.cudaSetStream(h, stream ?? this.primaryStream);
  }

  currentStream(): bigint {
    if (this.primary === null) this.context(this.defaultKind ?? this.kindList()[0].name);
    return this.addon.cudaGetStream(this.primary!);
  }

  /**
   * The facade replaced optimizer state on the host. Host params keep their current values (as
   * in PyTorch's load_state_dict), which only the device has: write them back first, then drop
   * every device copy; the next step uploads params and the new state. Device params stay where
   * they are (their memory is the caller's).
   */
  invalidate(): void {
    if (this.dirty) {
      for (const e of this.entries.values()) if (e.p !== null) this.addon.cudaDownload(e.h, e.id, CudaBuffer.p, e.p);
    }
    this.release();
  }

  dispose(): void {
    this.release();
  }

  private release(): void {
    // Destroying a context never waits for the device: its buffers are freed by a background
    // thread once the work using them is done; scratch buffers the same way.
    for (const h of this.contexts.values()) this.addon.cudaDestroy(h);
    for (const e of this.entries.values()) {
      if (e.scratch.p) this.addon.cudaBufferFree(e.scratch.p);
      if (e.scratch.g) this.addon.cudaBufferFree(e.scratch.g);
    }
    this.contexts = new Map();
    this.primary = null;
    this.primaryStream = null;
    this.entries = new Map();
    this.pendingInfo = new Map();
    this.dirty = false;
  }

  private kindList(): CudaKind[] {
    return this.addon.cudaKinds();
  }

  private kindInfo(kind: string): CudaKind {
    if (this.kinds === undefined) this.kinds = new Map(this.kindList().map((k) => [k.name, k]));
    const k = this.kinds.get(kind);
    if (k === undefined) {
      throw invalid(`CudaEngine: the CUDA kernels know no optimizer '${kind}' (built for ${[...this.kinds.keys()].join(', ')})`);
    }
    return k;
  }

  /** The context of a kind, created on first use; every context queues on the same stream. */
  private context(kind: string): CudaHandle {
    let h = this.contexts.get(kind);
    if (h !== undefined) return h;
    this.kindInfo(kind);
    h = this.addon.cudaCreate(kind, this.config);
    if (this.primary === null) {
      this.primary = h;
      this.primaryStream = this.addon.cudaGetStream(h);
    }
    const stream = this.stream ?? (h === this.primary ? null : this.primaryStream);
    if (stream !== null) this.addon.cudaSetStream(h, stream);
    this.contexts.set(kind, h);
    this.pendingInfo.set(h, new Map());
    return h;
  }

  /**
   * The address of a buffer of ours for p or g of a device tensor: the context's own (not
   * external), or a scratch allocation bound in place of the caller's memory for this step.
   */
  private ownBuffer(e: Entry, which: 'p' | 'g'): bigint {
    const sel = which === 'p' ? CudaBuffer.p : CudaBuffer.g;
    const flag = which === 'p' ? CudaExternal.p : CudaExternal.g;
    if (!(e.external & flag)) return this.addon.cudaDeviceAddress(e.h, e.id, sel);
    let buf = e.scratch[which];
    if (buf === undefined) buf = e.scratch[which] = this.addon.cudaAlloc(this.config?.device ?? 0, e.numel * 4, this.addon.cudaGetStream(e.h));
    const addr = this.addon.cudaBufferAddress(buf);
    this.addon.cudaBind(e.h, e.id, sel, addr);
    return addr;
  }

  private finishStep(h: CudaHandle, slots: readonly Slot[], ids: Int32Array, info: Float64Array): void {
    // Strided device params: scatter the updated values back into the caller's view.
    for (let k = 0; k < slots.length; k++) {
      const d = slots[k].device;
      if (d === undefined) continue;
      const e = this.entries.get(d.key)!;
      if (e.staged !== null) this.addon.cudaCopyStrided(h, d.p.pointer, d.p.strides, e.staged, null, d.p.shape);
    }
    if (slots.some((s) => s.device === undefined)) this.dirty = true;
    // The device keeps one record per tensor (its last step): a tensor stepped again replaces its entry.
    const pending = this.pendingInfo.get(h)!;
    for (let k = 0; k < ids.length; k++) pending.set(ids[k], { info, index: k });
  }

  /**
   * A 16-bit device param: its storage (the param's and gradient's dtypes, master weights,
   * rounding) set when it changed, the param and gradient bound (a host or strided gradient
   * through a float32 scratch), and a new tensor's master weights: the loaded ones uploaded, or the
   * param widened on the device.
   */
  private prepareHalf(h: CudaHandle, e: Entry, d: NonNullable<Slot['device']>, s: Slot, fresh: boolean, nslots: number): void {
    const half = d.half!;
    const gDevice = d.g !== null && d.g.strides === null && (e.external & CudaExternal.g) !== 0;
    const storage = DTYPE_CODE[d.p.dtype ?? 'float32'] | CudaStorage.grad(gDevice ? DTYPE_CODE[d.g!.dtype ?? 'float32'] : CudaDtype.float32) |
      (half.master ? CudaStorage.master : 0) | (half.stochastic ? CudaStorage.stochastic : 0);
    if (storage !== e.storage || half.index !== e.index) {
      this.addon.cudaSetStorage(h, e.id, storage, half.seed, half.index);
      e.storage = storage;
      e.index = half.index;
    }
    this.addon.cudaBind(h, e.id, CudaBuffer.p, d.p.pointer);
    e.staged = null;
    if (gDevice) {
      this.addon.cudaBind(h, e.id, CudaBuffer.g, d.g!.pointer);
    } else {
      const buf = this.ownBuffer(e, 'g');
      if (d.g !== null) this.addon.cudaCopyStrided(h, buf, null, d.g.pointer, d.g.strides, d.g.shape);
      else this.addon.cudaUpload(h, e.id, CudaBuffer.g, s.g);
    }
    if (fresh && half.master) {
      if (half.loaded !== undefined && half.loaded.length === e.numel) this.addon.cudaUpload(h, e.id, CudaBuffer.state(nslots), half.loaded);
      else this.addon.cudaInitMaster(h, e.id);
    }
  }

  /** Device ids of the slots: new tensors are added (state uploaded when the host has it), gradients uploaded or bound. */
  private prepare(h: CudaHandle, kind: string, slots: readonly Slot[]): Int32Array {
    const nslots = this.kindInfo(kind).slots;
    const ids = new Int32Array(slots.length);
    for (let k = 0; k < slots.length; k++) {
      const s = slots[k];
      const d = s.device;
      const key = keyOf(s);
      let fresh = false;
      if (s.state.length !== nslots) {
        throw invalid(`CudaEngine: ${kind} keeps ${nslots} state slot(s), slot ${k} has ${s.state.length}`);
      }
      let e = this.entries.get(key);
      if (e !== undefined && e.h !== h) {
        throw invalid(`CudaEngine: slot ${k} was stepped by another optimizer kind before; one param, one optimizer`);
      }
      if (e !== undefined && e.state.some((a, i) => a !== s.state[i])) e = undefined; // state replaced: upload again
      if (e === undefined) {
        const known = this.entries.get(key);
        const numel = d ? d.numel : s.p.length;
        // 16-bit params are contiguous and always external (their 16-bit gradient too; a host or strided one goes through a float32 scratch bound in its place)
        const external = d ? (d.half ? CudaExternal.p | CudaExternal.g : (d.p.strides === null ? CudaExternal.p : 0) | (d.g !== null && d.g.strides === null ? CudaExternal.g : 0)) : 0;
        const id = known?.id ?? this.addon.cudaAddTensor(h, numel, s.outer, s.channels, s.inner, s.eligible, external);
        e = {
          h, id, p: d ? null : s.p, state: s.state, numel, steps: known?.steps ?? 0,
          external: known?.external ?? external, staged: null, scratch: known?.scratch ?? {},
          storage: known?.storage ?? -1, index: known?.index ?? 0, restage: false,
        };
        fresh = true;
        if (!d) this.addon.cudaUpload(h, id, CudaBuffer.p, s.p);
        // Device params start with zero state made on the device (empty arrays), or upload loaded state.
        s.state.forEach((a, i) => { if (a.length === numel) this.addon.cudaUpload(h, id, CudaBuffer.state(i), a); });
        this.entries.set(key, e);
      }
      if (!fresh && e.restage) this.addon.cudaUpload(h, e.id, CudaBuffer.p, s.p);
      e.restage = false;
      if (e.steps !== s.step - 1) {
        this.addon.cudaSetStep(h, e.id, s.step - 1);
        e.steps = s.step - 1;
      }
      if (d?.half) {
        this.prepareHalf(h, e, d, s, fresh, nslots);
      } else if (d) {
        // The param: bound in place when contiguous, else gathered into a buffer of ours (scattered back after the step).
        if (d.p.strides === null && e.external & CudaExternal.p) {
          this.addon.cudaBind(h, e.id, CudaBuffer.p, d.p.pointer);
          e.staged = null;
        } else {
          e.staged = this.ownBuffer(e, 'p');
          this.addon.cudaCopyStrided(h, e.staged, null, d.p.pointer, d.p.strides, d.p.shape);
        }
        // The gradient: bound in place when contiguous on the device, else copied into a buffer of ours.
        if (d.g !== null && d.g.strides === null && e.external & CudaExternal.g) {
          this.addon.cudaBind(h, e.id, CudaBuffer.g, d.g.pointer);
        } else {
          const buf = this.ownBuffer(e, 'g');
          if (d.g !== null) this.addon.cudaCopyStrided(h, buf, null, d.g.pointer, d.g.strides, d.g.shape);
          else this.addon.cudaUpload(h, e.id, CudaBuffer.g, s.g);
        }
      } else {
        this.addon.cudaUpload(h, e.id, CudaBuffer.g, s.g);
      }
      ids[k] = e.id;
    }
    return ids;
  }
}

const DTYPE_CODE = { float32: CudaDtype.float32, bfloat16: CudaDtype.bfloat16, float16: CudaDtype.float16 } as const;

function keyOf(s: Slot): object {
  return s.device ? s.device.key : s.p;
}
